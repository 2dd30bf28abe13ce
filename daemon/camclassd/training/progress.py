"""A progress bar on stderr when it is a terminal; a line at the start and end otherwise."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Bar:
    stream: TextIO
    label: str
    total: int
    enabled: bool = True
    _drawn: float = 0.0
    _started: float = 0.0

    def __post_init__(self) -> None:
        self._started = time.monotonic()
        if self.enabled and not self.stream.isatty():
            self.stream.write(f"{self.label}: {self.total} ...\n")
            self.stream.flush()

    def tick(self, done: int) -> None:
        now = time.monotonic()
        if not (self.enabled and self.stream.isatty()):
            return
        if now - self._drawn < 0.1 and done < self.total:
            return
        self._drawn = now
        width = 30
        filled = min(width, width * done // max(self.total, 1))
        rate = done / max(now - self._started, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {done}/{self.total}  {rate:.1f}/s  eta {eta:.0f}s\x1b[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.stream.isatty():
            self.stream.write("\r\x1b[K")
            self.stream.flush()
