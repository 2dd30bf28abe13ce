"""Camera-like variation of one photo: crop jitter, brightness/contrast, noise, optional flip.

The first view of every image is the exact view the daemon makes; the others vary it the
way a fixed camera varies (a slightly moved framing, light, sensor noise). Randomness comes
from a generator seeded per image, so the same dataset and seed give the same views.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from camclassd.preprocess import Preprocessor


@dataclass(frozen=True, slots=True)
class Augment:
    shift: float = 0.06  # crop moved by up to this fraction of its side
    zoom: float = 0.12  # crop shrunk by up to this fraction of its side
    brightness: float = 0.2  # added, as a fraction of full scale
    contrast: float = 0.2  # gain 1 +- this
    noise: float = 5.0  # Gaussian sigma in pixel levels
    flip: bool = False  # mirror half the views (only where left/right does not matter)


def image_rng(seed: int, key: str) -> np.random.Generator:
    """A generator for one image: seed and the image's path inside the dataset."""
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def _jittered(
    box: tuple[int, int, int, int],
    frame_w: int,
    frame_h: int,
    rng: np.random.Generator,
    augment: Augment,
) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    keep = 1.0 - rng.uniform(0.0, augment.zoom)
    new_w, new_h = max(1, round(width * keep)), max(1, round(height * keep))
    cx = x1 + width / 2 + rng.uniform(-augment.shift, augment.shift) * width
    cy = y1 + height / 2 + rng.uniform(-augment.shift, augment.shift) * height
    left = int(min(max(round(cx - new_w / 2), 0), frame_w - new_w))
    top = int(min(max(round(cy - new_h / 2), 0), frame_h - new_h))
    return (left, top, left + min(new_w, frame_w), top + min(new_h, frame_h))


def photometric(pixels: np.ndarray, rng: np.random.Generator, augment: Augment) -> np.ndarray:
    """Brightness, contrast and noise on uint8 RGB pixels (a new array)."""
    gain = 1.0 + rng.uniform(-augment.contrast, augment.contrast)
    offset = rng.uniform(-augment.brightness, augment.brightness) * 255.0
    values = pixels.astype(np.float32)
    mean = float(values.mean())
    values = (values - mean) * gain + mean + offset
    if augment.noise > 0:
        values += rng.normal(0.0, augment.noise, size=values.shape).astype(np.float32)
    np.clip(values, 0, 255, out=values)
    result: np.ndarray = np.rint(values).astype(np.uint8)
    return result


def views(
    frame: np.ndarray,
    preprocess: Preprocessor,
    count: int,
    rng: np.random.Generator,
    augment: Augment,
) -> Iterator[np.ndarray]:
    """`count` model-size uint8 views of `frame`: the daemon's own view first."""
    yield preprocess(frame)
    height, width = frame.shape[:2]
    box = preprocess.crop_box(width, height)
    # The jittered box is cut out here, then fitted like the daemon fits its crop.
    fit = replace(
        preprocess, crop="letterbox" if preprocess.crop == "letterbox" else "squash", roi=None
    )
    for _ in range(count - 1):
        x1, y1, x2, y2 = _jittered(box, width, height, rng, augment)
        pixels = photometric(fit(frame[y1:y2, x1:x2]), rng, augment)
        if augment.flip and rng.random() < 0.5:
            pixels = np.ascontiguousarray(pixels[:, ::-1])
        yield pixels
