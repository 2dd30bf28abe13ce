"""`type = "picamera2"`: a Raspberry Pi camera through libcamera (camclassd.sources.picamera2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from camclassd.cameras.base import CameraBase, CameraType
from camclassd.schema import stall_timeout
from camclassd.sources.base import Source


class Picamera2Camera(CameraBase):
    """A Raspberry Pi camera (libcamera through picamera2); inference reads the lores stream."""

    type: Literal["picamera2"] = "picamera2"
    camera_num: int = Field(default=0, ge=0, description="Which Pi camera (0 for the first).")
    resolution: tuple[int, int] = Field(
        default=(1280, 720), description="Main stream size [width, height], kept for snapshots."
    )
    lores: tuple[int, int] = Field(
        default=(320, 240),
        description="Low-resolution YUV420 stream [width, height] that inference reads; the "
        "ISP may round the width up.",
    )
    fps: float = Field(default=10.0, gt=0, le=120, description="Frame rate asked of the sensor.")
    scaler_crop: tuple[int, int, int, int] | None = Field(
        default=None,
        description="Hardware crop [x, y, width, height] in sensor pixels (ScalerCrop).",
        examples=[(0, 0, 2304, 1296)],
    )
    capture_timeout_s: float = stall_timeout(
        "A capture that takes longer counts as a stall: the camera is reopened."
    )


def _open(name: str, camera: Picamera2Camera) -> Source:
    from camclassd.sources.picamera2 import Picamera2Source  # noqa: PLC0415 - see CameraType

    return Picamera2Source(
        name,
        camera_num=camera.camera_num,
        resolution=camera.resolution,
        lores=camera.lores,
        fps=camera.fps,
        scaler_crop=camera.scaler_crop,
        capture_timeout_s=camera.capture_timeout_s,
    )


def _summary(camera: Picamera2Camera) -> str:
    width, height = camera.lores
    return f"camera {camera.camera_num}, lores {width}x{height} at {camera.fps:g} fps"


def _from_argument(argument: str) -> Picamera2Camera:
    """`picamera2` or `picamera2:N` (camera number N)."""
    if argument and not argument.isdigit():
        raise ValueError("use picamera2 or picamera2:N (N: the camera number)")
    return Picamera2Camera(camera_num=int(argument or 0))


CAMERA = CameraType(
    Picamera2Camera,
    _open,
    _summary,
    example_name="main",
    from_argument=_from_argument,
    live=lambda _camera: True,
    capture_cores=lambda _camera: 0.1,  # the ISP makes the lores frame; a copy is all we pay
)
