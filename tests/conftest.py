"""Shared fixtures: paths to the shipped models and sample photos, a real mosquitto broker,
MQTT services and subscribers that are closed at the end of a test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from camclassd.config import Config
from camclassd.mqtt.client import MqttService
from tests.broker import KEEP_USER, Mosquitto, free_port
from tests.mqtt_helpers import RecordingTarget, Subscriber

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


@pytest.fixture
def service_factory() -> Iterator[Callable[..., MqttService]]:
    """Builds and starts services; stops every one at the end."""
    made: list[tuple[MqttService, RecordingTarget]] = []

    def make(config: Config, target: Any = None, **kwargs: Any) -> MqttService:
        target = target or RecordingTarget()
        service = MqttService(config, target.submit, **kwargs)
        service.start()
        made.append((service, target))
        return service

    yield make
    for service, target in made:
        service.stop(timeout=1.0)
        target.close()


@pytest.fixture
def subscribers() -> Iterator[Callable[..., Subscriber]]:
    """Builds subscribers; closes every one at the end."""
    made: list[Subscriber] = []

    def make(*args: Any, **kwargs: Any) -> Subscriber:
        subscriber = Subscriber(*args, **kwargs)
        made.append(subscriber)
        return subscriber

    yield make
    for subscriber in made:
        subscriber.close()


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


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a server certificate for 'localhost' only, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=camclassd test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return {name: d / name for name in ("ca.crt", "server.crt", "server.key")}


@pytest.fixture
def tls_broker(tmp_path: Path, certificates: dict[str, Path]) -> Iterator[Mosquitto]:
    port = free_port()
    server = Mosquitto(
        tmp_path / "tls",
        port=port,
        extra_config=(
            f"{KEEP_USER}listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"cafile {certificates['ca.crt']}\ncertfile {certificates['server.crt']}\n"
            f"keyfile {certificates['server.key']}"
        ),
    )
    server.start()
    yield server
    server.stop()
