"""Datasets for the training tests, made from scikit-image's bundled photos.

Every image is a different camera-like view of a real photo: another framing (crop and
shift), exposure (brightness, contrast) and sensor noise, saved as JPEG like a camera does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np


def _rgb(name: str) -> np.ndarray:
    import skimage.data  # noqa: PLC0415 (a dev dependency the tflite-runtime venv lacks)

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


# class -> scikit-image photos it is made from
OBJECT_CLASSES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "cat": ("chelsea", "cat"),
        "coffee": ("coffee",),
        "rocket": ("rocket",),
        "motorcycle": ("stereo_motorcycle",),
        "astronaut": ("astronaut",),
    }
)


def camera_view(
    photo: np.ndarray, rng: np.random.Generator, *, keep: tuple[float, float] = (0.6, 0.95)
) -> np.ndarray:
    """A framing of `photo` (a crop of 60-95% of its side, anywhere), exposure and noise."""
    height, width = photo.shape[:2]
    side = rng.uniform(*keep)
    w, h = int(width * side), int(height * side)
    x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    view = photo[y : y + h, x : x + w].astype(np.float32)
    view = (view - 128.0) * rng.uniform(0.75, 1.25) + 128.0 + rng.uniform(-30, 30)
    view += rng.normal(0.0, rng.uniform(1.0, 6.0), size=view.shape)
    return np.clip(view, 0, 255).astype(np.uint8)


def paste(scene: np.ndarray, thing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`thing` placed near the middle of `scene` (a few percent of jitter)."""
    out = scene.copy()
    height, width = scene.shape[:2]
    th, tw = thing.shape[:2]
    cx = width // 2 + int(rng.integers(-width // 10, width // 10 + 1))
    cy = height // 2 + int(rng.integers(-height // 10, height // 10 + 1))
    x, y = cx - tw // 2, cy - th // 2
    out[y : y + th, x : x + tw] = thing
    return out


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok
    path.write_bytes(data.tobytes())


def object_dataset(root: Path, per_class: int, seed: int = 1, classes: int = 5) -> Path:
    """`classes` object classes, `per_class` views each."""
    rng = np.random.default_rng(seed)
    for label, photos in list(OBJECT_CLASSES.items())[:classes]:
        sources = [_rgb(name) for name in photos]
        for index in range(per_class):
            photo = sources[index % len(sources)]
            write_jpeg(root / label / f"{label}-{index:03d}.jpg", camera_view(photo, rng))
    return root


def state_dataset(root: Path, per_class: int, seed: int = 2, *, side: int = 110) -> Path:
    """A fixed camera on a real scene (the coffee table, 600x400) with a cat's head (`side`
    pixels square) present or not."""
    rng = np.random.default_rng(seed)
    scene = _rgb("coffee")
    cat = cv2.resize(_rgb("chelsea")[30:230, 130:330], (side, side), interpolation=cv2.INTER_AREA)
    makers: Mapping[str, Callable[[], np.ndarray]] = {
        "cat": lambda: paste(scene, cat, rng),
        "none": lambda: scene,
    }
    for label, make in makers.items():
        for index in range(per_class):
            view = camera_view(make(), rng, keep=(0.85, 0.97))
            write_jpeg(root / label / f"{label}-{index:03d}.jpg", view)
    return root
