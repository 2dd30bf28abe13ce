"""MQTT test helpers shared by the MQTT tests and conftest: a real CommandTarget that records
what was asked of it, and a plain paho subscriber.

Kept free of test-only packages (jsonschema), so conftest can import it in every venv CI uses,
the tflite-runtime one included.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from camclassd.commands import CommandInbox, Request, answer, execute


class RecordingTarget:
    """A real CommandTarget that records what was asked of it, served like the daemon serves
    it: requests come in through a real CommandInbox and run on one server thread of their own
    (the daemon's main thread)."""

    def __init__(self, cameras: tuple[str, ...] = ("front", "back")) -> None:
        self.cameras = cameras
        self.paused = False
        self.calls: list[str] = []
        self.snapshots: list[str | None] = []
        self.reload_error: str | None = None
        self.reload_delay = 0.0
        self.reload_started = threading.Event()
        self.inbox = CommandInbox()
        self.served_on: set[str] = set()
        self._server = threading.Thread(target=self._serve, name="test-main", daemon=True)
        self._server.start()

    def submit(self, request: Request) -> None:
        self.inbox.submit(request)

    def _serve(self) -> None:
        while True:
            request = self.inbox.take(timeout=None)
            if request is None:
                return
            self.served_on.add(threading.current_thread().name)
            answer(request.respond, execute(request.command, self))

    def close(self) -> None:
        self.inbox.wake()

    def set_paused(self, paused: bool) -> None:
        self.calls.append("pause" if paused else "resume")
        self.paused = paused

    def snapshot(self, camera: str | None) -> None:
        if camera is not None and camera not in self.cameras:
            raise ValueError(f"unknown camera {camera!r}; cameras: {', '.join(self.cameras)}")
        self.calls.append("snapshot")
        self.snapshots.append(camera)

    def reload(self) -> str | None:
        self.calls.append("reload")
        self.reload_started.set()
        time.sleep(self.reload_delay)
        return self.reload_error

    def status(self) -> dict[str, Any]:
        return {
            "state": "paused" if self.paused else "running",
            "version": "0.1.0",
            "model": "efficientnet_lite0_uint8",
            "cameras": list(self.cameras),
            "config_digest": "0123456789abcdef",
            "started_at": "2026-11-25T10:00:00.000Z",
        }


class Subscriber:
    """A plain paho client that records every message it receives."""

    def __init__(
        self, port: int, topics: list[str], *, host: str = "127.0.0.1", v5: bool = True
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.received: list[tuple[float, mqtt.MQTTMessage]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sub-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscriber did not subscribe"

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.received.append((time.perf_counter(), message))
        self.messages.put(message)

    def wait_for(
        self, predicate: Callable[[mqtt.MQTTMessage], bool], timeout: float = 5.0
    ) -> mqtt.MQTTMessage:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if predicate(message):
                return message
        raise AssertionError("the expected message did not arrive")

    def collect(
        self, predicate: Callable[[mqtt.MQTTMessage], bool], count: int, timeout: float = 5.0
    ) -> list[mqtt.MQTTMessage]:
        found: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if predicate(message):
                found.append(message)
        return found

    def publish(self, topic: str, payload: bytes | str, **kwargs: Any) -> None:
        self.client.publish(topic, payload, qos=1, **kwargs).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
