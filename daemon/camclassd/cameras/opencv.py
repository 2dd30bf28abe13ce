"""`type = "opencv"`: a USB camera, a video file or a network stream (camclassd.sources.opencv)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from camclassd.cameras.base import Absolute, CameraBase, CameraType
from camclassd.redact import mask_uri
from camclassd.schema import optional_fps, stall_timeout
from camclassd.sources.base import Source
from camclassd.sources.uri import classify_uri

# What `bench --source FILE` plays as a video rather than as a still image.
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mjpeg", ".h264"})


class OpenCVCamera(CameraBase):
    """A USB camera, a video file or an RTSP/HTTP stream, read through OpenCV."""

    type: Literal["opencv"] = "opencv"
    uri: str = Field(
        min_length=1,
        description="Device index ('0'), device path ('/dev/video0'), video file path, or "
        "rtsp:// / http(s):// URL.",
        examples=["/dev/video0"],
    )
    width: int | None = Field(
        default=None, gt=0, description="Capture width to ask a USB camera for.", examples=[640]
    )
    height: int | None = Field(
        default=None, gt=0, description="Capture height to ask a USB camera for.", examples=[480]
    )
    fps: float | None = optional_fps(
        "Frame rate: asked of a camera; for a file, the playback rate "
        "(unset: as fast as it can be classified).",
        10.0,
    )
    loop: bool = Field(default=True, description="For video files: start again at the end.")
    rtsp_transport: Literal["tcp", "udp"] = Field(
        default="tcp", description="RTSP transport; TCP survives lossy Wi-Fi better."
    )
    read_timeout_s: float = stall_timeout(
        "A read that takes longer counts as a stall: the stream is reopened."
    )


def _open(name: str, camera: OpenCVCamera) -> Source:
    from camclassd.sources.opencv import OpenCVSource  # noqa: PLC0415 - see CameraType

    return OpenCVSource(
        name,
        camera.uri,
        width=camera.width,
        height=camera.height,
        fps=camera.fps,
        loop=camera.loop,
        rtsp_transport=camera.rtsp_transport,
        read_timeout_s=camera.read_timeout_s,
    )


def _summary(camera: OpenCVCamera) -> str:
    return mask_uri(camera.uri)  # an RTSP URL may carry a password: never print it


def _absolute(camera: OpenCVCamera, absolute: Absolute) -> OpenCVCamera:
    if classify_uri(camera.uri) != "file":
        return camera
    return camera.model_copy(update={"uri": str(absolute(Path(camera.uri)))})


def _from_argument(argument: str) -> OpenCVCamera:
    uri = str(Path(argument).resolve()) if classify_uri(argument) == "file" else argument
    return OpenCVCamera(uri=uri, loop=True)


def _claims(text: str) -> bool:
    return classify_uri(text) != "file" or Path(text).suffix.lower() in VIDEO_SUFFIXES


CAMERA = CameraType(
    OpenCVCamera,
    _open,
    _summary,
    example_name="usb",
    absolute=_absolute,
    from_argument=_from_argument,
    claims=_claims,
    live=lambda camera: classify_uri(camera.uri) != "file",  # a device or a stream
    capture_cores=lambda _camera: 1.0,  # file, RTSP, HTTP or USB: a decoder runs per frame
)
