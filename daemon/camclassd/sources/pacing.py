"""Frame-rate pacing shared by the sources that generate or replay frames."""

from __future__ import annotations

import time


class Pacer:
    """Sleeps so that successive calls to wait() are 1/fps apart; no-op without an fps.

    Deadlines advance from the previous deadline, not from "now", so the average rate is
    exact; after falling behind by more than a frame it resynchronises instead of bursting.
    """

    __slots__ = ("_next", "_period")

    def __init__(self, fps: float | None) -> None:
        self._period = 1.0 / fps if fps else 0.0
        self._next = 0.0

    def wait(self) -> None:
        if not self._period:
            return
        now = time.monotonic()
        if self._next == 0.0 or now - self._next > self._period:
            self._next = now
        elif self._next > now:
            time.sleep(self._next - now)
        self._next += self._period
