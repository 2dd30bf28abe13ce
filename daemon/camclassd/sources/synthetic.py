"""Generated frames of a configured size and rate, for benchmarks.

A few frames are made once and cycled, so a benchmark measures the pipeline and not the
generator.
"""

from __future__ import annotations

import numpy as np

from camclassd.sources.base import Capture
from camclassd.sources.pacing import Pacer

PATTERNS = 2  # enough to not be a constant image; each 1080p frame is 6 MiB


def make_pattern(width: int, height: int, index: int) -> np.ndarray:
    """A deterministic RGB gradient with a moving square: cheap, but not constant."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (x[None, :] + 40 * index) % 256
    frame[..., 1] = y[:, None]
    frame[..., 2] = ((x[None, :] + y[:, None]) / 2 + 60 * index) % 256
    side = max(1, min(width, height) // 4)
    left = (index * width // PATTERNS) % max(1, width - side)
    top = (height - side) // 2
    frame[top : top + side, left : left + side] = 255
    return frame


class SyntheticSource:
    """Cycles through a few pre-made frames, paced at `fps` or as fast as read.

    Live: like a camera it does not wait for a slow consumer; frames are shared, read-only.
    """

    live = True

    def __init__(self, name: str, width: int, height: int, *, fps: float | None = None) -> None:
        self.name = name
        self.width = width
        self.height = height
        self._fps = fps
        self._pacer = Pacer(fps)
        self._frames: list[Capture] = []
        self._index = 0

    def open(self) -> None:
        if not self._frames:
            for index in range(PATTERNS):
                frame = make_pattern(self.width, self.height, index)
                frame.flags.writeable = False  # shared between reads: nobody may scribble on it
                self._frames.append(Capture(frame))
        self._pacer = Pacer(self._fps)

    def read(self) -> Capture | None:
        self._pacer.wait()
        frame = self._frames[self._index % len(self._frames)]
        self._index += 1
        return frame

    def close(self) -> None:
        """Nothing to release; the frames are kept for a reopen."""
