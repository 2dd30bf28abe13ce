"""Crop geometry and resize: a raw RGB frame in, the model's square input out.

Geometry functions are pure and work in pixel boxes (x1, y1, x2, y2), half-open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np

from camclassd.constants import Crop, Interpolation

Box = tuple[int, int, int, int]

INTERPOLATIONS: Mapping[Interpolation, int] = MappingProxyType(
    {
        "nearest": cv2.INTER_NEAREST,
        "linear": cv2.INTER_LINEAR,
        "area": cv2.INTER_AREA,
        "cubic": cv2.INTER_CUBIC,
    }
)


def center_square(width: int, height: int) -> Box:
    """The largest centred square: the crop EfficientNet/MobileNet saw in training."""
    side = min(width, height)
    x1 = (width - side) // 2
    y1 = (height - side) // 2
    return (x1, y1, x1 + side, y1 + side)


def roi_box(width: int, height: int, roi: tuple[float, float, float, float]) -> Box:
    """A normalised [x1, y1, x2, y2] region in pixels, at least one pixel each way."""
    x1 = min(max(round(roi[0] * width), 0), width - 1)
    y1 = min(max(round(roi[1] * height), 0), height - 1)
    x2 = max(min(round(roi[2] * width), width), x1 + 1)
    y2 = max(min(round(roi[3] * height), height), y1 + 1)
    return (x1, y1, x2, y2)


def letterbox_geometry(width: int, height: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Scaled size and top-left offset (w, h, x, y) that fit a frame inside `size`."""
    target_w, target_h = size
    scale = min(target_w / width, target_h / height)
    scaled_w = max(1, round(width * scale))
    scaled_h = max(1, round(height * scale))
    return (scaled_w, scaled_h, (target_w - scaled_w) // 2, (target_h - scaled_h) // 2)


@dataclass(frozen=True, slots=True)
class Preprocessor:
    """Crops and resizes raw RGB uint8 frames to the model input size (still RGB uint8).

    The model's dtype conversion is the engine's job (`Engine.to_input`), done per batch on
    the inference worker; a stage between capture and the queue sees the plain pixels.
    """

    size: tuple[int, int]  # model input (width, height)
    crop: Crop = "center"
    roi: tuple[float, float, float, float] | None = None
    interpolation: Interpolation = "linear"
    pad_value: int = 0

    def crop_box(self, width: int, height: int) -> Box:
        if self.crop == "center":
            return center_square(width, height)
        if self.crop == "roi" and self.roi is not None:
            return roi_box(width, height, self.roi)
        return (0, 0, width, height)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        x1, y1, x2, y2 = self.crop_box(width, height)
        region = frame[y1:y2, x1:x2]  # a view: no copy before the resize
        flag = INTERPOLATIONS[self.interpolation]
        if self.crop == "letterbox":
            resized = self._letterbox(region, flag)
        elif region.shape[1] == self.size[0] and region.shape[0] == self.size[1]:
            resized = np.ascontiguousarray(region)
        else:
            resized = cv2.resize(region, self.size, interpolation=flag)
        return resized

    def _letterbox(self, region: np.ndarray, flag: int) -> np.ndarray:
        height, width = region.shape[:2]
        scaled_w, scaled_h, x, y = letterbox_geometry(width, height, self.size)
        canvas = np.full((self.size[1], self.size[0], 3), self.pad_value, dtype=np.uint8)
        canvas[y : y + scaled_h, x : x + scaled_w] = cv2.resize(
            region, (scaled_w, scaled_h), interpolation=flag
        )
        return canvas
