"""Shared fixtures: paths to the shipped models and sample photos, a real mosquitto broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Mosquitto

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
SAMPLES = REPO / "samples"
UINT8_MODEL = MODELS / "efficientnet_lite0_uint8.tflite"
FLOAT_MODEL = MODELS / "efficientnet_lite0_float32.tflite"
LABELS = MODELS / "imagenet_labels.txt"

# Golden photos: file in samples/ -> labels any of which is a right top-1.
GOLDEN: dict[str, frozenset[str]] = {
    "chelsea.jpg": frozenset({"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}),
    "coffee.jpg": frozenset({"espresso"}),
    "rocket.jpg": frozenset({"missile", "projectile"}),
    "motorcycle.jpg": frozenset({"moped", "motor scooter"}),
}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session", params=[UINT8_MODEL, FLOAT_MODEL], ids=["uint8", "float32"])
def model_path(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One anonymous mosquitto for the session. Tests that stop it must start it again."""
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


def run_cli(*args: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """The real `camclassd` CLI in a subprocess (`python -m camclassd`)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        [sys.executable, "-m", "camclassd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
