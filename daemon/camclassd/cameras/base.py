"""What every camera type shares: the common [cameras.NAME] keys (`CameraBase`) and the
declaration a camera type module makes of itself (`CameraType`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import Field, model_validator

from camclassd.constants import Crop, Interpolation
from camclassd.gate_config import GateConfig
from camclassd.schema import RELATIVE_PATHS, Section, cross_field_error

if TYPE_CHECKING:
    from camclassd.sources.base import Source


class CameraBase(Section):
    if TYPE_CHECKING:
        type: str  # each camera type declares its own Literal tag, the union's discriminator

    enabled: bool = Field(
        default=True, description="Set false to keep a camera in the file but not run it."
    )
    crop: Crop = Field(
        default="center",
        description="How the frame is fitted to the square model input: 'center' (centre "
        "square, the crop the model saw in training), 'roi' (the region in `roi`), 'squash' "
        "(whole frame, aspect ratio not kept) or 'letterbox' (whole frame, padded).",
    )
    roi: tuple[float, float, float, float] | None = Field(
        default=None,
        description="Region of interest as normalised [x1, y1, x2, y2] in 0..1 of the frame; "
        "used when crop = 'roi'.",
        examples=[(0.25, 0.2, 0.75, 0.9)],
    )
    interpolation: Interpolation = Field(
        default="linear",
        description="Resize interpolation. 'linear' costs ~0.15 ms a frame; 'area' is "
        "smoother on big downscales but costs 1-5 ms.",
    )

    model: Path | None = Field(
        default=None,
        description="A model of this camera's own (a state model belongs to one view), e.g. "
        "one `camclassd train` made; unset: [model] path. Cameras on the same model share "
        "its workers. " + RELATIVE_PATHS,
        examples=["/var/lib/camclassd/models/door/v1/door.tflite"],
    )
    labels: Path | None = Field(
        default=None,
        description="That model's labels; unset: MODEL.txt beside it. " + RELATIVE_PATHS,
    )
    gate: GateConfig = Field(
        default_factory=GateConfig,
        description="The scene-change gate: classify when the view changes (docs/gate.md).",
    )

    @model_validator(mode="after")
    def _check_roi(self) -> CameraBase:
        if self.crop == "roi" and self.roi is None:
            raise cross_field_error("roi", "crop = 'roi' needs roi = [x1, y1, x2, y2]")
        if self.roi is not None:
            x1, y1, x2, y2 = self.roi
            if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
                raise cross_field_error(
                    "roi",
                    f"roi {list(self.roi)} must lie inside the frame: 0 <= x1 < x2 <= 1 and "
                    "0 <= y1 < y2 <= 1",
                )
        return self


C = TypeVar("C", bound=CameraBase)
# Makes one path from the config absolute: `~` expanded, relative to the config's directory.
Absolute = Callable[[Path], Path]


def _as_is(camera: Any, _absolute: Absolute) -> Any:
    return camera


def _claims_nothing(_text: str) -> bool:
    return False


def _not_live(_camera: Any) -> bool:
    return False


@dataclass(frozen=True)
class CameraType(Generic[C]):
    """One `type` of [cameras.NAME] table: its keys, how it opens, how check-config shows it,
    its file paths and how `bench --source` names it. Each module in this package declares
    one as `CAMERA`; `camclassd.cameras` lists them."""

    model: type[C]
    # The Source for a validated table, not opened yet. It imports the source module itself,
    # so that loading a config never imports OpenCV or picamera2.
    open: Callable[[str, C], Source]
    # check-config's words for where the frames come from; never a secret.
    summary: Callable[[C], str]
    # The table name of this type's commented example in the generated default config.
    example_name: str
    # The table with its file paths made absolute (the loader's one pass over paths).
    absolute: Callable[[C, Absolute], C] = _as_is
    # `bench --source TYPE:ARGUMENT`; None: this type cannot be benchmarked by name.
    from_argument: Callable[[str], C] | None = None
    # Whether a bare `bench --source TEXT` (no TYPE: in front) is this type's argument.
    claims: Callable[[str], bool] = _claims_nothing
    # Whether its frames come in real time (a camera, a stream), so that a still scene is
    # worth gating: the gate's mode "auto" turns on for these.
    live: Callable[[C], bool] = _not_live
    # Cores its capture takes, for num_threads = "auto": decoding video needs about one.
    capture_cores: Callable[[C], float] = lambda _camera: 1.0

    @property
    def name(self) -> str:
        return str(self.model.model_fields["type"].default)

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.model.__doc__ or "")
