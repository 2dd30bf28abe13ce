"""Helpers for tests that run the real daemon in a subprocess and watch a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    received: float  # time.time(), to compare with the payload's wall-clock "ts"
    received_monotonic: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A real paho subscriber that records every message on `topics`."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._topics = topics
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber could not subscribe")

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Message(msg.topic, msg.payload, bool(msg.retain), time.time(), time.monotonic())
            )
            self._cond.notify_all()

    def on(self, suffix: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(
        self, predicate: Callable[[list[Message]], bool], timeout: float = 20.0
    ) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"timed out; {len(self.messages)} messages on {topics}")
                self._cond.wait(remaining)
            return list(self.messages)

    def wait_count(self, suffix: str, count: int, timeout: float = 20.0) -> list[Message]:
        self.wait_for(lambda ms: sum(m.topic.endswith(suffix) for m in ms) >= count, timeout)
        return self.on(suffix)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def collector(host: str, port: int, topics: list[str]) -> Iterator[Collector]:
    c = Collector(host, port, topics)
    try:
        yield c
    finally:
        c.close()


def write_config(path: Path, text: str) -> Path:
    path.write_text(
        text.replace("@MODELS@", str(REPO / "models")).replace("@SAMPLES@", str(REPO / "samples"))
    )
    return path


class DaemonProcess:
    """`camclassd run` in a subprocess; stderr goes to a file the test can read."""

    def __init__(
        self, config: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        self.log_path = config.with_suffix(".log")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("WATCHDOG_USEC", None)
        full_env.update(env or {})
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "camclassd", "run", "--config", str(config), *(args or [])],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=full_env,
            cwd=REPO,
        )

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


@contextmanager
def daemon(config: Path, **kwargs: Any) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(config, **kwargs)
    try:
        yield proc
    finally:
        proc.stop()
