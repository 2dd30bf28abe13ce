"""Which frames become snapshots: one camera's policy, decided next to the frames.

A snapshot is due when one was requested (the `snapshot` command) or when the interval has
passed since the last one. The capture thread asks `claim()` for every frame it queues, so
exactly one frame carries the image; if that frame is lost before it is classified (a full
queue), `rearm()` makes the next one carry it. Snapshots never change which classifications are
published: they travel to the sinks as a `Snapshot` of their own.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from camclassd.results import Prediction


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A frame's image with the top-k of that same frame, for the sinks to render."""

    camera: str
    seq: int
    wall_time: float
    image: np.ndarray  # RGB uint8 HxWx3: the source's full-size image where it has one
    top: tuple[Prediction, ...]


class SnapshotPolicy:
    """Interval snapshots (0 = only on request) plus pending requests, for one camera."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()  # requests come from the main thread, claims from capture
        self._requested = False
        self._last = -math.inf

    def request(self) -> None:
        with self._lock:
            self._requested = True

    def claim(self, now: float) -> bool:
        """True when this frame is to carry the snapshot image (then it is no longer due)."""
        with self._lock:
            due = self._requested or (self.interval_s > 0 and now - self._last >= self.interval_s)
            if due:
                self._requested = False
                self._last = now
            return due

    def rearm(self) -> None:
        """The frame that claimed the snapshot was lost: the next frame takes it."""
        self.request()
