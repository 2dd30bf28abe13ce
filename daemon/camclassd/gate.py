"""The scene-change gate: classify a frame only when the camera's view changed.

Per frame, on the capture thread (well under a millisecond, docs/gate.md):

1. A small grey view of the crop/ROI, about `view_pixels` pixels: the source's luma plane
   (picamera2's lores Y) cut to the crop where there is one, so no colour conversion is paid,
   else the model-size RGB pixels converted to grey. It is averaged down by a whole factor
   (strided sampling first when the factor is large), which also averages the sensor noise
   away; then a small Gaussian blur for what is left.
2. The difference against the reference: the view of the frame classified last, i.e. what
   the classifier last saw. A pixel changed when it differs by more than `threshold` grey
   levels (int16 arithmetic: uint8 - uint8 would wrap). A running average (Frigate's way)
   absorbs a slow change before it is big enough to count; a reference that is only
   replaced by a classification lets every change count until it is classified.
3. The gate opens when at least `min_area` of the view changed. When `recalibrate` of it
   changed at once (lights, IR mode, an exposure step), the change is global: classify once,
   then wait until the view is still again (`settle_frames` frames in a row without change
   against the first of them) and classify once more if the settled view still differs from
   the reference.

The policy around it: classify when the gate opens; at least every `refresh_s`; every frame
while a new label is pending (so `stable_frames` and hysteresis see consecutive frames).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

import cv2
import numpy as np

from camclassd.cameras import is_live
from camclassd.config import CameraBase
from camclassd.gate_config import GateConfig, resolve_mode
from camclassd.stage import PassThrough, Stage, StageInput

# Strided sampling keeps the area averaging at most this factor per axis: INTER_AREA over a
# whole 1080x1080 crop costs ~0.35 ms, sampling every 4th pixel first ~0.1 ms.
MAX_AREA_FACTOR = 4

Reason = Literal["first", "change", "global", "settled", "pending", "refresh"]


def grey_region(item: StageInput) -> np.ndarray:
    """The crop/ROI in grey: the luma plane cut to `crop`, else the model-size pixels."""
    if item.luma is not None:
        if item.crop is None:
            return item.luma
        x, y, width, height = item.crop
        return item.luma[y : y + height, x : x + width]
    return cv2.cvtColor(item.pixels, cv2.COLOR_RGB2GRAY)


def downscale(region: np.ndarray, view_pixels: int) -> np.ndarray:
    """`region` averaged down by a whole factor to about `view_pixels` pixels (uint8)."""
    height, width = region.shape[:2]
    factor = max(1, int(math.sqrt(height * width / view_pixels)))
    if factor == 1:
        return np.ascontiguousarray(region)
    stride = max(1, factor // MAX_AREA_FACTOR)
    area = factor // stride
    out_h, out_w = max(1, height // (stride * area)), max(1, width // (stride * area))
    sampled = region[: out_h * stride * area : stride, : out_w * stride * area : stride]
    # A whole factor takes OpenCV's fast INTER_AREA path (a fractional one is 5-10x slower).
    return cv2.resize(sampled, (out_w, out_h), interpolation=cv2.INTER_AREA)


def changed_fraction(view: np.ndarray, reference: np.ndarray, threshold: int) -> float:
    """The fraction of pixels whose grey level differs by more than `threshold`."""
    difference = np.abs(view - reference)  # both int16: no wrap-around
    return int(np.count_nonzero(difference > threshold)) / int(difference.size)


class SceneGate:
    """A `Stage` that admits a frame when the scene changed (see the module docstring)."""

    name = "motion"

    def __init__(self, settings: GateConfig) -> None:
        self.settings = settings
        self._kernel = (settings.blur, settings.blur) if settings.blur > 1 else None
        self._reference: np.ndarray | None = None  # int16 view of the last classified frame
        # While settling: the view the current run of still frames is compared with.
        self._anchor: np.ndarray | None = None
        self._last_admit = -math.inf
        self._settling = False
        self._quiet = 0
        self._changing = False
        self._fraction = 0.0
        self.last_reason: Reason | None = None  # why the last frame was admitted, or None

    def view(self, item: StageInput) -> np.ndarray:
        """The small, blurred grey view the gate compares (int16)."""
        small = downscale(grey_region(item), self.settings.view_pixels)
        if self._kernel is not None:
            small = cv2.GaussianBlur(small, self._kernel, 0)
        return small.astype(np.int16)

    def admit(self, item: StageInput) -> bool:
        view = self.view(item)
        reason = self._decide(view, item)
        self.last_reason = reason
        if reason is None:
            return False
        self._reference = view
        self._last_admit = item.t
        return True

    def _decide(self, view: np.ndarray, item: StageInput) -> Reason | None:
        settings = self.settings
        reference = self._reference
        if reference is None or reference.shape != view.shape:
            self._changing, self._settling, self._anchor = True, False, None  # first, or a new crop
            return "first"
        fraction = self._fraction = changed_fraction(view, reference, settings.threshold)
        self._changing = fraction >= settings.min_area
        reason: Reason | None = None
        if self._settling:
            # Against the start of the still run, not the frame before: an exposure ramp moves
            # each frame by less than the threshold but the run as a whole by more.
            anchor = view if self._anchor is None else self._anchor
            moved = changed_fraction(view, anchor, settings.threshold) >= settings.min_area
            if moved:
                self._anchor, self._quiet = view, 0
            else:
                self._quiet += 1
            if self._quiet >= settings.settle_frames:
                self._settling = False
                if self._changing:
                    reason = "settled"
        elif fraction >= settings.recalibrate:
            self._settling, self._quiet, self._anchor = True, 0, view
            reason = "global"
        elif self._changing:
            reason = "change"
        if reason is None and item.label_pending:
            reason = "pending"
        if reason is None and item.t - self._last_admit >= settings.refresh_s:
            reason = "refresh"
        return reason

    def gauges(self) -> Mapping[str, float]:
        return MappingProxyType(
            {
                "scene_changing": 1.0 if self._changing else 0.0,
                "changed_fraction": round(self._fraction, 4),
            }
        )


def stage_for(camera: CameraBase) -> Stage:
    """The stage of one camera table: what the pipeline calls, per camera, at start.

    Liveness is the camera type's (`cameras.is_live`), as check-config shows it: a synthetic
    source is "live" to the pipeline's drop policy but is a benchmark source, so 'auto' is off
    there.
    """
    return make_stage(camera.gate, is_live(camera))


def make_stage(settings: GateConfig, live: bool) -> Stage:
    """The stage a camera's gate settings ask for: a SceneGate, or PassThrough ('always')."""
    if resolve_mode(settings, live) == "always":
        return PassThrough()
    return SceneGate(settings)
