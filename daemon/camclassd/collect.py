"""Collecting examples from the running daemon: the `collect` command's jobs, automatic
collection of the frames worth labelling, and the sink-side writer.

A job asks one camera for `count` frames, one every `interval_s`; the camera's capture thread
claims them (`CollectPolicy.claim`) and hands each to the sinks' thread as a `Sample`, where
`DatasetSink` writes it (`training.writer.DatasetWriter`: budget, atomic files). Nothing here
calls back up: the daemon polls a job for its reply. Automatic collection (`[collect] auto`)
picks, after inference, frames where the model is unsure or the stable label changed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camclassd.config import CollectConfig
from camclassd.errors import CamclassdError
from camclassd.results import Classification

MIB = 1024 * 1024
JOB_GRACE_S = 30.0  # a job not done this long after its last frame was due times out


class CollectJob:
    """One `collect` command: `count` frames of `camera`, one every `interval_s`.

    Thread-safe: frames are claimed on the capture thread, written on the sinks' thread, and
    the daemon polls it on the main thread.
    """

    def __init__(self, camera: str, label: str | None, count: int, interval_s: float) -> None:
        self.camera = camera
        self.label = label
        self.count = count
        self.interval_s = interval_s
        self.deadline = time.monotonic() + count * interval_s + JOB_GRACE_S
        self._lock = threading.Lock()
        self._claimed = 0
        self._next = -math.inf
        self._files: list[str] = []  # every file written: views and full images
        self._views = 0
        self._failures = 0
        self.error: str | None = None

    def claim(self, now: float) -> bool:
        """True when the frame captured at `now` is to be saved for this job."""
        with self._lock:
            if self.error is not None or self._claimed >= self.count or now < self._next:
                return False
            self._claimed += 1
            self._next = now + self.interval_s
            return True

    def saved(self, view: Path, full: Path | None) -> None:
        with self._lock:
            self._views += 1
            self._files.extend(str(path) for path in (view, full) if path is not None)

    def failed(self, error: str) -> None:
        """A write failed: the budget is full or the disk is (the job stops there)."""
        with self._lock:
            self._failures += 1
            self.error = error

    def lost(self) -> None:
        """A claimed frame never reached the writer (the sinks' queue was full): claim again."""
        with self._lock:
            self._claimed -= 1
            self._next = -math.inf

    @property
    def done(self) -> bool:
        with self._lock:
            return self.error is not None or self._views + self._failures >= self.count

    def poll(self, now: float) -> Mapping[str, Any] | None:
        """The reply's result once the job is done (or timed out), else None."""
        if not self.done and now < self.deadline:
            return None
        with self._lock:
            if self.error is None and self._views < self.count:
                self.error = (
                    f"only {self._views} of {self.count} frames saved before the job timed "
                    "out (is the camera paused or stalled?)"
                )
            return {
                "camera": self.camera,
                "label": self.label,
                "saved": self._views,
                "files": list(self._files),
            }


class CollectPolicy:
    """One camera's running `collect` jobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: list[CollectJob] = []

    def add(self, job: CollectJob) -> None:
        with self._lock:
            self._jobs.append(job)

    def take_unfinished(self) -> list[CollectJob]:
        """The jobs not done yet, removed from this camera (a reload carries them over)."""
        with self._lock:
            jobs, self._jobs = [job for job in self._jobs if not job.done], []
            return jobs

    def claim(self, now: float) -> list[CollectJob]:
        """The jobs this frame is saved for (usually none: one lock-free check)."""
        if not self._jobs:
            return []
        with self._lock:
            self._jobs = [job for job in self._jobs if not job.done]
            return [job for job in self._jobs if job.claim(now)]


class AutoCollect:
    """`[collect] auto`: is this result worth labelling? Unsure or a new stable label, at
    most one per camera every `auto_every_s`."""

    def __init__(self, settings: CollectConfig) -> None:
        self._settings = settings
        self._last: dict[str, float] = {}

    def wants(self, result: Classification, now: float) -> bool:
        settings = self._settings
        if not settings.auto:
            return False
        unsure = not result.top or result.top[0].score < settings.auto_below
        if not (unsure or result.changed):
            return False
        if now - self._last.get(result.camera, -math.inf) < settings.auto_every_s:
            return False
        self._last[result.camera] = now
        return True


@dataclass(frozen=True, slots=True)
class Sample:
    """A frame to save: the model's view and, where the source has it, the full image."""

    camera: str
    seq: int
    view: np.ndarray  # RGB uint8, model-size
    full: np.ndarray | None
    label: str | None
    jobs: tuple[CollectJob, ...] = field(default=())  # () for automatic collection


class DatasetSink:
    """Writes samples (on the sinks' thread) into the dataset folder within its budget."""

    def __init__(self, settings: CollectConfig) -> None:
        self._settings = settings
        self._writer: Any = None  # training.writer.DatasetWriter, made at the first sample

    def write(self, sample: Sample) -> None:
        try:
            saved = self._save(sample)
        except (CamclassdError, OSError, ValueError) as error:
            for job in sample.jobs:
                job.failed(str(error))
            if not sample.jobs:
                raise  # automatic collection: the fan-out logs it (rate-limited), counts it
            return
        for job in sample.jobs:
            job.saved(saved.view, saved.full)

    def _save(self, sample: Sample) -> Any:
        # The writer (OpenCV encoding, the training package) is loaded only when collecting.
        from camclassd.training.writer import Budget, DatasetWriter  # noqa: PLC0415

        if self._writer is None:
            budget = Budget(self._settings.max_files, int(self._settings.max_mib * MIB))
            self._writer = DatasetWriter(self._settings.dir, budget)
        return self._writer.save(
            sample.camera, sample.label, sample.view, sample.full, make_room=not sample.jobs
        )
