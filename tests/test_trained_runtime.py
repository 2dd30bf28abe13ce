"""A model made by `camclassd train` loads and classifies in the runtime of this venv.

scripts/test-tflite-runtime.sh runs this file under tflite-runtime: that venv cannot train
(no TFLite schema, no scikit-image), so the model is made by the repository's main venv
(`CAMCLASSD_TRAIN_PYTHON`, default .venv/bin/python) and only loaded here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camclassd.engine import Engine
from tests.conftest import REPO, run_cli


def _trainer() -> str:
    try:
        import ai_edge_litert.schema_py_generated  # noqa: F401, PLC0415
        import skimage  # noqa: F401, PLC0415
    except ImportError:
        python = os.environ.get("CAMCLASSD_TRAIN_PYTHON", str(REPO / ".venv" / "bin" / "python"))
        if not Path(python).exists():
            pytest.skip(f"this venv cannot train and {python} does not exist")
        return python
    return sys.executable


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    env = {k: v for k, v in os.environ.items() if k != "CAMCLASSD_RUNTIME"}
    done = subprocess.run(
        [_trainer(), "-m", "tests.training.make_model", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out


def test_a_trained_model_loads_and_classifies_in_this_runtime(trained: Path) -> None:
    model, labels = trained / "door" / "door.tflite", trained / "door" / "door.txt"
    engine = Engine(model, labels)
    forced = os.environ.get("CAMCLASSD_RUNTIME")
    if forced:
        assert engine.runtime.startswith(forced)
    assert engine.labels == ["cat", "none"]
    images = sorted((trained / "data" / "door").glob("*/*.jpg"))
    done = run_cli("classify", "--model", str(model), "--json", *map(str, images))
    assert done.returncode == 0, done.stderr
    right = [
        json.loads(line)["top"][0]["label"] == path.parent.name
        for line, path in zip(done.stdout.splitlines(), images, strict=True)
    ]
    assert sum(right) >= 0.9 * len(images)
