"""The unit of work that flows through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The stages a frame's latency is split into, in the order of the metrics payload.
STAGES = ("capture_to_publish", "queue", "preprocess", "inference", "postprocess")


@dataclass(slots=True)
class Frame:
    """One captured frame, resized to the model input, with a stamp per stage.

    Stamps are `time.monotonic()` seconds; latency metrics come from them, never from guesses,
    and `latencies_ms()` is the one place that turns them into per-stage figures.
    """

    camera: str
    seq: int
    pixels: np.ndarray  # the model-size view: RGB uint8 HxWx3 (the engine converts the dtype)
    wall_time: float  # time.time() at capture, for the payload's "ts"
    t_captured: float
    t_preprocessed: float = 0.0
    t_dequeued: float = 0.0
    t_inferred: float = 0.0
    t_published: float = 0.0  # when the result left the inference worker for the sinks
    # The image to snapshot (the source's full-size image where it has one), only on the
    # frame that the camera's snapshot policy picked.
    image: np.ndarray | None = None

    def latencies_ms(self) -> dict[str, float]:
        """Per-stage latency from the stamps, in milliseconds (one computation, read by the
        result payload and the metrics alike)."""
        return {
            "capture_to_publish": (self.t_published - self.t_captured) * 1000.0,
            "queue": (self.t_dequeued - self.t_preprocessed) * 1000.0,
            "preprocess": (self.t_preprocessed - self.t_captured) * 1000.0,
            "inference": (self.t_inferred - self.t_dequeued) * 1000.0,
            "postprocess": (self.t_published - self.t_inferred) * 1000.0,
        }
