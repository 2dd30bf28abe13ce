"""Engine against the real shipped models and photos: golden classes, quantization, errors."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import camclassd
from camclassd.constants import DEFAULT_MODEL_DIR
from camclassd.engine import (
    EDGETPU_LIBRARY,
    RUNTIME_ENV,
    Engine,
    check_flatbuffer,
    default_model_paths,
    read_labels,
    softmax,
)
from camclassd.errors import EXIT_UNAVAILABLE, ModelError
from camclassd.preprocess import Preprocessor
from camclassd.results import top_k
from tests.conftest import FLOAT_MODEL, GOLDEN, LABELS, SAMPLES, UINT8_MODEL

# Regions of a photo, normalised [x1, y1, x2, y2], to get several views of each.
ROIS = [(0, 0, 0.75, 0.75), (0.25, 0, 1, 0.75), (0, 0.25, 0.75, 1), (0.25, 0.25, 1, 1)]
ROIS.append((0.2, 0.2, 0.8, 0.8))


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return {name: load_rgb(SAMPLES / name) for name in GOLDEN}


@pytest.fixture(scope="session")
def pixels(photos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Centre-cropped 224x224 RGB uint8 (both shipped models take 224x224)."""
    preprocess = Preprocessor(size=(224, 224))
    return {name: preprocess(image) for name, image in photos.items()}


@pytest.fixture(scope="session")
def engine(model_path: Path) -> Engine:
    return Engine(model_path, LABELS)


@pytest.fixture(scope="session")
def uint8_engine() -> Engine:
    return Engine(UINT8_MODEL, LABELS)


@pytest.fixture(scope="session")
def float_engine() -> Engine:
    return Engine(FLOAT_MODEL, LABELS)


# ---- golden results ------------------------------------------------------------------------


@pytest.mark.parametrize("photo", sorted(GOLDEN))
def test_golden_top1(engine: Engine, photos: dict[str, np.ndarray], photo: str) -> None:
    preprocess = Preprocessor(size=engine.input_size)
    probabilities = engine.infer(engine.to_input(preprocess(photos[photo]))[np.newaxis])
    best = top_k(probabilities[0], 1, engine.labels)[0]
    assert best.label in GOLDEN[photo], f"{photo}: {best}"
    assert engine.labels[best.index] == best.label


def test_engine_attributes(engine: Engine, model_path: Path) -> None:
    assert engine.name == model_path.stem
    assert engine.input_size == (224, 224)
    assert len(engine.labels) == engine.num_classes == 1000
    assert engine.labels[281] == "tabby"
    assert engine.runtime.split()[0] in ("ai-edge-litert", "tflite-runtime")
    assert engine.num_threads == 1


def test_probabilities_sum_to_one(engine: Engine, pixels: dict[str, np.ndarray]) -> None:
    batch = engine.to_input(np.stack(list(pixels.values())))
    probabilities = engine.infer(batch)
    assert probabilities.shape == (len(pixels), 1000)
    assert probabilities.dtype == np.float32
    assert probabilities.min() >= 0.0
    assert probabilities.max() <= 1.0
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_batch_of_four_matches_singles(engine: Engine, pixels: dict[str, np.ndarray]) -> None:
    frames = [engine.to_input(image) for image in pixels.values()]
    assert len(frames) == 4
    singles = np.concatenate([engine.infer(frame[np.newaxis]) for frame in frames])
    batched = engine.infer(np.stack(frames))
    again = engine.infer(frames[0][np.newaxis])  # back to batch 1 after the resize
    np.testing.assert_allclose(batched, singles, atol=2e-5)
    np.testing.assert_allclose(again[0], singles[0], atol=2e-5)
    # the rows really are different images, not one image repeated
    assert len({int(row.argmax()) for row in batched}) == 4


def test_single_hwc_frame_is_a_batch_of_one(engine: Engine, pixels: dict[str, np.ndarray]) -> None:
    frame = engine.to_input(pixels["coffee.jpg"])
    np.testing.assert_array_equal(engine.infer(frame), engine.infer(frame[np.newaxis]))


def test_infer_rejects_wrong_dtype_or_size(engine: Engine) -> None:
    wrong_dtype = np.zeros((1, 224, 224, 3), np.float64)
    with pytest.raises(ValueError, match="to_input"):
        engine.infer(wrong_dtype)
    with pytest.raises(ValueError, match="224, 224, 3"):
        engine.infer(np.zeros((1, 200, 224, 3), engine.input_dtype))


# ---- quantization -----------------------------------------------------------------------------


def test_uint8_input_takes_raw_pixels(uint8_engine: Engine) -> None:
    scale, zero_point = uint8_engine.input_quantization
    assert uint8_engine.input_dtype == np.uint8
    assert scale == pytest.approx(1 / 128, rel=1e-4)
    assert zero_point == 127
    assert uint8_engine.takes_raw_pixels()


