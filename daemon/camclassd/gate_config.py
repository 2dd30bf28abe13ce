"""`[cameras.NAME.gate]`: the settings of the scene-change gate (see docs/gate.md).

A small module of its own: the camera tables import it, and so does the gate, without either
pulling in the other's dependencies (check-config loads no OpenCV).

The defaults come from measurements on real photos with sensor-like noise (docs/gate.md
gives the figures): averaged down to a 4096-pixel view, sensor noise moved no view pixel by
more than 5 grey levels (2 after the 3x3 blur), so a threshold of 15 has a 3x margin; a 45%
lighting step changed more than 80% of the view at that threshold, a real object covering
most of the crop about 70%.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

GateMode = Literal["auto", "motion", "always"]


class GateConfig(BaseModel):
    """The scene-change gate: classify when the view changes, and at least every refresh_s."""

    # As config.Section (not imported: config imports this module).
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )

    mode: GateMode = Field(
        default="auto",
        description="'motion': classify a frame only when the scene changed (and every "
        "refresh_s, and every frame while a new label is pending); 'always': classify every "
        "frame; 'auto': 'motion' for live cameras (picamera2, USB, RTSP/HTTP), 'always' for "
        "video files, images and synthetic sources.",
    )
    threshold: int = Field(
        default=15,
        ge=1,
        le=254,
        description="A view pixel counts as changed when its grey level differs from the "
        "last classified view by more than this (0-255 scale).",
    )
    min_area: float = Field(
        default=0.01,
        gt=0,
        le=1,
        description="The gate opens when at least this fraction of the view changed "
        "(0.01 = 1% of the crop/ROI).",
    )
    recalibrate: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="A change of at least this fraction of the view at once (lights, IR mode, "
        "an exposure step) is global: one classification, then none until the view is still "
        "again for settle_frames frames, then one more if the settled view differs.",
    )
    settle_frames: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Still frames in a row that end a global change.",
    )
    refresh_s: float = Field(
        default=10.0,
        gt=0,
        le=86_400,
        description="Classify at least this often even when nothing moved (slow changes, "
        "missed motion).",
    )
    blur: int = Field(
        default=3,
        ge=0,
        le=15,
        description="Gaussian blur kernel (odd pixels) on the small view against sensor "
        "noise; 0 or 1 turns it off.",
    )
    view_pixels: int = Field(
        default=4096,
        ge=256,
        le=65_536,
        description="Pixels of the grey view of the crop/ROI the gate compares (about "
        "64x64 for 4096); the source's luma plane is averaged down to it.",
    )

    @model_validator(mode="after")
    def _check(self) -> GateConfig:
        if self.blur > 1 and self.blur % 2 == 0:
            raise _field_error("blur", f"blur = {self.blur} must be odd (or 0 for none)")
        if self.recalibrate <= self.min_area:
            raise _field_error(
                "recalibrate",
                f"recalibrate ({self.recalibrate}) must be > min_area ({self.min_area})",
            )
        return self


def _field_error(field: str, message: str) -> PydanticCustomError:
    # The shape of config.cross_field_error, which the loader turns into "key (line N)".
    return PydanticCustomError("cross_field", message, {"field": (field,)})


def resolve_mode(gate: GateConfig, live: bool) -> Literal["motion", "always"]:
    """The mode in force: 'auto' is 'motion' for a live camera, 'always' otherwise."""
    if gate.mode == "auto":
        return "motion" if live else "always"
    return gate.mode
