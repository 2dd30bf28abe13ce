"""The Prometheus rendering of the metrics model, its endpoint, and the real daemon scraped over
HTTP (real model, real photos, real mosquitto)."""

from __future__ import annotations

import dataclasses
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from camclassd import __version__, cli
from camclassd.config import PrometheusConfig
from camclassd.endpoint import MetricsEndpoint
from camclassd.errors import EXIT_CONFIG, ConfigError
from camclassd.frame import STAGES, Frame
from camclassd.metrics import LATENCY_BUCKETS_S, Metrics
from camclassd.procstats import Throttling
from camclassd.prometheus import SnapshotCollector, families
from tests.broker import Mosquitto, free_port
from tests.daemon_helpers import REPO, collector, daemon
from tests.daemon_helpers import Collector as Subscriber
from tests.test_daemon import make_config
from tests.test_mqtt_client import wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """name + sorted labels -> value, for every sample of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class Fixed(Collector):
    """Renders given families, so a hand-made snapshot can be exposed."""

    def __init__(self, found: list[Metric]) -> None:
        self.found = found

    def collect(self) -> Iterator[Metric]:
        yield from self.found


def exposition(found: list[Metric]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(found))
    return generate_latest(registry).decode()


def build_info(samples: Samples, version: str = __version__) -> float:
    return value(samples, "camclassd_build_info", version=version, python=platform.python_version())


def rendered(metrics: Metrics) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(metrics, "9.9.9"))
    return generate_latest(registry).decode()


def classify(metrics: Metrics, camera: str, inference_s: float, t0: float = 100.0) -> None:
    frame = Frame(camera, 1, np.zeros((1, 1, 3), np.uint8), 1.7e9, t0)
    frame.t_preprocessed = t0 + 0.001
    frame.t_dequeued = frame.t_preprocessed + 0.0005
    frame.t_inferred = frame.t_dequeued + inference_s
    frame.t_published = frame.t_inferred + 0.0002
    metrics.captured(camera)
    metrics.classified(frame)
    metrics.published(camera)


def test_names_labels_and_values_follow_the_model() -> None:
    metrics = Metrics(window=10, cameras=["front", "back"])
    inference = [0.004, 0.02, 0.02, 0.3, 12.0]  # the last one above every bucket
    for seconds in inference:
        classify(metrics, "front", seconds)
    metrics.captured("back")
    metrics.dropped("back", "queue_full")
    metrics.error("back")
    metrics.error()  # outside any camera
    metrics.reconnect("back")
    metrics.gated("front", 4)
    metrics.set_gauge("gate_open_ratio", 0.2, camera="front")
    metrics.set_gauge("mqtt_connected", 1)
    metrics.set_counter("mqtt_dropped", 3)
    samples = parse(rendered(metrics))

    frames = "camclassd_frames_total"
    assert value(samples, frames, camera="front", outcome="captured") == 5
    assert value(samples, frames, camera="front", outcome="classified") == 5
    assert value(samples, frames, camera="front", outcome="published") == 5
    assert value(samples, frames, camera="front", outcome="gated") == 4
    assert value(samples, frames, camera="back", outcome="dropped") == 1
    assert value(samples, frames, camera="back", outcome="gated") == 0  # never gated
    reason = {"camera": "back", "reason": "queue_full"}
    assert value(samples, "camclassd_frames_dropped_total", **reason) == 1
    assert value(samples, "camclassd_errors_total", camera="back") == 1
    assert value(samples, "camclassd_errors_total", camera="") == 1
    assert value(samples, "camclassd_camera_reconnects_total", camera="back") == 1
    assert value(samples, "camclassd_gate_open_ratio", camera="front") == 0.2
    assert value(samples, "camclassd_mqtt_connected") == 1
    assert value(samples, "camclassd_mqtt_dropped_total") == 3
    assert build_info(samples, "9.9.9") == 1

    # The stage histogram: cumulative buckets ending in +Inf == count, the sum in seconds.
    stage = {"camera": "front", "stage": "inference"}
    assert value(samples, "camclassd_stage_seconds_count", **stage) == 5
    assert value(samples, "camclassd_stage_seconds_sum", **stage) == pytest.approx(sum(inference))
    bucket = "camclassd_stage_seconds_bucket"
    for bound in LATENCY_BUCKETS_S:
        expected = sum(1 for s in inference if s <= bound)
        assert value(samples, bucket, le=repr(bound), **stage) == expected, bound
    assert value(samples, bucket, le="+Inf", **stage) == 5
    for name in STAGES:
        assert value(samples, "camclassd_stage_seconds_count", camera="front", stage=name) == 5
    assert value(samples, "camclassd_stage_seconds_count", camera="back", stage="queue") == 0

    # The process, from the one sampler.
    assert value(samples, "process_resident_memory_bytes") > 10 * 2**20
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_start_time_seconds") < time.time()
    assert value(samples, "camclassd_cpu_percent") >= 0


def test_board_readings_where_there_are_some() -> None:
    metrics = Metrics(window=10)
    snapshot = metrics.snapshot()
    assert snapshot.process is not None
    on_a_pi = dataclasses.replace(
        snapshot,
        process=dataclasses.replace(
            snapshot.process, cpu_temperature_c=61.5, throttled=Throttling(0x50005)
        ),
    )
    samples = parse(exposition(families(on_a_pi, "1")))
    assert value(samples, "camclassd_cpu_temperature_celsius") == 61.5
    assert value(samples, "camclassd_pi_throttled", flag="under_voltage") == 1
    assert value(samples, "camclassd_pi_throttled", flag="throttled_occurred") == 1
    assert value(samples, "camclassd_pi_throttled", flag="freq_capped") == 0
    off_a_pi = parse(rendered(metrics))
    assert not any(name.startswith("camclassd_pi_throttled") for name, _ in off_a_pi)


MINIMAL = """
[cameras.front]
type = "synthetic"

