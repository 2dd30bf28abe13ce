"""The metrics model: counters, gauges and latency windows per camera and stage.

Parts of the daemon record into one `Metrics`; renderers (the MQTT metrics payload in
mqtt/payloads.py, the Prometheus endpoint in prometheus.py) read one typed `MetricsSnapshot`
and keep no bookkeeping of their own.

Latencies live in preallocated numpy rings (the last `window` samples) with the count and sum
of every sample and a histogram over LATENCY_BUCKETS_S, so memory is allocated once. One lock
guards every update: each is a few assignments, far cheaper than contention matters.
Percentiles are computed outside the lock, so the pipeline never waits on a reader.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from camclassd.frame import STAGES, Frame
from camclassd.procstats import ProcessSampler, ProcessStats

__all__ = ["STAGES", "Metrics", "MetricsSnapshot"]

log = logging.getLogger(__name__)

# Every camera has these from the start ("gated": frames a stage skipped, not lost).
CAMERA_COUNTERS = (
    "captured",
    "gated",
    "classified",
    "published",
    "dropped",
    "errors",
    "reconnects",
)
FPS_HORIZON_S = 5.0  # fps is measured over the classifications of the last few seconds
# Histogram bounds in seconds: from a queue hop (~0.1 ms) to a frame stuck behind a slow model.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # becomes part of a Prometheus metric name

Hook = Callable[["Metrics"], None]


class Window:
    """The last `size` values of a series in a preallocated ring, the count and sum of all
    values ever added and, with `bounds`, how many fell in each bucket."""

    __slots__ = ("_bounds", "_buckets", "_count", "_sum", "_values")

    def __init__(self, size: int, bounds: tuple[float, ...] = ()) -> None:
        self._values = np.zeros(size, dtype=np.float64)
        self._count = 0  # all values ever added; the ring holds the last min(count, size)
        self._sum = 0.0
        self._bounds = bounds
        self._buckets = [0] * (len(bounds) + 1)  # the last one: above every bound

    def add(self, value: float) -> None:
        self._values[self._count % self._values.size] = value
        self._count += 1
        self._sum += value
        if self._bounds:
            # bisect_left: a value equal to a bound belongs to it (Prometheus' `le`).
            self._buckets[bisect.bisect_left(self._bounds, value)] += 1

    @property
    def count(self) -> int:
        return self._count

    @property
    def sum(self) -> float:
        return self._sum

    def buckets(self) -> tuple[int, ...]:
        """Counts per bound (not cumulative), then the count above the last bound."""
        return tuple(self._buckets)

    def values(self) -> np.ndarray:
        """A copy of the values in the window (order not kept)."""
        return self._values[: min(self._count, self._values.size)].copy()

    def newest(self) -> float:
        return float(self._values[(self._count - 1) % self._values.size]) if self._count else 0.0


# ---- the snapshot: what every renderer reads ----------------------------------------------


@dataclass(frozen=True, slots=True)
class StageTotals:
    """One camera's latency in one stage since start: count, sum and histogram (seconds)."""

    count: int
    sum_s: float
    buckets: tuple[int, ...]  # per bound of LATENCY_BUCKETS_S (not cumulative), then above


@dataclass(frozen=True, slots=True)
class Percentiles:
    """One stage over all cameras: p50..max over the last `window` samples (seconds; 0.0
    while empty), count and sum over every sample since start."""

    count: int
    sum_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float


@dataclass(frozen=True, slots=True)
class CameraMetrics:
    counters: Mapping[str, int]  # CAMERA_COUNTERS, then any counted per camera (e.g. gated)
    dropped: Mapping[str, int]  # dropped frames by reason
    fps: float  # classified frames per second over the last FPS_HORIZON_S
    latency: Mapping[str, StageTotals]  # per stage, STAGES order
    gauges: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    uptime_s: float
    fps: float  # all cameras
    window: int  # latency samples the percentiles are taken over
    cameras: Mapping[str, CameraMetrics]
    latency: Mapping[str, Percentiles]  # per stage, STAGES order
    # Not tied to a camera: errors outside one, the MQTT link's counters and gauges...
    counters: Mapping[str, int]
    gauges: Mapping[str, float]
    process: ProcessStats | None

    def frames(self) -> dict[str, int]:
        """Per-camera counters summed over the cameras, plus the device-wide count of the
        same name (an error outside any camera counts in "errors")."""
        return frame_totals((camera.counters for camera in self.cameras.values()), self.counters)

    def dropped(self) -> dict[str, int]:
        """Dropped frames by reason over all cameras."""
        totals: dict[str, int] = {}
        for camera in self.cameras.values():
            for reason, value in camera.dropped.items():
                totals[reason] = totals.get(reason, 0) + value
        return totals