def test_to_input_is_identity_for_uint8(
    uint8_engine: Engine, pixels: dict[str, np.ndarray]
) -> None:
    frame = pixels["chelsea.jpg"]
    assert uint8_engine.to_input(frame) is frame
    batch = np.stack([frame, frame])
    assert uint8_engine.to_input(batch) is batch


def test_to_input_quantizes_when_normalisation_differs(uint8_engine: Engine) -> None:
    # q = 127 + 128 (x - 127.5) / 127.5: 0 -> -1 (clipped to 0), 127 -> 126.5 -> 126, 255 -> 255
    pixels = np.array([[[0, 127, 255]]], dtype=np.uint8)
    quantized = uint8_engine.to_input(pixels, mean=127.5, std=127.5)
    assert quantized is not pixels
    assert quantized.dtype == np.uint8
    assert quantized.tolist() == [[[0, 126, 255]]]
    darker = uint8_engine.to_input(np.array([[[64, 128, 192]]], np.uint8), mean=0.0, std=255.0)
    # x / 255 quantized with scale 1/128, zp 127: 127 + x * 128 / 255
    assert darker.tolist() == [[[159, 191, 223]]]


def test_to_input_normalises_for_float(float_engine: Engine) -> None:
    pixels = np.array([[[0, 127, 255]]], dtype=np.uint8)
    normalised = float_engine.to_input(pixels)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised, [[[-127 / 128, 0.0, 1.0]]])
    with pytest.raises(TypeError, match="uint8"):
        float_engine.to_input(pixels.astype(np.float32))


def test_uint8_raw_pixels_agree_with_float_normalised(
    uint8_engine: Engine, float_engine: Engine, pixels: dict[str, np.ndarray]
) -> None:
    names = sorted(pixels)
    raw = np.stack([pixels[name] for name in names])
    normalised = (raw.astype(np.float32) - 127.0) / 128.0  # by hand, not via to_input
    int8_top1 = uint8_engine.infer(raw).argmax(axis=1)
    float_probabilities = float_engine.infer(normalised)
    decisive = 0
    for name, int8_best, row in zip(names, int8_top1, float_probabilities, strict=True):
        order = np.argsort(-row)
        if row[order[0]] - row[order[1]] > 0.1:
            decisive += 1
            assert int8_best == order[0], name
        else:
            # a near-tie (chelsea: Egyptian cat 38% / tiger cat 34%): int8 kernels differ by
            # runtime (tflite-runtime picks tiger cat), so only ask for float's top 3
            assert int8_best in order[:3], name
    assert decisive >= 3


def test_int8_agrees_with_float_where_float_is_sure(
    uint8_engine: Engine, float_engine: Engine, photos: dict[str, np.ndarray]
) -> None:
    views = []
    for image in photos.values():
        for view in (image, image[:, ::-1]):
            views += [Preprocessor(size=(224, 224), crop=c)(view) for c in ("center", "squash")]
            views.append(Preprocessor(size=(224, 224), crop="letterbox")(view))
            views += [Preprocessor(size=(224, 224), crop="roi", roi=r)(view) for r in ROIS]
    batch = np.stack(views)
    int8 = uint8_engine.infer(uint8_engine.to_input(batch))
    float32 = float_engine.infer(float_engine.to_input(batch))
    sure = float32.max(axis=1) > 0.5
    assert sure.sum() >= 20, "too few confident views to compare"
    agree = int8.argmax(axis=1) == float32.argmax(axis=1)
    assert agree[sure].all(), f"{int((~agree[sure]).sum())} of {int(sure.sum())} sure views differ"
    assert agree.mean() >= 0.85


def test_int8_model_is_under_30_percent_of_float() -> None:
    ratio = UINT8_MODEL.stat().st_size / FLOAT_MODEL.stat().st_size
    assert ratio <= 0.30, ratio


