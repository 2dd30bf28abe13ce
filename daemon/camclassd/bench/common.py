"""Helpers the bench parts share: a counting sink, progress on stderr, small readers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import psutil

from camclassd.cameras import open_source
from camclassd.config import CameraConfig
from camclassd.engine import Engine
from camclassd.preprocess import Preprocessor
from camclassd.results import Classification
from camclassd.snapshots import Snapshot

MIB = 2**20


@dataclass(frozen=True)
class Setup:
    """What every measurement shares: the same model, threads and source."""

    model: Path
    labels: Path
    threads: int
    camera: CameraConfig

    def engine(self) -> Engine:
        return Engine(self.model, self.labels, num_threads=self.threads)


class CountingSink:
    """Counts results and lets the benchmark wait for a count; keeps nothing."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0

    def publish(self, result: Classification) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def snapshot(self, snapshot: Snapshot) -> None:
        """Snapshots are not results: not counted."""

    def close(self) -> None:
        """Nothing to release."""

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


@dataclass
class Progress:
    """Progress on stderr: a redrawn bar on a terminal, one line per stage otherwise."""

    stream: TextIO
    enabled: bool = True
    _label: str = ""
    _drawn: float = 0.0

    @property
    def _redraw(self) -> bool:
        return self.enabled and self.stream.isatty()

    def stage(self, index: int, total: int, label: str) -> None:
        self._label = f"[{index}/{total}] {label}"
        self._drawn = 0.0
        if self.enabled and not self._redraw:
            self.stream.write(f"camclassd bench: {self._label}\n")
            self.stream.flush()

    def tick(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self._redraw or (now - self._drawn < 0.1 and done < total):
            return
        self._drawn = now
        width = 30
        filled = min(width, width * done // max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self._label:<28} [{bar}] {done}/{total}\x1b[K")
        self.stream.flush()

    def done(self) -> None:
        if self._redraw:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def read_one_frame(name: str, camera: CameraConfig) -> np.ndarray | None:
    """Open the camera's source, read one frame (None at end of stream) and close it."""
    source = open_source(name, camera)
    source.open()
    try:
        capture = source.read()
        return None if capture is None else capture.pixels
    finally:
        source.close()


def first_tensor(engine: Engine, camera: CameraConfig) -> np.ndarray:
    pixels = read_one_frame("fixed", camera)
    if pixels is None:
        raise RuntimeError("the source gave no frame")
    preprocess = Preprocessor(size=engine.input_size)
    return np.ascontiguousarray(engine.to_input(preprocess(pixels)))


def rate(runs: list[dict[str, Any]]) -> float:
    """Frames per second over several timed runs."""
    return float(sum(run["frames"] for run in runs) / sum(run["elapsed"] for run in runs))


def rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / MIB