# ---- the model ----------------------------------------------------------------------------


class _Camera:
    __slots__ = ("counters", "dropped", "gauges", "latency", "stamps")

    def __init__(self, window: int) -> None:
        self.counters = dict.fromkeys(CAMERA_COUNTERS, 0)
        self.dropped: dict[str, int] = {}
        self.gauges: dict[str, float] = {}
        self.latency = {stage: Window(window, LATENCY_BUCKETS_S) for stage in STAGES}
        self.stamps = Window(window)


class Metrics:
    """Thread-safe recording of the pipeline's metrics; `snapshot()` reads them all at once.

    The pipeline records frames (captured, classified, published, dropped, error, reconnect);
    other parts use the generic `count`, `set_counter` and `set_gauge` (per camera or for the
    device), or register an `on_collect` hook that sets its values just before each snapshot.
    """

    def __init__(
        self, window: int = 1000, cameras: Iterable[str] = (), *, sample_process: bool = True
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._cameras: dict[str, _Camera] = {}
        self._latency = {stage: Window(window) for stage in STAGES}
        self._stamps = Window(window)
        self._counters: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        self._hooks: list[Hook] = []
        self._sampler = ProcessSampler() if sample_process else None
        for name in cameras:
            self._camera(name)

    def _camera(self, name: str) -> _Camera:
        camera = self._cameras.get(name)
        if camera is None:
            camera = self._cameras[name] = _Camera(self.window)
        return camera

    # --- the pipeline's frames, one lock each ---
    def captured(self, camera: str) -> None:
        with self._lock:
            self._camera(camera).counters["captured"] += 1

    def dropped(self, camera: str, reason: str, n: int = 1) -> None:
        with self._lock:
            state = self._camera(camera)
            state.counters["dropped"] += n
            state.dropped[reason] = state.dropped.get(reason, 0) + n

    def error(self, camera: str | None = None) -> None:
        with self._lock:
            if camera is None:
                self._counters["errors"] = self._counters.get("errors", 0) + 1
            else:
                self._camera(camera).counters["errors"] += 1

    def reconnect(self, camera: str) -> None:
        with self._lock:
            self._camera(camera).counters["reconnects"] += 1

    def published(self, camera: str) -> None:
        with self._lock:
            self._camera(camera).counters["published"] += 1

    def gated(self, camera: str, n: int = 1) -> None:
        """Frames a stage judged and skipped (not lost). n=0 makes the counter appear."""
        self.count("gated", n, camera=camera)

    def classified(self, frame: Frame, latencies_ms: Mapping[str, float] | None = None) -> None:
        """Count a classified frame and record its stage latencies: `latencies_ms` as the
        pipeline computed them for the result (else `frame.latencies_ms()`)."""
        latency = frame.latencies_ms() if latencies_ms is None else latencies_ms
        with self._lock:
            camera = self._camera(frame.camera)
            camera.counters["classified"] += 1
            camera.stamps.add(frame.t_published)
            self._stamps.add(frame.t_published)
            for stage in STAGES:
                seconds = latency[stage] / 1000.0
                self._latency[stage].add(seconds)
                camera.latency[stage].add(seconds)

    # --- generic counters and gauges, for the other parts ---
    def count(self, name: str, n: int = 1, *, camera: str | None = None) -> None:
        """Add `n` to a counter (created at 0 on first use), per camera or device-wide."""
        with self._lock:
            counters = self._counters if camera is None else self._camera(camera).counters
            if name not in counters:
                _check_name(name)
                counters[name] = 0
            counters[name] += n

    def set_counter(self, name: str, total: int, *, camera: str | None = None) -> None:
        """Set a counter kept by its owner (e.g. the MQTT outbox's dropped results)."""
        with self._lock:
            counters = self._counters if camera is None else self._camera(camera).counters
            if name not in counters:
                _check_name(name)
            counters[name] = total

    def set_gauge(self, name: str, value: float, *, camera: str | None = None) -> None:
        with self._lock:
            gauges = self._gauges if camera is None else self._camera(camera).gauges
            if name not in gauges:
                _check_name(name)
            gauges[name] = float(value)

    def on_collect(self, hook: Hook) -> None:
        """Call `hook(self)` at the start of every snapshot, so that a part whose state is
        cheaper to read than to push (a queue's length, a connection) sets it then."""
        with self._lock:
            self._hooks.append(hook)

    # --- reading ---
    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            hooks = tuple(self._hooks)
        for hook in hooks:  # outside the lock: a hook records through the setters
            try:
                hook(self)
            except Exception:  # a broken reader must not take every metric down with it
                log.exception("metrics hook %r failed; its values are stale", hook)
        process = self._sampler.sample() if self._sampler is not None else None
        now = time.monotonic()
        with self._lock:
            cameras = {
                name: (
                    dict(camera.counters),
                    dict(camera.dropped),
                    dict(camera.gauges),
                    camera.stamps.values(),
                    {
                        stage: StageTotals(w.count, w.sum, w.buckets())
                        for stage, w in camera.latency.items()
                    },
                )
                for name, camera in self._cameras.items()
            }
            latency = {stage: (w.values(), w.count, w.sum) for stage, w in self._latency.items()}
            stamps = self._stamps.values()
            counters = dict(self._counters)
            gauges = dict(self._gauges)
        return MetricsSnapshot(
            uptime_s=now - self._started,
            fps=rate(stamps, now),
            window=self.window,
            cameras={
                name: CameraMetrics(
                    counters=counts,
                    dropped=dropped,
                    fps=rate(camera_stamps, now),
                    latency=totals,
                    gauges=camera_gauges,
                )
                for name, (counts, dropped, camera_gauges, camera_stamps, totals) in (
                    cameras.items()
                )
            },
            latency={
                stage: percentiles(values, count, total)
                for stage, (values, count, total) in latency.items()
            },
            counters=counters,
            gauges=gauges,
            process=process,
        )

    def counters(self) -> dict[str, int]:
        """The frame counters over all cameras (without the cost of a snapshot)."""
        with self._lock:
            cameras = (camera.counters for camera in self._cameras.values())
            return frame_totals(cameras, self._counters)

    def latency_values(self, stage: str) -> np.ndarray:
        """The seconds-valued samples of one stage (all cameras) currently in the window."""
        with self._lock:
            return self._latency[stage].values()

    def fps(self) -> float:
        """Classified frames per second, without the percentiles that snapshot() computes."""
        now = time.monotonic()
        with self._lock:
            stamps = self._stamps.values()
        return rate(stamps, now)

    def classified_total(self) -> int:
        with self._lock:
            return sum(camera.counters["classified"] for camera in self._cameras.values())


def frame_totals(cameras: Iterable[Mapping[str, int]], device: Mapping[str, int]) -> dict[str, int]:
    """Per-camera counters summed, plus the device-wide counter of the same name."""
    totals = dict.fromkeys(CAMERA_COUNTERS, 0)
    for counters in cameras:
        for name, value in counters.items():
            totals[name] = totals.get(name, 0) + value
    for name in totals:
        totals[name] += device.get(name, 0)
    return totals


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise ValueError(f"metric name {name!r} must be snake_case ASCII (a-z, 0-9, _)")


def percentiles(values_s: np.ndarray, count: int, total_s: float) -> Percentiles:
    """p50/p90/p99/max of seconds-valued samples; zeros when there are none."""
    if values_s.size == 0:
        return Percentiles(count, total_s, 0.0, 0.0, 0.0, 0.0)
    p50, p90, p99 = (float(v) for v in np.percentile(values_s, (50, 90, 99)))
    return Percentiles(count, total_s, p50, p90, p99, float(values_s.max()))


def rate(stamps: np.ndarray, now: float, horizon: float = FPS_HORIZON_S) -> float:
    """Events per second among monotonic `stamps` of the last `horizon` seconds."""
    recent = stamps[stamps > now - horizon]
    if recent.size < 2:
        return 0.0
    span = float(recent.max() - recent.min())
    return (recent.size - 1) / span if span > 0 else 0.0
