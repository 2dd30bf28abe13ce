"""The unit of work that flows through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Frame:
    """One captured frame, preprocessed to the model input, with a stamp per stage.

    Stamps are `time.monotonic()` seconds; latency metrics come from them, never from guesses.
    """

    camera: str
    seq: int
    tensor: np.ndarray  # model input, HxWxC, already in the model's input dtype
    wall_time: float  # time.time() at capture, for the payload's "ts"
    t_captured: float
    t_preprocessed: float = 0.0
    t_dequeued: float = 0.0
    t_inferred: float = 0.0
    t_published: float = 0.0
    image: np.ndarray | None = None  # raw RGB frame, kept only while a snapshot is wanted
