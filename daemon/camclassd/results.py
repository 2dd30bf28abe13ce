"""Classification results: top-k, thresholds with hysteresis, publish policy.

`ResultProcessor` is one camera's chain: probabilities -> `top_k` -> `LabelTracker` ->
`PublishPolicy` -> a `Classification` to publish, or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

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


class LabelTracker:
    """The label a dashboard should show for one camera: hysteresis plus a hold count.

    A new top label becomes the stable label only after `stable_frames` consecutive frames in
    which it is the top label with a score >= `threshold_high`. The stable label is cleared
    when its score falls below `threshold_low` (a label outside the top-k counts as 0). So a
    score wobbling between the two thresholds changes nothing, and the stable label never
    switches to another label more often than every `stable_frames` frames.
    """

    __slots__ = ("_candidate", "_count", "high", "low", "stable", "stable_frames")

    def __init__(self, threshold_high: float, threshold_low: float, stable_frames: int) -> None:
        if not 0.0 <= threshold_low <= threshold_high <= 1.0:
            raise ValueError("need 0 <= threshold_low <= threshold_high <= 1")
        if stable_frames < 1:
            raise ValueError("stable_frames must be >= 1")
        self.high = threshold_high
        self.low = threshold_low
        self.stable_frames = stable_frames
        self.stable: str | None = None
        self._candidate: str | None = None
        self._count = 0

    @property
    def pending(self) -> bool:
        """A candidate label is being counted towards stable_frames."""
        return self._candidate is not None

    def update(self, top: Sequence[Prediction]) -> tuple[str | None, bool]:
        """Feed one frame's top-k (best first); returns (stable_label, changed)."""
        before = self.stable
        if self.stable is not None:
            score = next((p.score for p in top if p.label == self.stable), 0.0)
            if score < self.low:
                self.stable = None
        best = top[0] if top else None
        if best is not None and best.score >= self.high and best.label != self.stable:
            if best.label == self._candidate:
                self._count += 1
            else:
                self._candidate, self._count = best.label, 1
            if self._count >= self.stable_frames:
                self.stable = best.label
                self._candidate, self._count = None, 0
        else:
            self._candidate, self._count = None, 0
        return self.stable, self.stable != before


PublishMode = Literal["every", "on_change", "max_rate"]


class PublishPolicy:
    """Decides which results of one camera reach the sinks; the first one always does."""

    __slots__ = ("_last", "max_rate_hz", "mode")

    def __init__(self, mode: PublishMode = "every", max_rate_hz: float = 1.0) -> None:
        if max_rate_hz <= 0:
            raise ValueError("max_rate_hz must be > 0")
        self.mode = mode
        self.max_rate_hz = max_rate_hz
        self._last: float | None = None  # monotonic time of the last published result

    def should_publish(self, now: float, changed: bool) -> bool:
        if self._last is None or self.mode == "every":
            publish = True
        elif self.mode == "on_change":
            publish = changed
        else:
            publish = now - self._last >= 1.0 / self.max_rate_hz
        if publish:
            self._last = now
        return publish


class ResultProcessor:
    """One camera's results, in classification order: top-k, stable label, publish decision.

    Not thread-safe by itself: the pipeline feeds one camera's frames through it one at a time.
    """

    def __init__(
        self,
        labels: Sequence[str],
        *,
        top: int,
        min_score: float,
        tracker: LabelTracker,
        policy: PublishPolicy,
    ) -> None:
        self._labels = labels
        self._top = top
        self._min_score = min_score
        self.tracker = tracker
        self.policy = policy
        self.last: Classification | None = None  # the newest result, published or not

    @property
    def label_pending(self) -> bool:
        """A new label is on its way to stable (seen, but not yet stable_frames in a row)."""
        return self.tracker.pending

    def process(
        self,
        probabilities: np.ndarray,
        *,
        camera: str,
        seq: int,
        wall_time: float,
        model: str,
        now: float,
        latency_ms: dict[str, float],
    ) -> tuple[Classification, bool]:
        """The result of one frame, and whether the publish policy lets it out."""
        top = top_k(probabilities, self._top, self._labels, self._min_score)
        stable_label, changed = self.tracker.update(top)
        result = Classification(
            camera=camera,
            seq=seq,
            wall_time=wall_time,
            model=model,
            top=top,
            stable_label=stable_label,
            changed=changed,
            latency_ms=latency_ms,
        )
        self.last = result
        return result, self.policy.should_publish(now, changed)
