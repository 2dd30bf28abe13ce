"""A directory or glob of still images played as a camera, for demos and tests."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import cv2

from camclassd.errors import SourceError
from camclassd.sources.base import Capture
from camclassd.sources.pacing import Pacer

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def find_images(pattern: str | Path) -> list[Path]:
    """Image files of a directory (by suffix) or of a glob pattern, sorted by path."""
    path = Path(pattern)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        found = [Path(p) for p in glob.glob(str(path))]
    return sorted(p for p in found if p.is_file())


class ImagesSource:
    """Emits the images in path order, looping or ending after the last.

    Not live: the pipeline waits for inference rather than dropping, so every image is
    classified. An image that does not decode is logged and skipped.
    """

    live = False

    def __init__(
        self, name: str, path: str | Path, *, fps: float | None = None, loop: bool = True
    ) -> None:
        self.name = name
        self._pattern = path
        self._loop = loop
        self._fps = fps
        self._pacer = Pacer(fps)
        self._files: list[Path] = []
        self._position = 0

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    def open(self) -> None:
        self._files = find_images(self._pattern)
        if not self._files:
            raise SourceError(f"camera {self.name}: no images found at {self._pattern}")
        self._position = 0
        self._pacer = Pacer(self._fps)

    def read(self) -> Capture | None:
        # One full pass without a readable image ends the stream instead of spinning.
        for _ in range(len(self._files)):
            if self._position >= len(self._files):
                if not self._loop:
                    return None
                self._position = 0
            path = self._files[self._position]
            self._position += 1
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("camera %s: skipping %s: not a readable image", self.name, path)
                continue
            self._pacer.wait()
            return Capture(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if self._position >= len(self._files) and not self._loop:
            return None
        raise SourceError(f"camera {self.name}: none of the images at {self._pattern} is readable")

    def close(self) -> None:
        self._files = []
