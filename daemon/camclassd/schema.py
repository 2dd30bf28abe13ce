"""The pydantic building blocks of the config: the strict section base, cross-field errors,
and field declarations several sections share (so that the same setting reads the same)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

RELATIVE_PATHS = "Relative paths are relative to this file."


class Section(BaseModel):
    # inf/nan would slip past every `ge`/`le` bound and mean nothing in a config.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


def cross_field_error(field: str | tuple[str, ...], message: str) -> PydanticCustomError:
    """A model-level rule broken by one field: `ctx["field"]` lets the loader name the key.

    (pydantic locates a model validator's error at the model, not at the field that is wrong.)
    """
    path = (field,) if isinstance(field, str) else field
    return PydanticCustomError("cross_field", message, {"field": path})


def file_path(default: Path, description: str) -> Any:
    """A file path with a default, resolved against the config file's directory."""
    return Field(
        default=default,
        # A Path default fails validation in JSON mode (used by the loader); it is valid anyway.
        validate_default=False,
        description=f"{description} {RELATIVE_PATHS}",
    )


def fraction(default: float, description: str) -> Any:
    """A score or share in 0..1."""
    return Field(default=default, ge=0, le=1, description=description)


def optional_fps(description: str, example: float) -> Any:
    """A frame rate that may be left unset (then the source goes as fast as it is read)."""
    return Field(default=None, gt=0, description=description, examples=[example])


def stall_timeout(description: str) -> Any:
    """How long one capture may take before the source counts as stalled and is reopened."""
    return Field(default=5.0, gt=0, description=description)


def section_of(field: FieldInfo) -> type[BaseModel] | None:
    """The section model a field holds ([mqtt.tls] in [mqtt]), None for a plain value."""
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
