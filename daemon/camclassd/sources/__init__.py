"""Frame sources: one small class per kind of camera behind the `Source` interface."""

from __future__ import annotations

from pathlib import Path

from camclassd.config import (
    CameraConfig,
    ImagesCamera,
    OpenCVCamera,
    Picamera2Camera,
    SyntheticCamera,
)
from camclassd.sources.base import Backoff, Source, reopen
from camclassd.sources.images import ImagesSource
from camclassd.sources.opencv import OpenCVSource, classify_uri
from camclassd.sources.picamera2 import Picamera2Source
from camclassd.sources.synthetic import SyntheticSource

__all__ = [
    "Backoff",
    "ImagesSource",
    "OpenCVSource",
    "Picamera2Source",
    "Source",
    "SyntheticSource",
    "open_source",
    "reopen",
]


def open_source(name: str, camera: CameraConfig, config_dir: Path) -> Source:
    """The source a camera table describes (not opened yet); relative paths are taken
    relative to the config file's directory, so a config works from any working directory."""
    if isinstance(camera, Picamera2Camera):
        return Picamera2Source(
            name,
            camera_num=camera.camera_num,
            resolution=camera.resolution,
            lores=camera.lores,
            fps=camera.fps,
            scaler_crop=camera.scaler_crop,
            capture_timeout_s=camera.capture_timeout_s,
        )
    if isinstance(camera, OpenCVCamera):
        uri = camera.uri
        if classify_uri(uri) == "file":
            uri = str(_resolve(uri, config_dir))
        return OpenCVSource(
            name,
            uri,
            width=camera.width,
            height=camera.height,
            fps=camera.fps,
            loop=camera.loop,
            rtsp_transport=camera.rtsp_transport,
            read_timeout_s=camera.read_timeout_s,
        )
    if isinstance(camera, ImagesCamera):
        return ImagesSource(
            name, _resolve(camera.path, config_dir), fps=camera.fps, loop=camera.loop
        )
    if isinstance(camera, SyntheticCamera):
        return SyntheticSource(name, camera.width, camera.height, fps=camera.fps)
    raise TypeError(f"unknown camera type {type(camera).__name__}")


def _resolve(path: str, config_dir: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else config_dir / candidate
