"""`camclassd classify` through the real CLI in a subprocess, and its image reading in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camclassd.classify import read_rgb, resolve_paths
from camclassd.engine import EDGETPU_LIBRARY
from camclassd.errors import (
    EXIT_DATAERR,
    EXIT_NOINPUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    InputDataError,
    InputNotFoundError,
)
from tests.conftest import FLOAT_MODEL, GOLDEN, LABELS, SAMPLES, UINT8_MODEL, run_cli

PHOTOS = sorted(GOLDEN)


@pytest.fixture
def garbage_jpg(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.jpg"
    path.write_bytes(b"\xff\xd8 this is not a JPEG at all " * 20)
    return path


def assert_one_error_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("camclassd classify: error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], stderr


# ---- in-process ------------------------------------------------------------------------------


def test_read_rgb_is_rgb() -> None:
    image = read_rgb(SAMPLES / "coffee.jpg")
    assert image.dtype.name == "uint8"
    assert image.ndim == 3
    assert image.shape[2] == 3
    # an espresso photo: more red than blue overall, which BGR order would invert
    assert image[..., 0].mean() > image[..., 2].mean()


def test_read_rgb_errors(tmp_path: Path, garbage_jpg: Path) -> None:
    with pytest.raises(InputNotFoundError, match="no such file") as missing:
        read_rgb(tmp_path / "missing.jpg")
    assert missing.value.exit_code == EXIT_NOINPUT
    with pytest.raises(InputDataError, match="not a readable image") as garbage:
        read_rgb(garbage_jpg)
    assert garbage.value.exit_code == EXIT_DATAERR
    with pytest.raises(InputNotFoundError, match="directory"):
        read_rgb(tmp_path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputDataError, match="empty file"):  # cv2.imdecode asserts on b""
        read_rgb(empty)


def test_labels_default_to_the_models_directory(tmp_path: Path) -> None:
    model, labels = resolve_paths(None, None)
    assert (model.resolve(), labels.resolve()) == (UINT8_MODEL.resolve(), LABELS.resolve())
    own = tmp_path / "m.tflite"
    (tmp_path / "m.txt").write_text("a\n", encoding="utf-8")
    assert resolve_paths(own, None) == (own, tmp_path / "m.txt")
    assert resolve_paths(own, Path("x.txt")) == (own, Path("x.txt"))


# ---- the real CLI ----------------------------------------------------------------------------


def test_human_output_golden() -> None:
    result = run_cli("classify", *(str(SAMPLES / name) for name in PHOTOS))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    blocks = result.stdout.split(str(SAMPLES))[1:]
    assert len(blocks) == len(PHOTOS)
    for name, block in zip(PHOTOS, blocks, strict=True):
        lines = block.strip().splitlines()
        assert lines[0] == "/" + name
        assert len(lines) == 1 + 3  # header + default top 3
        first = lines[1].split()
        assert first[0] == "1."
        label = " ".join(first[1:-2])
        assert label in GOLDEN[name], block
        assert first[-2].endswith("%")
        assert first[-1].startswith("(")


def test_json_output_top_k_5() -> None:
    images = [str(SAMPLES / name) for name in PHOTOS]
    result = run_cli(
        "classify", "--json", "--top-k", "5", "--model", str(FLOAT_MODEL), "--threads", "1", *images
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == images
    for name, record in zip(PHOTOS, records, strict=True):
        assert record["model"] == FLOAT_MODEL.stem
        assert record["inference_ms"] > 0
        top = record["top"]
        assert len(top) == 5
        assert set(top[0]) == {"label", "index", "score"}
        assert top[0]["label"] in GOLDEN[name]
        scores = [t["score"] for t in top]
        assert scores == sorted(scores, reverse=True)
        assert 0 < sum(scores) <= 1.0 + 1e-6


def test_some_images_fail_the_rest_are_classified(garbage_jpg: Path, tmp_path: Path) -> None:
    coffee = str(SAMPLES / "coffee.jpg")
    result = run_cli("classify", "--json", str(garbage_jpg), coffee, str(tmp_path / "gone.jpg"))
    assert result.returncode == EXIT_DATAERR  # the first error's code
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [coffee]
    assert records[0]["top"][0]["label"] == "espresso"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert "garbage.jpg" in lines[0]
    assert "gone.jpg: no such file" in lines[1]
    assert "Traceback" not in result.stderr


def _truncated(tmp_path: Path) -> list[str]:
    path = tmp_path / "truncated.tflite"
    path.write_bytes(UINT8_MODEL.read_bytes()[:1000])
    return ["--model", str(path), "--labels", str(LABELS)]


def _labels_999(tmp_path: Path) -> list[str]:
    path = tmp_path / "labels999.txt"
    path.write_text("\n".join(LABELS.read_text(encoding="utf-8").splitlines()[:999]) + "\n")
    return ["--labels", str(path)]


@pytest.mark.parametrize(
    ("case", "code", "needles"),
    [
        ("missing_model", EXIT_UNAVAILABLE, ["nope.tflite not found", "--model"]),
        ("truncated_model", EXIT_UNAVAILABLE, ["truncated.tflite is not a usable TFLite model"]),
        ("labels_999", EXIT_UNAVAILABLE, ["999 labels", "1000 output classes"]),
        ("missing_labels", EXIT_UNAVAILABLE, ["labels file", "nope.txt not found"]),
        ("garbage_image", EXIT_DATAERR, ["garbage.jpg: not a readable image"]),
        ("missing_image", EXIT_NOINPUT, ["gone.jpg: no such file"]),
        ("edgetpu", EXIT_UNAVAILABLE, [EDGETPU_LIBRARY, "libedgetpu1-std", "edgetpu_compiler"]),
        ("top_k_0", EXIT_USAGE, ["--top-k must be at least 1"]),
    ],
)
def test_errors_are_one_line_with_exit_code(
    case: str, code: int, needles: list[str], tmp_path: Path, garbage_jpg: Path
) -> None:
    image = str(SAMPLES / "coffee.jpg")
    args = {
        "missing_model": ["--model", str(tmp_path / "nope.tflite"), image],
        "truncated_model": [*_truncated(tmp_path), image],
        "labels_999": [*_labels_999(tmp_path), image],
        "missing_labels": ["--labels", str(tmp_path / "nope.txt"), image],
        "garbage_image": [str(garbage_jpg)],
        "missing_image": [str(tmp_path / "gone.jpg")],
        "edgetpu": ["--delegate", "edgetpu", image],
        "top_k_0": ["--top-k", "0", image],
    }[case]
    result = run_cli("classify", *args)
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert_one_error_line(result.stderr, *needles)
