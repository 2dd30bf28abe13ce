"""`type = "images"`: still images replayed as a camera (camclassd.sources.images)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from camclassd.cameras.base import Absolute, CameraBase, CameraType
from camclassd.schema import RELATIVE_PATHS, optional_fps
from camclassd.sources.base import Source


class ImagesCamera(CameraBase):
    """Still images from a directory or glob, replayed as a camera (tests, demos)."""

    type: Literal["images"] = "images"
    path: str = Field(
        min_length=1,
        description=f"A directory of images or a glob such as 'photos/*.jpg'. {RELATIVE_PATHS}",
        examples=["photos/*.jpg"],
    )
    fps: float | None = optional_fps(
        "Frames per second to emit; unset: as fast as classified.", 2.0
    )
    loop: bool = Field(default=True, description="Start again after the last image.")


def _open(name: str, camera: ImagesCamera) -> Source:
    from camclassd.sources.images import ImagesSource  # noqa: PLC0415 - see CameraType

    return ImagesSource(name, camera.path, fps=camera.fps, loop=camera.loop)


def _summary(camera: ImagesCamera) -> str:
    return camera.path


def _absolute(camera: ImagesCamera, absolute: Absolute) -> ImagesCamera:
    return camera.model_copy(update={"path": str(absolute(Path(camera.path)))})


def _from_argument(argument: str) -> ImagesCamera:
    return ImagesCamera(path=str(Path(argument).resolve()), loop=True)


def _claims(_text: str) -> bool:
    return True  # any other file, directory or glob: listed after opencv, which takes videos


CAMERA = CameraType(
    ImagesCamera,
    _open,
    _summary,
    example_name="photos",
    absolute=_absolute,
    from_argument=_from_argument,
    claims=_claims,
    capture_cores=lambda _camera: 0.2,  # a JPEG decoded per frame, at the image rate
)
