"""`camclassd dataset DIR` and `camclassd evaluate` (the shipped ImageNet model included)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tests.conftest import FLOAT_MODEL, UINT8_MODEL, run_cli
from tests.training.conftest import STATE_PER_CLASS
from tests.training.data import _rgb, camera_view, write_jpeg


def test_dataset_check_counts_and_warns(tmp_path: Path, state_data: Path) -> None:
    data = tmp_path / "door"
    shutil.copytree(state_data, data)
    for extra in range(3):  # an imbalanced, small class
        write_jpeg(data / "open" / f"o{extra}.jpg", _rgb("rocket")[extra * 10 :])
    shutil.copy(data / "cat" / "cat-000.jpg", data / "cat" / "copy.jpg")
    (data / "none" / "broken.png").write_bytes(b"\x89PNG garbage")
    (data / "none" / "readme.md").write_text("labels")
    (data / "_unlabelled").mkdir()
    write_jpeg(data / "_unlabelled" / "x.jpg", _rgb("coffee"))
    done = run_cli("dataset", str(data), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    n = STATE_PER_CLASS
    assert report["classes"] == {"cat": n + 1, "none": n, "open": 3}
    assert report["unreadable"] == [str(data / "none" / "broken.png")]
    assert report["not_images"] == [str(data / "none" / "readme.md")]
    assert sorted(map(sorted, report["duplicates"])) == [
        sorted([str(data / "cat" / "cat-000.jpg"), str(data / "cat" / "copy.jpg")])
    ]
    warnings = " | ".join(report["warnings"])
    for needle in ("'open' has 3", "imbalanced", "do not decode", "not images", "duplicate"):
        assert needle in warnings, warnings
    human = run_cli("dataset", str(data))
    assert human.returncode == 0
    assert "warning: class 'open' has 3 readable image(s)" in human.stdout
    clean = run_cli("dataset", str(state_data))
    assert "ok: no warnings" in clean.stdout, clean.stdout
    missing = run_cli("dataset", str(tmp_path / "nope"))
    assert missing.returncode == 66 and missing.stderr.count("\n") == 1


def imagenet_dataset(root: Path) -> Path:
    """Folders named after ImageNet labels, views of the photos that show them."""
    rng = np.random.default_rng(4)
    for label, photo in (("tabby", "chelsea"), ("espresso", "coffee")):
        for index in range(4):
            write_jpeg(
                root / label / f"{index}.jpg", camera_view(_rgb(photo), rng, keep=(0.85, 0.95))
            )
    return root


def test_evaluate_the_shipped_models_on_imagenet_labels(tmp_path: Path) -> None:
    data = imagenet_dataset(tmp_path / "imagenet")
    done = run_cli("evaluate", str(UINT8_MODEL), str(data), "--compare", str(FLOAT_MODEL), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["classes"] == ["espresso", "tabby"]
    uint8, float32 = report["models"]
    assert uint8["views"] == 8 and uint8["top3"] >= 0.75 and uint8["top1"] >= 0.5
    assert uint8["bytes"] == UINT8_MODEL.stat().st_size
    assert uint8["median_invoke_ms"] > 0
    assert len(uint8["confusion"]) == 2 and len(uint8["confusion"][0]) == 3  # + "other"
    assert 0.0 <= float32["agreement_with_first"] <= 1.0
    human = run_cli(
        "evaluate", str(UINT8_MODEL), str(data), "--compare", str(FLOAT_MODEL), "--no-progress"
    )
    assert human.returncode == 0
    assert "side by side:" in human.stdout and "median invoke" in human.stdout


def test_evaluate_refuses_folders_that_are_not_labels(tmp_path: Path, state_data: Path) -> None:
    done = run_cli("evaluate", str(UINT8_MODEL), str(state_data))
    assert done.returncode == 65, done.stderr
    assert done.stderr.count("\n") == 1 and "'cat' is not a label" in done.stderr
