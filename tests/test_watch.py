"""`camclassd watch`: JSON lines when piped, a refreshing table in a terminal."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from camclassd.cli import build_parser
from camclassd.errors import UnavailableError, UsageError
from camclassd.mqtt.client import MqttService
from camclassd.mqtt.watch import CLEAR_HOME, Board, main, render_table
from tests.broker import Mosquitto, free_port
from tests.test_mqtt_client import (
    connected_over_tls,
    make_config,
    make_result,
    sample_metrics,
    wait_until,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def watch_args(port: int, *extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["watch", "--host", "127.0.0.1", "--port", str(port), *extra])


def run_watch(args: argparse.Namespace, out: io.StringIO) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(args, out)), daemon=True)
    thread.start()
    return thread, codes


def publish_until_done(
    service: MqttService, thread: threading.Thread, *, metrics: bool = False
) -> None:
    seq = 0
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        service.publish(make_result("front", seq))
        if metrics:
            service.publish_metrics(sample_metrics())
        seq += 1
        time.sleep(0.05)
    thread.join(1)
    assert not thread.is_alive()


def test_json_lines_when_piped(
    broker: Mosquitto, service_factory: Callable[..., MqttService]
) -> None:
    config = make_config(broker.port)
    device = config.device.resolved_id
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    out = io.StringIO()  # not a TTY: JSON lines without --json
    thread, codes = run_watch(watch_args(broker.port, "--device", device, "--count", "4"), out)
    publish_until_done(service, thread, metrics=True)
    assert codes == [0]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 4
    topics = {line["topic"] for line in lines}
    assert topics <= {f"camclassd/{device}/front/classification", f"camclassd/{device}/metrics"}
    first = next(line for line in lines if line["topic"].endswith("/classification"))
    assert first["payload"]["top"][0]["label"] == "tabby"


def test_table_in_a_terminal(
    broker: Mosquitto, service_factory: Callable[..., MqttService]
) -> None:
    config = make_config(broker.port)
    device = config.device.resolved_id
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    out = Terminal()
    thread, codes = run_watch(watch_args(broker.port, "--count", "6"), out)  # all devices: '+'
    publish_until_done(service, thread, metrics=True)
    assert codes == [0]
    screens = out.getvalue().split(CLEAR_HOME)
    last = screens[-1]
    assert "DEVICE" in last and "LATENCY" in last
    row = next(line for line in last.splitlines() if line.startswith(device))
    assert "front" in row and "tabby" in row and "71%" in row and "14.2 ms" in row
    assert "9.8" in row  # fps from the metrics topic


def test_json_flag_forces_json_in_a_terminal(
    broker: Mosquitto, service_factory: Callable[..., MqttService]
) -> None:
    config = make_config(broker.port)
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    out = Terminal()
    args = watch_args(broker.port, "--device", config.device.resolved_id, "--json", "--count", "1")
    thread, codes = run_watch(args, out)
    publish_until_done(service, thread)
    assert codes == [0] and CLEAR_HOME not in out.getvalue()
    assert json.loads(out.getvalue())["payload"]["camera"] == "front"


def test_unreachable_broker_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match="cannot connect to the MQTT broker"):
        main(watch_args(free_port(), "--count", "1"), io.StringIO())


def test_render_table_pure() -> None:
    board = Board()
    payload: dict[str, Any] = {
        "top": [{"label": "espresso", "score": 0.934}],
        "latency_ms": {"capture_to_publish": 12.0},
    }
    board.update("camclassd/pi-door/front/classification", payload, now=100.0)
    board.update("camclassd/pi-door/back/classification", {"top": []}, now=101.0)
    board.update("camclassd/pi-door/metrics", {"fps": 29.97}, now=101.0)
    board.update("camclassd/pi-door/metrics", "not json", now=101.0)  # ignored
    text = render_table(board, now=102.5, title="t")
    lines = text.splitlines()
    assert lines[0] == "t" and lines[1].startswith("DEVICE")
    assert lines[2].split() == ["pi-door", "back", "-", "-", "-", "30.0", "1.5s"]
    assert lines[3].split() == ["pi-door", "front", "espresso", "93%", "12.0", "ms", "30.0", "2.5s"]
    assert "waiting" in render_table(Board(), now=0.0)


def test_watch_over_tls(
    tls_broker: Mosquitto,
    certificates: dict[str, Path],
    service_factory: Callable[..., MqttService],
) -> None:
    service = connected_over_tls(tls_broker.port, certificates["ca.crt"], service_factory)
    args = build_parser().parse_args(
        ["watch", "--host", "localhost", "--port", str(tls_broker.port), "--count", "2",
         "--ca-file", str(certificates["ca.crt"])]
    )  # fmt: skip
    out = io.StringIO()
    thread, codes = run_watch(args, out)
    publish_until_done(service, thread)
    assert codes == [0]
    assert len(out.getvalue().splitlines()) == 2


def test_watch_with_an_unloadable_ca_file_says_so(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    args = watch_args(free_port(), "--ca-file", str(junk))
    with pytest.raises(UsageError, match="--ca-file"):
        main(args, io.StringIO())


def test_tls_without_a_port_goes_to_8883() -> None:
    args = build_parser().parse_args(["watch", "--host", "127.0.0.1", "--tls"])
    with pytest.raises(UnavailableError, match=r"127\.0\.0\.1:8883"):
        main(args, io.StringIO())
