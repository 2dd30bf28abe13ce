"""Counters and per-stage latency distributions, cheap enough to update for every frame.

Latencies live in fixed-size numpy ring buffers (the last `window` samples per stage), so
memory is allocated once and percentiles are taken over a sliding window. Everything is
guarded by one lock: each update is a few assignments, far cheaper than contention matters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import psutil

from camclassd.frame import Frame

STAGES = ("capture_to_publish", "queue", "preprocess", "inference", "postprocess")
# "gated": frames a stage (the scene-change gate) judged and skipped; they are part of
# "captured", so captured = classified + dropped + gated (+ frames in flight).
COUNTERS = ("captured", "gated", "classified", "published", "dropped", "errors", "reconnects")
CAMERA_COUNTERS = ("captured", "gated", "classified", "dropped", "errors", "reconnects")
FPS_HORIZON_S = 5.0  # fps is measured over the classifications of the last few seconds

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
PI_THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
# Bits of the Raspberry Pi firmware's get_throttled word.
THROTTLE_BITS = MappingProxyType(
    {
        "under_voltage": 0,
        "freq_capped": 1,
        "throttled": 2,
        "soft_temp_limit": 3,
        "under_voltage_occurred": 16,
        "freq_capped_occurred": 17,
        "throttled_occurred": 18,
        "soft_temp_limit_occurred": 19,
    }
)


class Window:
    """The last `size` values of a series in a preallocated ring; percentiles on demand."""

    __slots__ = ("_count", "_values")

    def __init__(self, size: int) -> None:
        self._values = np.zeros(size, dtype=np.float64)
        self._count = 0  # all values ever added; the ring holds the last min(count, size)

    def add(self, value: float) -> None:
        self._values[self._count % self._values.size] = value
        self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def values(self) -> np.ndarray:
        """A copy of the values in the window (order not kept)."""
        return self._values[: min(self._count, self._values.size)].copy()

    def newest(self) -> float:
        return float(self._values[(self._count - 1) % self._values.size]) if self._count else 0.0


def summarize_ms(values_s: np.ndarray, count: int) -> dict[str, float | int]:
    """p50/p90/p99/max in milliseconds of seconds-valued samples, plus the total count."""
    if values_s.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "count": count}
    p50, p90, p99 = np.percentile(values_s, (50, 90, 99)) * 1000.0
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "max": round(float(values_s.max()) * 1000.0, 3),
        "count": count,
    }


def gate_open_ratio(counts: Mapping[str, int]) -> float | None:
    """The share of captured frames the stage let through, since start; None before any."""
    captured = counts.get("captured", 0)
    if captured <= 0:
        return None
    return round(max(0, captured - counts.get("gated", 0)) / captured, 4)


def rate(stamps: np.ndarray, now: float, horizon: float = FPS_HORIZON_S) -> float:
    """Events per second among monotonic `stamps` of the last `horizon` seconds."""
    recent = stamps[stamps > now - horizon]
    if recent.size < 2:
        return 0.0
    span = float(recent.max() - recent.min())
    return (recent.size - 1) / span if span > 0 else 0.0


class _Camera:
    __slots__ = ("counters", "stamps")

    def __init__(self, window: int) -> None:
        self.counters = dict.fromkeys(CAMERA_COUNTERS, 0)
        self.stamps = Window(window)


class Metrics:
    """Thread-safe pipeline metrics; `snapshot()` gives the layout of docs/architecture.md."""

    def __init__(self, window: int = 1000, cameras: Iterable[str] = ()) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._dropped: dict[str, int] = {}
        self._cameras: dict[str, _Camera] = {}
        self._latency = {stage: Window(window) for stage in STAGES}
        self._stamps = Window(window)
        self._process = psutil.Process()
        for name in cameras:
            self._camera(name)

    def _camera(self, name: str) -> _Camera:
        camera = self._cameras.get(name)
        if camera is None:
            camera = self._cameras[name] = _Camera(self.window)
        return camera

    # --- updates, one lock each ---
    def captured(self, camera: str) -> None:
        with self._lock:
            self._counters["captured"] += 1
            self._camera(camera).counters["captured"] += 1

    def dropped(self, camera: str, reason: str, count: int = 1) -> None:
        with self._lock:
            self._counters["dropped"] += count
            self._dropped[reason] = self._dropped.get(reason, 0) + count
            self._camera(camera).counters["dropped"] += count

    def error(self, camera: str | None = None) -> None:
        with self._lock:
            self._counters["errors"] += 1
            if camera is not None:
                self._camera(camera).counters["errors"] += 1

    def reconnect(self, camera: str) -> None:
        with self._lock:
            self._counters["reconnects"] += 1
            self._camera(camera).counters["reconnects"] += 1

    def gated(self, camera: str) -> None:
        """A frame the camera's stage skipped: seen and judged, not lost."""
        with self._lock:
            self._counters["gated"] += 1
            self._camera(camera).counters["gated"] += 1

    def published(self, camera: str) -> None:
        with self._lock:
            self._counters["published"] += 1

    def classified(self, frame: Frame) -> None:
        """Count a classified frame and record its stage latencies from its stamps."""
        with self._lock:
            self._counters["classified"] += 1
            camera = self._camera(frame.camera)
            camera.counters["classified"] += 1
            camera.stamps.add(frame.t_published)
            self._stamps.add(frame.t_published)
            latency = self._latency
            latency["capture_to_publish"].add(frame.t_published - frame.t_captured)
            latency["preprocess"].add(frame.t_preprocessed - frame.t_captured)
            latency["queue"].add(frame.t_dequeued - frame.t_preprocessed)
            latency["inference"].add(frame.t_inferred - frame.t_dequeued)
            latency["postprocess"].add(frame.t_published - frame.t_inferred)

    # --- reading ---
    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def latency_values(self, stage: str) -> np.ndarray:
        """The seconds-valued samples of one stage currently in the window."""
        with self._lock:
            return self._latency[stage].values()

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            counters = dict(self._counters)
            dropped = dict(self._dropped)
            cameras = {
                name: (dict(camera.counters), camera.stamps.values())
                for name, camera in self._cameras.items()
            }
            latency = {stage: (w.values(), w.count) for stage, w in self._latency.items()}
            stamps = self._stamps.values()
        # Percentiles are computed outside the lock so the pipeline never waits on them.
        return {
            "uptime_s": round(now - self._started, 3),
            "fps": round(rate(stamps, now), 3),
            "frames": counters,
            "dropped": dropped,
            "cameras": {
                name: {
                    **counts,
                    "fps": round(rate(camera_stamps, now), 3),
                    "gate_open_ratio": gate_open_ratio(counts),
                }
                for name, (counts, camera_stamps) in cameras.items()
            },
            "latency_ms": {
                stage: summarize_ms(values, count) for stage, (values, count) in latency.items()
            },
        }

    def fps(self) -> float:
        """Classified frames per second, without the percentiles that snapshot() computes."""
        now = time.monotonic()
        with self._lock:
            stamps = self._stamps.values()
        return rate(stamps, now)

    def classified_total(self) -> int:
        with self._lock:
            return self._counters["classified"]

    def process_stats(self) -> dict[str, Any]:
        """Process stats with CPU % measured since the previous call (no waiting)."""
        return process_stats(self._process)


