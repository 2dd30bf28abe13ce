"""`camclassd train` end to end on datasets made from real photos, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from camclassd.engine import Engine
from camclassd.preprocess import Preprocessor
from camclassd.training import dataset, surgery
from camclassd.training.embed import Embedder
from camclassd.training.quantize import int8_logits
from tests.conftest import FLOAT_MODEL, UINT8_MODEL, run_cli
from tests.training.conftest import STATE_PER_CLASS, train
from tests.training.data import OBJECT_CLASSES


def _card(out: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((out / "card.json").read_text())
    return loaded


def _holdout_accuracy(model: Path, holdout: Path) -> float:
    """top-1 of `camclassd classify --json` (a subprocess) on views never used in training."""
    data = dataset.scan(holdout)
    paths = [str(e.path) for e in data.examples]
    done = run_cli("classify", "--model", str(model), "--json", "--top-k", "1", *paths)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(paths)
    truth = [data.classes[e.label] for e in data.examples]
    return float(np.mean([r["top"][0]["label"] == t for r, t in zip(results, truth, strict=True)]))


@pytest.mark.parametrize("fixture", ["object_model", "state_model"])
def test_the_model_is_all_integer_with_k_outputs_and_its_labels(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    out: Path = request.getfixturevalue(fixture)
    made = _card(out)
    name = str(made["name"])
    model_bytes = (out / f"{name}.tflite").read_bytes()
    labels = (out / f"{name}.txt").read_text().splitlines()
    assert labels == made["classes"]
    model = surgery.load(model_bytes)
    schema = surgery._schema()
    graph = model.subgraphs[0]
    kinds = {schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT32}
    floats = [t.name for t in graph.tensors if t.type not in kinds]
    assert not floats, f"float tensors in the int8 model: {floats[:3]}"
    engine = Engine(out / f"{name}.tflite", out / f"{name}.txt")
    assert engine.num_classes == len(labels)
    assert engine.input_dtype == np.uint8 and engine.takes_raw_pixels()
    assert engine.output_dtype == np.uint8
    # the 1000 x 1280 ImageNet weights are gone: smaller than the shipped model
    assert len(model_bytes) < UINT8_MODEL.stat().st_size - 1_000_000


def test_object_task_classifies_new_views_via_the_classify_cli(
    object_model: Path, object_holdout: Path
) -> None:
    made = _card(object_model)
    assert made["classes"] == sorted(OBJECT_CLASSES)
    accuracy = _holdout_accuracy(object_model / "objects.tflite", object_holdout)
    assert accuracy >= 0.9, accuracy
    validation = made["validation"]
    assert isinstance(validation, dict)
    assert validation["method"] == "stratified 5-fold"
    assert validation["accuracy"] >= 0.9
    assert validation["int8_float_agreement"] >= 0.97
    assert len(validation["confusion"]) == 5


def test_state_task_classifies_new_views_via_the_classify_cli(
    state_model: Path, state_holdout: Path
) -> None:
    made = _card(state_model)
    assert made["background_class"] == "none"
    accuracy = _holdout_accuracy(state_model / "door.tflite", state_holdout)
    assert accuracy >= 0.85, accuracy
    curve = made["validation"]["learning_curve"]  # type: ignore[index]
    assert curve[0]["per_class"] == 1
    assert curve[-1]["per_class"] > curve[0]["per_class"]


def test_the_tflite_output_matches_the_numpy_int8_head(
    state_model: Path, state_data: Path, embedder: Embedder
) -> None:
    """The model the interpreter runs computes what quantize.int8_logits models (1 step)."""
    assert isinstance(embedder, Embedder)
    model = surgery.load((state_model / "door.tflite").read_bytes())
    graph = model.subgraphs[0]
    fc = next(
        op
        for op in graph.operators
        if len(op.inputs) == 3
        and op.inputs[2] >= 0
        and surgery._op_name(model, op) == "FULLY_CONNECTED"
    )
    w, b, out = (graph.tensors[i] for i in (fc.inputs[1], fc.inputs[2], fc.outputs[0]))

    def values(tensor: object, dtype: str) -> np.ndarray:
        return np.frombuffer(model.buffers[tensor.buffer].data.tobytes(), dtype=dtype)  # type: ignore[attr-defined]

    head = surgery.QuantizedHead(
        weights=values(w, "int8").reshape(2, -1),
        weight_scales=np.asarray(w.quantization.scale, np.float32),
        bias=values(b, "<i4"),
        output_scale=float(out.quantization.scale[0]),
        output_zero_point=int(out.quantization.zeroPoint[0]),
    )
    engine = Engine(state_model / "door.tflite", state_model / "door.txt")
    preprocess = Preprocessor(size=engine.input_size)
    for example in dataset.scan(state_data).examples[::4]:
        frame = dataset.decode(example.path)
        assert frame is not None
        pixels = preprocess(frame)
        expected = int8_logits(head, embedder(pixels)[np.newaxis], embedder.quantization)
        engine._interpreter.set_tensor(engine._input_index, pixels[np.newaxis])
        engine._interpreter.invoke()
        raw = engine._interpreter.get_tensor(engine._output_index).astype(np.int64)
        got = (raw - head.output_zero_point - 128) * head.output_scale
        assert np.abs(got - expected).max() <= head.output_scale * 1.01


def test_same_seed_same_bytes_other_seed_other_bytes(
    state_data: Path, state_model: Path, tmp_path: Path
) -> None:
    again = train(state_data, tmp_path / "again", "--float")
    assert (again / "door.tflite").read_bytes() == (state_model / "door.tflite").read_bytes()
    assert (again / "door_float32.tflite").read_bytes() == (
        state_model / "door_float32.tflite"
    ).read_bytes()
    other = train(state_data, tmp_path / "other", "--seed", "7", "--folds", "2")
    assert (other / "door.tflite").read_bytes() != (state_model / "door.tflite").read_bytes()
    assert b"20" + b"26-" not in (state_model / "door.tflite").read_bytes()  # no date inside


def test_card_and_report(state_model: Path) -> None:
    made = _card(state_model)
    assert made["base_model"]["file"] == UINT8_MODEL.name  # type: ignore[index]
    assert made["base_model"]["sha256"] == hashlib.sha256(UINT8_MODEL.read_bytes()).hexdigest()  # type: ignore[index]
    assert str(made["command"]).startswith("camclassd train ")
    per_class = {"cat": STATE_PER_CLASS, "none": STATE_PER_CLASS}
    assert made["dataset"]["images_per_class"] == per_class  # type: ignore[index]
    text = (state_model / "card.txt").read_text()
    stdout = (state_model / "stdout.txt").read_text()
    assert "confusion matrix" in text and "learning curve" in text
    assert text in stdout
    assert "peak RSS" in stdout


def test_float_twin_is_float_and_agrees(state_model: Path, state_holdout: Path) -> None:
    twin = surgery.load((state_model / "door_float32.tflite").read_bytes())
    schema = surgery._schema()
    output = twin.subgraphs[0].tensors[twin.subgraphs[0].outputs[0]]
    assert output.type == schema.TensorType.FLOAT32
    done = run_cli(
        "evaluate",
        str(state_model / "door.tflite"),
        str(state_holdout),
        "--compare",
        str(state_model / "door_float32.tflite"),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    int8, float32 = report["models"]
    assert float32["agreement_with_first"] >= 0.95
    assert abs(int8["top1"] - float32["top1"]) <= 0.05


# ---- bad input: one line, its own exit code, nothing written ----------------------------------


def _refused(args: list[str], out: Path, code: int, *needles: str) -> None:
    done = run_cli("train", *args, "--out", str(out), "--no-progress")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("camclassd train: error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], done.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_missing_and_empty_datasets(tmp_path: Path) -> None:
    _refused([str(tmp_path / "nope")], tmp_path / "out", 66, "does not exist")
    (tmp_path / "empty").mkdir()
    _refused([str(tmp_path / "empty")], tmp_path / "out", 65, "has no images")


def test_single_class_and_class_without_readable_image(tmp_path: Path, state_data: Path) -> None:
    single = tmp_path / "single"
    shutil.copytree(state_data / "cat", single / "cat")
    _refused([str(single)], tmp_path / "out", 65, "one class", "none")
    (single / "broken").mkdir()
    (single / "broken" / "a.jpg").write_bytes(b"\xff\xd8 not a jpeg" * 10)
    _refused([str(single)], tmp_path / "out", 65, "'broken' has no readable image")
    (single / "empty").mkdir()
    (single / "broken").rename(tmp_path / "moved")
    _refused([str(single)], tmp_path / "out", 65, "class 'empty'", "has no image files")


def test_unreadable_and_non_image_files_are_skipped_and_counted(
    tmp_path: Path, state_data: Path
) -> None:
    data = tmp_path / "door"
    shutil.copytree(state_data, data)
    (data / "cat" / "broken.jpg").write_bytes(b"")
    (data / "none" / "notes.txt").write_text("not an image")
    out = train(data, tmp_path / "out", "--views", "1", "--folds", "2")
    made = _card(out)
    assert made["dataset"]["skipped_unreadable"] == 1  # type: ignore[index]
    assert made["dataset"]["skipped_not_images"] == 1  # type: ignore[index]
    assert "1 unreadable and 1 non-image files skipped" in (out / "stdout.txt").read_text()


def test_a_base_model_without_the_expected_head_is_refused(
    tmp_path: Path, state_data: Path
) -> None:
    cut, _ = surgery.embedding_model(UINT8_MODEL.read_bytes())
    (tmp_path / "cut.tflite").write_bytes(cut)
    _refused(
        [str(state_data), "--base", str(tmp_path / "cut.tflite")],
        tmp_path / "out",
        69,
        "last layer is MEAN",
        "FULLY_CONNECTED",
    )
    _refused(
        [str(state_data), "--base", str(FLOAT_MODEL)],
        tmp_path / "out",
        69,
        "cannot be a base model",
    )


def test_a_non_empty_out_is_kept_unless_forced(tmp_path: Path, state_data: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = run_cli("train", str(state_data), "--out", str(out), "--no-progress")
    assert done.returncode == 64, done.stderr
    assert "--force" in done.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_a_cameras_crop_comes_from_the_config(tmp_path: Path, state_data: Path) -> None:
    """--config/--camera: the views are the camera's roi crop, recorded in the card."""
    config = tmp_path / "camclassd.toml"
    config.write_text(
        '[cameras.door]\ntype = "images"\npath = "x"\ncrop = "roi"\n'
        'roi = [0.25, 0.2, 0.75, 0.8]\ninterpolation = "area"\n\n'
        '[cameras.yard]\ntype = "images"\npath = "y"\n'
    )
    out = train(
        state_data,
        tmp_path / "out",
        "--config",
        str(config),
        "--camera",
        "door",
        "--views",
        "1",
        "--folds",
        "2",
    )
    assert _card(out)["preprocessing"] == {
        "camera": "door",
        "crop": "roi",
        "roi": [0.25, 0.2, 0.75, 0.8],
        "interpolation": "area",
    }
    done = run_cli(
        "train",
        str(state_data),
        "--out",
        str(tmp_path / "o2"),
        "--config",
        str(config),
        "--no-progress",
    )
    assert done.returncode == 64 and "pick one with --camera" in done.stderr
    assert not (tmp_path / "o2").exists()


def test_the_collect_layout_one_level_too_high_is_explained(
    tmp_path: Path, state_data: Path
) -> None:
    shutil.copytree(state_data, tmp_path / "dataset" / "door")
    _refused(
        [str(tmp_path / "dataset")],
        tmp_path / "out",
        65,
        "holds folders, not images",
        str(tmp_path / "dataset" / "door"),
    )