def test_softmax_is_stable_for_large_logits() -> None:
    logits = np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]], np.float32)
    probabilities = softmax(logits.copy())
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities[0], [0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(probabilities[1], [1 / 3] * 3, atol=1e-6)


# ---- labels ----------------------------------------------------------------------------------


def test_labels_trailing_blank_lines_and_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("  cat \r\ndog\n\nbird\n\n\n", encoding="utf-8")
    assert read_labels(path) == ["cat", "dog", "", "bird"]


def test_labels_index_format_is_stripped_only_when_every_line_is_numbered(tmp_path: Path) -> None:
    indexed = tmp_path / "indexed.txt"
    indexed.write_text("0 background\n1: cat\n2  dog house\n", encoding="utf-8")
    assert read_labels(indexed) == ["background", "cat", "dog house"]
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("7-up can\n1 cat\n", encoding="utf-8")
    assert read_labels(mixed) == ["7-up can", "1 cat"]


def test_leading_background_label_is_dropped(tmp_path: Path, uint8_engine: Engine) -> None:
    path = tmp_path / "with_background.txt"
    path.write_text("background\n" + LABELS.read_text(encoding="utf-8"), encoding="utf-8")
    engine = Engine(UINT8_MODEL, path)
    assert engine.labels == uint8_engine.labels
    assert len(engine.labels) == 1000


def test_no_labels_file_gives_index_labels() -> None:
    engine = Engine(UINT8_MODEL)
    assert engine.labels[:3] == ["0", "1", "2"]
    assert len(engine.labels) == 1000


# ---- errors ----------------------------------------------------------------------------------


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found: ") as info:
        Engine(tmp_path / "nope.tflite", LABELS)
    assert info.value.exit_code == EXIT_UNAVAILABLE
    # `run` has no --model: the advice names the config key for it, --model for the others.
    assert "[model] path in the config (for run)" in str(info.value)
    assert "--model (for classify and bench)" in str(info.value)
    assert "pass --model" not in str(info.value)


def test_truncated_model(tmp_path: Path) -> None:
    path = tmp_path / "truncated.tflite"
    path.write_bytes(UINT8_MODEL.read_bytes()[:1000])
    with pytest.raises(ModelError, match="not a usable TFLite model") as info:
        Engine(path, LABELS)
    assert "\n" not in str(info.value)


def test_flatbuffer_check_catches_truncation(tmp_path: Path) -> None:
    # The check tflite-runtime needs (it has no verifier and crashes on such files).
    check_flatbuffer(UINT8_MODEL)
    check_flatbuffer(FLOAT_MODEL)
    data = UINT8_MODEL.read_bytes()
    path = tmp_path / "cut.tflite"
    for cut in (8, 100, 1000, 10_000, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelError, match="out of bounds"):
            check_flatbuffer(path)


def test_not_a_tflite_file(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_text("this is no flatbuffer\n", encoding="utf-8")
    with pytest.raises(ModelError, match="not a TFLite model"):
        Engine(path, LABELS)


def test_label_count_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "labels999.txt"
    path.write_text("\n".join(LABELS.read_text(encoding="utf-8").splitlines()[:999]) + "\n")
    with pytest.raises(ModelError, match=r"has 999 labels but model .* has 1000 output classes"):
        Engine(UINT8_MODEL, path)


def test_extra_label_that_is_not_background(tmp_path: Path) -> None:
    path = tmp_path / "labels1001.txt"
    path.write_text("tench\n" + LABELS.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ModelError, match="1001 labels"):
        Engine(UINT8_MODEL, path)


def test_missing_labels(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"labels file .*nope\.txt not found"):
        Engine(UINT8_MODEL, tmp_path / "nope.txt")


def test_edgetpu_delegate_failure_names_the_library() -> None:
    with pytest.raises(ModelError) as info:
        Engine(UINT8_MODEL, LABELS, delegate="edgetpu")
    message = str(info.value)
    assert EDGETPU_LIBRARY in message
    assert "libedgetpu1-std" in message
    assert "edgetpu_compiler" in message


def test_bad_arguments() -> None:
    with pytest.raises(ModelError, match="delegate"):
        Engine(UINT8_MODEL, LABELS, delegate="gpu")
    with pytest.raises(ModelError, match="num_threads"):
        Engine(UINT8_MODEL, LABELS, num_threads=0)


# ---- runtime selection ----------------------------------------------------------------------


def test_forced_runtime_is_used(uint8_engine: Engine) -> None:
    forced = os.environ.get(RUNTIME_ENV, "")
    if not forced:
        pytest.skip(f"{RUNTIME_ENV} is not set (scripts/test-tflite-runtime.sh sets it)")
    assert uint8_engine.runtime.startswith(forced + " ")


def test_runtime_env_selects_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    auto = Engine(UINT8_MODEL, LABELS)
    name = auto.runtime.split()[0]
    monkeypatch.setenv(RUNTIME_ENV, name)
    assert Engine(UINT8_MODEL, LABELS).runtime == auto.runtime
    monkeypatch.setenv(RUNTIME_ENV, "tensorflow")
    with pytest.raises(ModelError, match=f"{RUNTIME_ENV}='tensorflow' is not a known runtime"):
        Engine(UINT8_MODEL, LABELS)


def test_default_model_paths_are_the_shipped_model() -> None:
    """From a checkout, its `models/`; installed (pip install .), where install.sh puts them."""
    package = Path(camclassd.__file__).resolve().parent
    in_checkout = (package.parent.parent / "models").is_dir()
    model, labels = default_model_paths()
    if in_checkout:
        assert model.resolve() == UINT8_MODEL.resolve()
        assert labels.resolve() == LABELS.resolve()
    else:
        assert model == DEFAULT_MODEL_DIR / UINT8_MODEL.name
        assert labels == DEFAULT_MODEL_DIR / LABELS.name


def test_forced_runtime_that_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = [
        name
        for name, module in (
            ("ai-edge-litert", "ai_edge_litert"),
            ("tflite-runtime", "tflite_runtime"),
        )
        if importlib.util.find_spec(module) is None
    ]
    if not missing:
        pytest.skip("both runtimes are installed")
    monkeypatch.setenv(RUNTIME_ENV, missing[0])
    with pytest.raises(ModelError, match=f"cannot be imported: pip install {missing[0]}"):
        Engine(UINT8_MODEL, LABELS)