def process_stats(process: psutil.Process | None = None) -> dict[str, Any]:
    """CPU % and RSS of this process, CPU temperature and Pi throttling where readable.

    With a long-lived `process` the CPU % covers the time since its previous call; without
    one it is sampled over 0.1 s (a fresh psutil.Process has no previous sample).
    """
    if process is None:
        process = psutil.Process()
        cpu = process.cpu_percent(interval=0.1)
    else:
        cpu = process.cpu_percent(interval=None)
    rss = process.memory_info().rss
    return {
        "cpu_percent": round(float(cpu), 1),
        "rss_mb": round(rss / 2**20, 1),
        "cpu_temperature_c": cpu_temperature(),
        "throttled": throttled_flags(),
    }


def cpu_temperature() -> float | None:
    """The CPU temperature in °C, or None where no sensor is readable."""
    sensors = getattr(psutil, "sensors_temperatures", None)
    if sensors is not None:
        try:
            readings: Mapping[str, list[Any]] = sensors()
        except (OSError, RuntimeError):
            readings = {}
        for key in ("cpu_thermal", "coretemp", "k10temp", "soc_thermal", "cpu-thermal"):
            entries = readings.get(key)
            if entries:
                return round(float(entries[0].current), 1)
    try:
        return round(int(THERMAL_ZONE.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def throttled_flags(path: Path = PI_THROTTLED) -> dict[str, Any] | None:
    """The Raspberry Pi firmware's throttling word, decoded; None off a Pi."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return decode_throttled(text)


def decode_throttled(text: str) -> dict[str, Any] | None:
    try:
        word = int(text, 16)
    except ValueError:
        return None
    return {
        "raw": f"0x{word:x}",
        **{name: bool(word >> bit & 1) for name, bit in THROTTLE_BITS.items()},
    }
