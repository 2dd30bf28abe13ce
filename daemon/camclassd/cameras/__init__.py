"""The camera types: which `type` a [cameras.NAME] table may have, and what each one means.

Each module here declares one type as `CAMERA` (a `CameraType`: its pydantic model, how to
open its Source, how check-config shows it, its file paths, its `bench --source` syntax),
and `TYPES` below lists them in the order the default config documents them. The config's
camera union, check-config's summary, the generated default config and `bench --source` all
come from `TYPES`. The Source classes themselves live in `camclassd.sources`, which imports
no pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, ValidationError

from camclassd.cameras import images, opencv, picamera2, synthetic
from camclassd.cameras.base import Absolute, CameraBase, CameraType
from camclassd.errors import UsageError
from camclassd.sources.base import Source

__all__ = [
    "BY_NAME",
    "TYPES",
    "CameraBase",
    "CameraConfig",
    "CameraType",
    "absolute_paths",
    "camera_type",
    "capture_cores",
    "from_cli",
    "is_live",
    "open_source",
    "summary",
]

TYPES: tuple[CameraType[Any], ...] = (
    picamera2.CAMERA,
    opencv.CAMERA,
    images.CAMERA,
    synthetic.CAMERA,
)
BY_NAME: Mapping[str, CameraType[Any]] = MappingProxyType({kind.name: kind for kind in TYPES})

if TYPE_CHECKING:
    CameraConfig = CameraBase
else:
    # One model per `type`, told apart by that key: pydantic then reports the errors of the
    # type the table names instead of those of every type.
    CameraConfig = Annotated[
        Union[tuple(kind.model for kind in TYPES)],  # noqa: UP007 - built from the list
        Field(discriminator="type"),
    ]


def camera_type(camera: CameraBase) -> CameraType[Any]:
    return BY_NAME[camera.type]


def is_live(camera: CameraBase) -> bool:
    """Whether the camera produces frames in real time (see `CameraType.live`)."""
    return bool(camera_type(camera).live(camera))


def capture_cores(camera: CameraBase) -> float:
    """Cores the camera's capture takes (see `CameraType.capture_cores`)."""
    return float(camera_type(camera).capture_cores(camera))


def open_source(name: str, camera: CameraBase) -> Source:
    """The source a camera table describes, not opened yet. Paths in `camera` must already
    be absolute (the loader resolves them: `configfile.load_config`)."""
    return camera_type(camera).open(name, camera)


def summary(camera: CameraBase) -> str:
    """Where a camera's frames come from, in check-config's words; never a secret."""
    return camera_type(camera).summary(camera)


def absolute_paths(camera: CameraBase, absolute: Absolute) -> CameraBase:
    result: CameraBase = camera_type(camera).absolute(camera, absolute)
    return result


def from_cli(text: str) -> CameraBase:
    """A camera from `bench --source`: `TYPE:ARGUMENT` (or a bare TYPE) for the types that
    take one, else the first type that claims the text (a video file or stream URL: opencv;
    any other path or glob: images)."""
    head, _, argument = text.partition(":")
    named = BY_NAME.get(head)
    kinds = [named] if named is not None else [kind for kind in TYPES if kind.claims(text)]
    if named is None:
        argument = text
    for kind in kinds:
        if kind.from_argument is None:
            continue
        try:
            camera: CameraBase = kind.from_argument(argument)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            raise UsageError(f"bad --source {text!r}: {problems}") from None
        except ValueError as error:
            raise UsageError(f"bad --source {text!r}: {error}") from None
        return camera
    names = ", ".join(kind.name for kind in TYPES if kind.from_argument is not None)
    raise UsageError(f"bad --source {text!r}: give a file, a directory, or one of {names}")
