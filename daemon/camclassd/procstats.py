"""Process and board readings: CPU %, CPU time, RSS, CPU temperature, Pi throttling.

`ProcessSampler` is the only reader of `psutil.Process.cpu_percent` in the daemon. psutil
measures CPU % since the previous call on the same Process object, so a second reader would
reset the first one's baseline and both would see the CPU of a few milliseconds. Every renderer
(MQTT payload, Prometheus) reads the sample that the metrics snapshot carries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psutil

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
TEMPERATURE_SENSORS = ("cpu_thermal", "coretemp", "k10temp", "soc_thermal", "cpu-thermal")
# Readers closer together than this share one sample: CPU % over a few milliseconds is noise.
MIN_SAMPLE_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Throttling:
    """The Raspberry Pi firmware's throttling word."""

    word: int

    def flags(self) -> dict[str, bool]:
        return {name: bool(self.word >> bit & 1) for name, bit in THROTTLE_BITS.items()}


@dataclass(frozen=True, slots=True)
class ProcessStats:
    cpu_percent: float  # of one core, since the previous sample (can pass 100 with threads)
    cpu_seconds: float  # user + system since the process started
    rss_bytes: int
    started_at: float  # time.time() when the process started
    cpu_temperature_c: float | None  # None where no sensor is readable
    throttled: Throttling | None  # None off a Raspberry Pi


class ProcessSampler:
    """Samples this process and the board; calls within `min_interval_s` share one sample."""

    def __init__(
        self,
        min_interval_s: float = MIN_SAMPLE_INTERVAL_S,
        *,
        throttled_path: Path = PI_THROTTLED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(interval=None)  # the baseline: the first sample means something
        self._min_interval_s = min_interval_s
        self._throttled_path = throttled_path
        self._clock = clock
        self._lock = threading.Lock()
        self._last: ProcessStats | None = None
        self._last_at = 0.0

    def sample(self) -> ProcessStats:
        with self._lock:  # two renderers at once must not both read cpu_percent
            now = self._clock()
            if self._last is not None and now - self._last_at < self._min_interval_s:
                return self._last
            process = self._process
            with process.oneshot():
                cpu = process.cpu_percent(interval=None)
                times = process.cpu_times()
                rss = process.memory_info().rss
                started = process.create_time()
            self._last = ProcessStats(
                cpu_percent=round(float(cpu), 1),
                cpu_seconds=float(times.user + times.system),
                rss_bytes=int(rss),
                started_at=float(started),
                cpu_temperature_c=cpu_temperature(),
                throttled=read_throttling(self._throttled_path),
            )
            self._last_at = now
            return self._last


def cpu_temperature() -> float | None:
    """The CPU temperature in °C, or None where no sensor is readable."""
    sensors = getattr(psutil, "sensors_temperatures", None)
    if sensors is not None:
        try:
            readings: Mapping[str, list[Any]] = sensors()
        except (OSError, RuntimeError):
            readings = {}
        for key in TEMPERATURE_SENSORS:
            entries = readings.get(key)
            if entries:
                return round(float(entries[0].current), 1)
    try:
        return round(int(THERMAL_ZONE.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def read_throttling(path: Path = PI_THROTTLED) -> Throttling | None:
    """The firmware's throttling word; None off a Pi (no such file) or when unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return decode_throttled(text)


def decode_throttled(text: str) -> Throttling | None:
    try:
        return Throttling(int(text, 16))
    except ValueError:
        return None
