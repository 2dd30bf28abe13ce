"""Classification results: top-k, thresholds with hysteresis, publish policy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Prediction:
    index: int
    label: str
    score: float  # probability in [0, 1], dequantized


@dataclass(slots=True)
class Classification:
    """What the pipeline hands to every sink for one classified frame."""

    camera: str
    seq: int
    wall_time: float  # time.time() at capture
    model: str  # model name (file stem)
    top: tuple[Prediction, ...]
    # The label a dashboard should show after hysteresis and stable_frames; None when nothing
    # is confident enough.
    stable_label: str | None
    changed: bool  # stable_label changed with this frame
    latency_ms: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = None  # raw RGB frame, only when a snapshot was requested
