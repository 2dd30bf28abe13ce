"""`camclassd watch`: live results and metrics from the broker, as a table or JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from camclassd import secrets
from camclassd.errors import EXIT_FAILURE, EXIT_OK, UnavailableError, UsageError
from camclassd.secrets import SecretsError

CLEAR_HOME = "\x1b[H\x1b[2J"
REFRESH_S = 1.0


@dataclass(slots=True)
class Row:
    label: str = "-"
    score: float | None = None
    latency_ms: float | None = None
    seen: float = 0.0  # monotonic time of the last message


@dataclass(slots=True)
class Board:
    """What the table shows: the newest result per (device, camera) and fps per device."""

    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    fps: dict[str, float] = field(default_factory=dict)

    def update(self, topic: str, payload: Any, now: float) -> None:
        parts = topic.split("/")
        if len(parts) >= 4 and parts[-1] == "classification" and isinstance(payload, dict):
            row = self.rows.setdefault((parts[-3], parts[-2]), Row())
            top = payload.get("top") or []
            best = top[0] if top and isinstance(top[0], dict) else {}
            row.label = str(best.get("label", "-"))
            row.score = _number(best.get("score"))
            latency = payload.get("latency_ms")
            row.latency_ms = (
                _number(latency.get("capture_to_publish")) if isinstance(latency, dict) else None
            )
            row.seen = now
        elif len(parts) >= 3 and parts[-1] == "metrics" and isinstance(payload, dict):
            fps = _number(payload.get("fps"))
            if fps is not None:
                self.fps[parts[-2]] = fps


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def render_table(board: Board, now: float, title: str = "") -> str:
    """The compact table: one row per device/camera."""
    header = (
        f"{'DEVICE':<16} {'CAMERA':<12} {'LABEL':<24} {'SCORE':>6} {'LATENCY':>10} {'FPS':>6} "
        f"{'AGE':>7}"
    )
    lines = [title, header] if title else [header]
    for (device, camera), row in sorted(board.rows.items()):
        score = f"{row.score:.0%}" if row.score is not None else "-"
        latency = f"{row.latency_ms:.1f} ms" if row.latency_ms is not None else "-"
        fps = board.fps.get(device)
        fps_text = f"{fps:.1f}" if fps is not None else "-"
        age = f"{now - row.seen:.1f}s"
        lines.append(
            f"{device[:16]:<16} {camera[:12]:<12} {row.label[:24]:<24} {score:>6} "
            f"{latency:>10} {fps_text:>6} {age:>7}"
        )
    if not board.rows:
        lines.append("(waiting for results)")
    return "\n".join(lines) + "\n"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    as_json = bool(args.json) or not out.isatty()
    messages: queue.Queue[tuple[str, bytes] | str] = queue.Queue()

    def on_connect(
        client: mqtt.Client,
        _u: Any,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            messages.put(f"the broker refused the connection: {reason.getName()} ({reason.value})")
            return
        base = f"{args.prefix}/{args.device}"
        client.subscribe([(f"{base}/+/classification", 0), (f"{base}/metrics", 0)])

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        messages.put((message.topic, bytes(message.payload)))

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"camclassd-watch-{os.getpid()}",
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    if args.username:
        # A SecretsError is a ConfigError: exit 78, naming --password-file.
        password = secrets.read_password(
            args.password_file, key="--password-file", credential=False
        )
        client.username_pw_set(args.username, password)
    tls = bool(args.tls) or args.ca_file is not None
    if tls:
        try:
            context = secrets.tls_context(args.ca_file, option=_flag)
        except SecretsError as error:
            what = f"--ca-file {args.ca_file}" if args.ca_file is not None else "TLS"
            raise UsageError(f"{what}: cannot be set up: {error}") from None
        client.tls_set_context(context)
    port = args.port if args.port is not None else (8883 if tls else 1883)
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(args.host, port, keepalive=30)
    except OSError as error:
        raise UnavailableError(
            f"cannot connect to the MQTT broker at {args.host}:{port}: {error}"
        ) from None
    client.loop_start()
    board = Board()
    title = f"camclassd watch  {args.host}:{port}  {args.prefix}/{args.device}  (Ctrl-C quits)"
    seen = 0
    try:
        while args.count is None or seen < args.count:
            try:
                item = messages.get(timeout=REFRESH_S)
            except queue.Empty:
                item = None
            if isinstance(item, str):
                print(f"camclassd watch: error: {item}", file=sys.stderr)
                return EXIT_FAILURE
            if item is not None:
                seen += 1
                topic, raw = item
                payload = _decode(raw)
                if as_json:
                    out.write(json.dumps({"topic": topic, "payload": payload}) + "\n")
                    out.flush()
                    continue
                board.update(topic, payload, time.monotonic())
            if not as_json:
                out.write(CLEAR_HOME + render_table(board, time.monotonic(), title))
                out.flush()
    finally:
        client.disconnect()
        client.loop_stop()
    return EXIT_OK


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")
