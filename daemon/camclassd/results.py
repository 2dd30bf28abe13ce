"""Classification results: top-k, thresholds with hysteresis, publish policy."""

from __future__ import annotations

from collections.abc import Sequence
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


def top_k(
    probabilities: np.ndarray, k: int, labels: Sequence[str], min_score: float = 0.0
) -> tuple[Prediction, ...]:
    """The k best classes of one probability row, best first; ties go to the lower index.

    Classes scoring below `min_score` are left out, so fewer than k may come back.
    """
    scores = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    count = min(max(k, 0), scores.size)
    if count == 0:
        return ()
    if count < scores.size:
        # argpartition is O(n) but picks arbitrarily among ties: keep every class that
        # reaches the k-th score so that the tie-break below can prefer the lower index.
        kth = scores[np.argpartition(-scores, count - 1)[count - 1]]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(scores.size)
    # lexsort: last key is primary -> descending score, then ascending index.
    order = candidates[np.lexsort((candidates, -scores[candidates]))][:count]
    return tuple(
        Prediction(index=int(i), label=labels[int(i)], score=float(scores[i]))
        for i in order
        if scores[i] >= min_score
    )
