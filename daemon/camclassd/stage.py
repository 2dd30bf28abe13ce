"""Stages between capture and the queue: look at the small view of a frame, classify or skip.

A stage runs on its camera's capture thread, once per frame, after the crop and resize and
before the frame is queued for inference. It must be cheap (well under a millisecond) and
must not block. A frame a stage skips is counted as "gated", not as dropped: it was seen and
judged, not lost. The scene-change gate is the first real stage; `PassThrough` keeps every
frame (today's behaviour).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class StageInput:
    """What a stage may look at for one frame."""

    camera: str
    # The model-size view: the camera's crop/ROI resized to the model input, RGB uint8 HxWx3.
    pixels: np.ndarray
    # The source's own luma plane of the same moment (picamera2's lores Y), full frame, or None
    # where the source has none. Read-only: a source may reuse its buffer after the next read.
    luma: np.ndarray | None
    # The camera's crop/ROI in luma's coordinates (x, y, width, height), or None without luma.
    crop: tuple[int, int, int, int] | None
    t: float  # time.monotonic() at capture
    # True while the camera's results hold a new label that is not yet stable_frames in a row:
    # a gate keeps classifying until it settles, so hysteresis keeps its meaning.
    label_pending: bool


class Stage(Protocol):
    """A per-camera decision: classify this frame (True) or skip it (False)."""

    name: str

    def admit(self, item: StageInput) -> bool: ...

    def gauges(self) -> Mapping[str, float]:
        """The stage's current state for the metrics (e.g. {"scene_changing": 1.0})."""
        ...


class PassThrough:
    """Classifies every frame."""

    name = "none"

    def admit(self, item: StageInput) -> bool:
        return True

    def gauges(self) -> Mapping[str, float]:
        return {}
