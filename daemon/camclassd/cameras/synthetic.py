"""`type = "synthetic"`: generated frames, no hardware (camclassd.sources.synthetic)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from camclassd.cameras.base import CameraBase, CameraType
from camclassd.schema import optional_fps
from camclassd.sources.base import Source


class SyntheticCamera(CameraBase):
    """Generated frames, no hardware needed (benchmarks, smoke tests)."""

    type: Literal["synthetic"] = "synthetic"
    width: int = Field(default=640, gt=0, le=8192, description="Frame width in pixels.")
    height: int = Field(default=480, gt=0, le=8192, description="Frame height in pixels.")
    fps: float | None = optional_fps("Frames per second to emit; unset: as fast as possible.", 10.0)


def _open(name: str, camera: SyntheticCamera) -> Source:
    from camclassd.sources.synthetic import SyntheticSource  # noqa: PLC0415 - see CameraType

    return SyntheticSource(name, camera.width, camera.height, fps=camera.fps)


def _summary(camera: SyntheticCamera) -> str:
    return f"{camera.width}x{camera.height}"


def _from_argument(argument: str) -> SyntheticCamera:
    """`synthetic` (640x480) or `synthetic:WxH`."""
    width, _, height = (argument or "640x480").lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise ValueError("use synthetic:WxH, e.g. synthetic:640x480")
    return SyntheticCamera(width=int(width), height=int(height))


CAMERA = CameraType(
    SyntheticCamera,
    _open,
    _summary,
    example_name="test",
    from_argument=_from_argument,
    # Not live: it is "live" to the pipeline's drop policy, but a benchmark source, so the
    # gate's "auto" stays off.
    capture_cores=lambda _camera: 0.0,  # frames made in advance
)
