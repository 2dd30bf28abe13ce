"""`num_threads = "auto"`: interpreter threads planned for the cores there are.

Why not "all the cores": the interpreter's thread pool splits each invoke() into equal parts
and waits for the slowest. A source that decodes video (a file, RTSP, a USB camera sending
MJPEG) keeps a core busy for a good part of every frame, so the part of invoke() scheduled on
that core finishes late and the whole invoke() waits for it. Measured on a 2-core x86 machine
with a real 640x480 video file as the source: 1 interpreter thread reached 0.88-0.98 of the
raw invoke() rate, 2 threads only 0.62-0.71 (docs/performance.md). A picamera2 lores stream is
made by the ISP and costs the CPU almost nothing, so it leaves the cores to the interpreter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from camclassd.cameras import capture_cores
from camclassd.config import Config

# XNNPACK gains little beyond 4 threads on one model (published Pi 4/5 figures: 3 -> 4
# threads saves 5-15%), while every extra thread adds the waiting described above.
MAX_AUTO_THREADS = 4


def plan_threads(cores: int, source_costs: Iterable[float], workers: int = 1) -> int:
    """Interpreter threads per worker: the cores the sources leave, shared by the workers.

    Pure: `cores` is the CPUs this process may use, `source_costs` the cores each enabled
    camera's capture takes (`cameras.capture_cores`: each camera type declares it). Always
    at least 1, at most MAX_AUTO_THREADS.
    A cost is rounded to whole cores (a decoder that takes 0.6 of a core still preempts the
    interpreter's thread on that core), small ones (< 0.5 together) to nothing.
    """
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    taken = round(sum(max(0.0, cost) for cost in source_costs) + 1e-9)
    free = max(1, cores - taken)
    return max(1, min(MAX_AUTO_THREADS, free // workers))


def available_cores() -> int:
    """The CPUs this process may run on (affinity, e.g. systemd's CPUAffinity=)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_threads(config: Config, cores: int | None = None) -> int:
    """The interpreter threads per worker that `config.model.num_threads` means here."""
    setting = config.model.num_threads
    if setting != "auto":
        return setting
    costs = [capture_cores(camera) for camera in config.cameras.values() if camera.enabled]
    return plan_threads(
        available_cores() if cores is None else cores, costs, config.pipeline.workers
    )