[mqtt]
enabled = false
"""


def test_check_config_shows_the_endpoint_and_rejects_a_bad_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "camclassd.toml"
    path.write_text(MINIMAL)
    assert cli.main(["check-config", str(path)]) == 0
    assert "  prometheus: off" in capsys.readouterr().out
    path.write_text(MINIMAL + '[prometheus]\nenabled = true\nhost = "::1"\nport = 9100\n')
    assert cli.main(["check-config", str(path)]) == 0
    assert "  prometheus: http://[::1]:9100/metrics" in capsys.readouterr().out
    path.write_text(MINIMAL + "[prometheus]\nenabled = true\nport = 0\n")
    assert cli.main(["check-config", str(path)]) == EXIT_CONFIG
    assert "prometheus.port = 0 (line 9)" in capsys.readouterr().err


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return parse(response.read().decode())


def refuses(port: int) -> bool:
    try:
        scrape(port)
    except urllib.error.URLError as error:
        return isinstance(error.reason, ConnectionRefusedError)
    return False


@contextmanager
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_endpoint_starts_moves_refuses_a_taken_port_and_stops() -> None:
    metrics = Metrics(window=10, cameras=["front"])
    classify(metrics, "front", 0.01)
    endpoint = MetricsEndpoint(metrics)
    endpoint.apply(PrometheusConfig())  # off by default: nothing listens
    assert endpoint.port is None
    first, second = free_port(), free_port()
    try:
        endpoint.apply(PrometheusConfig(enabled=True, port=first))
        samples = scrape(first)
        assert value(samples, "camclassd_frames_total", camera="front", outcome="classified") == 1
        assert build_info(samples) == 1

        endpoint.apply(PrometheusConfig(enabled=True, port=second))  # a new port: a new server
        assert endpoint.port == second
        assert scrape(second) and refuses(first)

        with taken_port() as busy, pytest.raises(ConfigError, match=rf"127.0.0.1:{busy}.*port"):
            endpoint.apply(PrometheusConfig(enabled=True, port=busy))
        assert endpoint.port == second and scrape(second)  # the previous one serves again

        endpoint.apply(PrometheusConfig(enabled=False, port=second))
        assert endpoint.port is None and refuses(second)
    finally:
        endpoint.stop()


def test_the_daemon_does_not_import_prometheus_client_unless_enabled() -> None:
    code = (
        "import sys, camclassd.daemon, camclassd.endpoint; "
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "False"


# ---- the real daemon -----------------------------------------------------------------------

PROMETHEUS = """
[prometheus]
enabled = true
port = {port}
"""


def daemon_config(tmp_path: Path, broker: int, port: int) -> tuple[Path, str]:
    """test_daemon's config (images of samples/ looping at 10 fps, MQTT) with the endpoint."""
    config, device = make_config(tmp_path, broker)
    config.write_text(config.read_text() + PROMETHEUS.format(port=port))
    return config, device


