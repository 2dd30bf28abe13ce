"""The Prometheus rendering of a `MetricsSnapshot`, and its HTTP server.

A custom collector reads one snapshot per scrape: the model in metrics.py is the only
bookkeeping, so the endpoint and the MQTT payload always agree. prometheus-client is imported
only when the endpoint is enabled (see endpoint.py).

Stage latencies are a histogram, not a summary of the latency windows: bucket counts add up
across cameras and devices and `histogram_quantile()` works over any range chosen at query
time, whereas a window's percentiles cover the last N frames (seconds at 30 fps, minutes at
1 fps) and cannot be averaged.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from camclassd.metrics import LATENCY_BUCKETS_S, Metrics, MetricsSnapshot

PREFIX = "camclassd_"
# Per-camera counters shown as camclassd_frames_total{camera, outcome}.
FRAME_OUTCOMES = ("captured", "classified", "published", "dropped", "gated")
# Per-camera counters with a name of their own.
CAMERA_COUNTER_NAMES = MappingProxyType(
    {
        "errors": ("errors", "Errors (capture, inference, results, sinks) per camera."),
        "reconnects": ("camera_reconnects", "Times a camera was reopened after a failure."),
    }
)
# HELP texts of the counters and gauges that other parts record (generic names get a
# generic text): add a line here with a new one.
HELP = MappingProxyType(
    {
        "mqtt_buffered": "Results waiting for the broker now.",
        "mqtt_connected": "1 while connected to the MQTT broker.",
        "mqtt_dropped": "Results dropped because the store was full (oldest first).",
        "mqtt_delivered_after_reconnect": "Results delivered from the store after a reconnect.",
        "mqtt_reconnects": "Reconnections to the MQTT broker.",
    }
)
SCRAPE_STOP_TIMEOUT_S = 5.0


def families(snapshot: MetricsSnapshot, version: str) -> list[Metric]:
    """Every metric family of one snapshot, with the usual Prometheus names and units."""
    build = InfoMetricFamily(
        "camclassd_build", "The running camclassd.", labels=["version", "python"]
    )
    build.add_metric([version, platform.python_version()], {})
    frames = CounterMetricFamily(
        "camclassd_frames",
        "Frames per camera and outcome: captured, classified, published, dropped, gated "
        "(skipped by a stage).",
        labels=["camera", "outcome"],
    )
    dropped = CounterMetricFamily(
        "camclassd_frames_dropped",
        "Dropped frames per camera and reason.",
        labels=["camera", "reason"],
    )
    stages = HistogramMetricFamily(
        "camclassd_stage_seconds",
        "Latency of each stage of a classified frame (capture_to_publish is the whole path).",
        labels=["camera", "stage"],
    )
    counters: dict[str, CounterMetricFamily] = {}
    gauges: dict[str, GaugeMetricFamily] = {}

    def counter(name: str, help_text: str, labels: list[str]) -> CounterMetricFamily:
        if name not in counters:
            counters[name] = CounterMetricFamily(PREFIX + name, help_text, labels=labels)
        return counters[name]

    def gauge(name: str, help_text: str, labels: list[str]) -> GaugeMetricFamily:
        if name not in gauges:
            gauges[name] = GaugeMetricFamily(PREFIX + name, help_text, labels=labels)
        return gauges[name]

    for camera, state in snapshot.cameras.items():
        for name, value in state.counters.items():
            if name in FRAME_OUTCOMES:
                frames.add_metric([camera, name], value)
            else:
                own, text = CAMERA_COUNTER_NAMES.get(name, (name, HELP.get(name, f"{name}.")))
                counter(own, text, ["camera"]).add_metric([camera], value)
        for reason, value in state.dropped.items():
            dropped.add_metric([camera, reason], value)
        for stage, totals in state.latency.items():
            cumulative, buckets = 0, []
            for bound, n in zip(LATENCY_BUCKETS_S, totals.buckets, strict=False):
                cumulative += n
                buckets.append((repr(bound), float(cumulative)))
            buckets.append(("+Inf", float(totals.count)))
            stages.add_metric([camera, stage], buckets, totals.sum_s)
        for name, reading in state.gauges.items():
            gauge(name, HELP.get(name, f"{name}."), ["camera"]).add_metric([camera], reading)
    for name, value in snapshot.counters.items():
        if name in CAMERA_COUNTER_NAMES:  # e.g. an error outside any camera: camera=""
            own, text = CAMERA_COUNTER_NAMES[name]
            counter(own, text, ["camera"]).add_metric([""], value)
        else:
            counter(name, HELP.get(name, f"{name}."), []).add_metric([], value)
    for name, reading in snapshot.gauges.items():
        gauge(name, HELP.get(name, f"{name}."), []).add_metric([], reading)
    return [
        build,
        frames,
        dropped,
        stages,
        *counters.values(),
        *gauges.values(),
        *process_families(snapshot),
    ]


def process_families(snapshot: MetricsSnapshot) -> list[Metric]:
    """The process (standard process_* names, from the one sampler) and the board."""
    stats = snapshot.process
    if stats is None:
        return []
    found: list[Metric] = [
        CounterMetricFamily(
            "process_cpu_seconds", "User and system CPU time.", value=stats.cpu_seconds
        ),
        GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory size.", value=float(stats.rss_bytes)
        ),
        GaugeMetricFamily(
            "process_start_time_seconds", "Start time since the epoch.", value=stats.started_at
        ),
        GaugeMetricFamily(
            "camclassd_cpu_percent",
            "CPU % of one core since the previous sample (the MQTT payload's cpu_percent).",
            value=stats.cpu_percent,
        ),
    ]
    if stats.cpu_temperature_c is not None:
        found.append(
            GaugeMetricFamily(
                "camclassd_cpu_temperature_celsius",
                "CPU temperature.",
                value=stats.cpu_temperature_c,
            )
        )
    if stats.throttled is not None:
        throttled = GaugeMetricFamily(
            "camclassd_pi_throttled",
            "Raspberry Pi firmware throttling flags (get_throttled), 1 when set.",
            labels=["flag"],
        )
        for flag, on in stats.throttled.flags().items():
            throttled.add_metric([flag], 1.0 if on else 0.0)
        found.append(throttled)
    return found


class SnapshotCollector(Collector):
    """Renders a fresh snapshot of `metrics` at each scrape."""

    def __init__(self, metrics: Metrics, version: str) -> None:
        self._metrics = metrics
        self._version = version

    def collect(self) -> Iterator[Metric]:
        yield from families(self._metrics.snapshot(), self._version)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names vary with the cameras; nothing to check at registration


@dataclass
class Server:
    """A running endpoint: the HTTP server and its thread."""

    httpd: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(SCRAPE_STOP_TIMEOUT_S)


def serve(metrics: Metrics, host: str, port: int, version: str) -> Server:
    """Serve /metrics on host:port in a thread; OSError when it cannot bind."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(metrics, version))
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    return Server(httpd, thread)