def move_to(config: Path, old: int, new: int) -> None:
    """Set [prometheus] port (the last line of the file) from `old` to `new`."""
    text = config.read_text()
    assert text.endswith(f"\nport = {old}\n")
    config.write_text(text.removesuffix(f"port = {old}\n") + f"port = {new}\n")


def pause(sub: Subscriber, base: str) -> None:
    sub.client.publish(f"{base}/cmd/pause", b"{}", qos=1)
    sub.wait_count("/cmd/pause/reply", 1)


def test_scraping_the_running_daemon_matches_what_it_classified(
    tmp_path: Path, broker: Mosquitto
) -> None:
    port = free_port()
    config, device = daemon_config(tmp_path, broker.port, port)
    base = f"camclassd/{device}"
    with collector(broker.host, broker.port, [f"{base}/#"]) as sub, daemon(config) as proc:
        sub.wait_count("/front/classification", 4, timeout=30)
        pause(sub, base)
        classified = "camclassd_frames_total", (("camera", "front"), ("outcome", "classified"))

        def settled() -> bool:  # a frame in flight at the pause may still land
            samples = scrape(port)
            return samples[classified] == len(sub.on("/front/classification"))

        assert wait_until(settled, timeout=20), proc.log()
        samples = scrape(port)
        results = [m.json() for m in sub.on("/front/classification")]
        n = len(results)
        assert value(samples, "camclassd_frames_total", camera="front", outcome="published") == n
        assert value(samples, "camclassd_frames_total", camera="front", outcome="captured") >= n
        for stage in ("inference", "preprocess", "queue", "capture_to_publish"):
            labels = {"camera": "front", "stage": stage}
            assert value(samples, "camclassd_stage_seconds_count", **labels) == n
            # The payload rounds each latency to 1 µs: the sums agree to that.
            total_s = sum(r["latency_ms"][stage] for r in results) / 1000.0
            got = value(samples, "camclassd_stage_seconds_sum", **labels)
            assert got == pytest.approx(total_s, abs=n * 1e-6), stage
        assert value(samples, "camclassd_errors_total", camera="front") == 0
        assert value(samples, "camclassd_mqtt_connected") == 1
        assert value(samples, "camclassd_mqtt_buffered") == 0
        assert value(samples, "process_resident_memory_bytes") > 50 * 2**20
        assert build_info(samples) == 1
        # The MQTT rendering of the same model says the same.
        count = len(sub.on("/metrics"))
        payload = sub.wait_count("/metrics", count + 1)[-1].json()
        assert payload["frames"]["classified"] == n == payload["cameras"]["front"]["classified"]
        assert payload["latency_ms"]["inference"]["count"] == n

        # A reload to another port moves the endpoint; a taken port is a rejected reload.
        moved = free_port()
        move_to(config, port, moved)
        proc.signal(signal.SIGHUP)
        assert wait_until(lambda: not refuses(moved), timeout=20), proc.log()
        assert refuses(port)
        assert scrape(moved)[classified] == n  # the same model: no counter restarted
        with taken_port() as busy:
            move_to(config, moved, busy)
            proc.signal(signal.SIGHUP)
            assert wait_until(lambda: "reload rejected" in proc.log(), timeout=20), proc.log()
        assert f"cannot listen on 127.0.0.1:{busy}" in proc.log()
        assert scrape(moved)[classified] == n and proc.alive()
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, proc.log()
    assert refuses(moved)


def test_a_taken_port_is_a_config_error_at_start(tmp_path: Path) -> None:
    with taken_port() as busy:
        config, _ = daemon_config(tmp_path, free_port(), busy)
        config.write_text(config.read_text().replace("[mqtt]", "[mqtt]\nenabled = false"))
        with daemon(config) as proc:
            assert proc.wait(timeout=30) == 78, proc.log()
            lines = [line for line in proc.log().splitlines() if line.strip()]
    assert any(
        f"cannot listen on 127.0.0.1:{busy}" in line and "[prometheus] port" in line
        for line in lines
    ), lines
    assert not any("Traceback" in line for line in lines)
