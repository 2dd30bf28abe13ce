"""Loading the TOML file into `Config`, and the `check-config` / `default-config` commands.

Every problem in a file is reported at once, each with its dotted key path, the bad value,
what is allowed and the line in the file, in one `ConfigError` (exit 78).

Validation runs in pydantic's strict JSON mode: TOML already has types, so `queue_size = "5"`
is an error rather than silently becoming 5, while arrays still become tuples and strings
paths. Relative paths (model, labels, images, password and TLS files) are resolved against the
directory of the config file by `load_config`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import math
import os
import re
import ssl
import sys
import textwrap
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from camclassd.config import (
    CAMERA_MODELS,
    DEFAULT_CONFIG_PATH,
    CameraBase,
    Config,
    ImagesCamera,
    OpenCVCamera,
    Picamera2Camera,
    SyntheticCamera,
)
from camclassd.errors import EXIT_OK, ConfigError
from camclassd.gate_config import camera_is_live, resolve_mode
from camclassd.redact import MASK, is_secret_key, mask_uri
from camclassd.threads import resolve_threads

Loc = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_LINE = re.compile(rf"^\s*\[\[?\s*({_DOTTED_KEY})\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(rf"^\s*({_DOTTED_KEY})\s*=")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_MAX_VALUE_CHARS = 80
_WRAP = 96


# ---- loading ------------------------------------------------------------------------------


def load_config(path: Path, overrides: Sequence[str] = ()) -> Config:
    """Read, parse and validate the config file; raise `ConfigError` listing every problem.

    `overrides` are `dotted.key=VALUE` strings (VALUE in TOML syntax, else taken as a string)
    applied on top of the file, e.g. from `--set`.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot be read: permission denied") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror or error}") from None
    config = parse_config(
        text, source=str(path), config_dir=path.resolve().parent, overrides=overrides
    )
    problems = file_problems(config)
    if problems:
        count = len(problems)
        header = f"{path}: {count} error{'s' if count != 1 else ''}:"
        raise ConfigError("\n".join([header, *(f"  - {problem}" for problem in problems)]))
    return config


def file_problems(config: Config) -> list[str]:
    """What is wrong with the MQTT password and TLS files, one line each (key path first).

    `run` would only find out when it connects (or, for TLS, abort); checking here makes
    `check-config` say so and `run` exit 78 before starting anything. Only files that are
    used are checked: the password file when MQTT is on, the TLS files when TLS is on too.
    """
    mqtt = config.mqtt
    if not mqtt.enabled:
        return []
    problems: list[str] = []

    def readable(key: str, path: Path | None) -> bool:
        if path is None:
            return True
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            problems.append(f"{key} = {_show(str(path))}: cannot read {path}: {error.strerror}")
            return False
        return True

    readable("mqtt.password_file", mqtt.password_file)
    tls = mqtt.tls
    if not tls.enabled:
        return problems
    ca_ok = readable("mqtt.tls.ca_file", tls.ca_file)
    pair_ok = readable("mqtt.tls.cert_file", tls.cert_file)
    pair_ok = readable("mqtt.tls.key_file", tls.key_file) and pair_ok
    try:
        context = ssl.create_default_context(cafile=tls.ca_file if ca_ok else None)
    except (ssl.SSLError, ValueError, OSError) as error:
        problems.append(
            f"mqtt.tls.ca_file = {_show(str(tls.ca_file))}: {tls.ca_file} holds no usable "
            f"CA certificate (PEM): {error}"
        )
        context = ssl.create_default_context()
    if pair_ok and tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (ssl.SSLError, ValueError, OSError) as error:
            problems.append(
                f"mqtt.tls.cert_file = {_show(str(tls.cert_file))}: the certificate "
                f"{tls.cert_file} and key {tls.key_file} do not load together (PEM, "
                f"unencrypted key of that certificate): {error}"
            )
    return problems


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    config_dir: Path | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Validate TOML text; with `config_dir`, relative paths are resolved against it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(_toml_error_message(source, text, error)) from None
    overridden = _apply_overrides(data, overrides)
    try:
        config = Config.model_validate_json(json.dumps(_jsonable(data)), strict=True)
    except ValidationError as error:
        raise ConfigError(format_errors(source, error, text, data, overridden)) from None
    return resolve_paths(config, config_dir) if config_dir is not None else config


def resolve_path(config_dir: Path, path: Path) -> Path:
    """A path from the config: `~` expanded, relative ones taken from the config's directory."""
    path = path.expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(config_dir / path))


def resolve_paths(config: Config, config_dir: Path) -> Config:
    """`config` with every file path made absolute (see `resolve_path`)."""

    def opt(path: Path | None) -> Path | None:
        return None if path is None else resolve_path(config_dir, path)

    cameras = {
        name: camera.model_copy(update={"path": str(resolve_path(config_dir, Path(camera.path)))})
        if isinstance(camera, ImagesCamera)
        else camera
        for name, camera in config.cameras.items()
    }
    model = config.model.model_copy(
        update={
            "path": resolve_path(config_dir, config.model.path),
            "labels": resolve_path(config_dir, config.model.labels),
        }
    )
    tls = config.mqtt.tls.model_copy(
        update={
            "ca_file": opt(config.mqtt.tls.ca_file),
            "cert_file": opt(config.mqtt.tls.cert_file),
            "key_file": opt(config.mqtt.tls.key_file),
        }
    )
    mqtt = config.mqtt.model_copy(
        update={"password_file": opt(config.mqtt.password_file), "tls": tls}
    )
    return config.model_copy(update={"cameras": cameras, "model": model, "mqtt": mqtt})


def _jsonable(value: Any) -> Any:
    # TOML dates and times fit no field: turn them into something every scalar field rejects.
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dt.date | dt.time):
        return {"TOML date/time": value.isoformat()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # plain JSON has no inf/nan; the error still names the key
    return value


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> set[Loc]:
    applied: set[Loc] = set()
    for override in overrides:
        key, sep, raw = override.partition("=")
        parts = _split_dotted_key(key.strip())
        if not sep or parts is None:
            raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. pipeline.workers=2")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: take it as a string
        table = data
        for part in parts[:-1]:
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: {part!r} is not a table")
            table = child
        table[parts[-1]] = value
        applied.add(parts)
    return applied


# ---- error messages -------------------------------------------------------------------------


def _toml_error_message(source: str, text: str, error: tomllib.TOMLDecodeError) -> str:
    message = str(error)
    lines = text.splitlines() or [""]
    match = _TOML_POSITION.search(message)
    if match:
        line, column = int(match.group(1)), int(match.group(2))
        reason = _TOML_POSITION.sub("", message).strip()
    elif "(at end of document)" in message:
        line, column = len(lines), len(lines[-1]) + 1
        reason = message.replace("(at end of document)", "at the end of the file").strip()
    else:
        return f"{source}: not valid TOML: {message}"
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    return (
        f"{source}: not valid TOML: line {line}, column {column}: {reason}\n"
        f"  {line:4d} | {shown}\n"
        f"       | {' ' * (column - 1)}^"
    )


def format_errors(
    source: str,
    error: ValidationError,
    text: str = "",
    data: Mapping[str, Any] | None = None,
    overridden: Iterable[Loc] = (),
) -> str:
    """One line per pydantic error: key path, value, line, what is wrong and what is allowed."""
    lines = key_lines(text)
    from_overrides = set(overridden)
    items: list[tuple[float, str]] = []
    for raw in error.errors(include_url=False):
        item: dict[str, Any] = dict(raw)
        loc, model = _normalise_loc(item)
        if loc and isinstance(loc[-1], int) and item["type"] == "missing":
            # A tuple too short: pydantic reports the missing item; the array is the key.
            loc = loc[:-1]
            item.update(type="too_short", msg="Array has too few items")
        found, value = _value_at(data or {}, loc)
        if not found and item["type"] not in ("missing", "union_tag_not_found", "cross_field"):
            found, value = True, item.get("input")
        where, line = "", _line_of(lines, loc)
        if tuple(loc) in from_overrides:
            where = " (from --set)"
        elif line is not None:
            where = f" (line {line})"
        # A password put in the file by mistake must not end up in the journal.
        secret = any(isinstance(part, str) and is_secret_key(part) for part in loc)
        shown = ""
        if found and item["type"] != "missing":
            shown = f" = {MASK if secret else _show(value)}"
        key = _dotted(loc) or "(top level)"
        text = f"  - {key}{shown}{where}: {_explain(item, loc, model, value)}"
        items.append((line if line is not None else math.inf, text))
    items.sort(key=lambda pair: pair[0])
    count = len(items)
    header = f"{source}: {count} error{'s' if count != 1 else ''}:"
    return "\n".join([header, *(text for _, text in items)])


def _normalise_loc(item: Mapping[str, Any]) -> tuple[Loc, type[BaseModel] | None]:
    """Drop the discriminator tag pydantic puts after a camera name; add cross-field keys.

    Returns the key path as the user wrote it and the model whose fields sit at its last level.
    """
    raw: Loc = tuple(item["loc"])
    tags = {_camera_tag(cls) for cls in CAMERA_MODELS}
    loc: Loc = raw
    if len(raw) >= 3 and raw[0] == "cameras" and raw[2] in tags:
        loc = raw[:2] + raw[3:]
    if item["type"] == "cross_field":
        loc = loc + tuple(item.get("ctx", {}).get("field", ()))
    elif item["type"] in ("union_tag_not_found", "union_tag_invalid"):
        loc = (*loc, "type")
    elif len(loc) >= 2 and loc[-1] == "[key]":
        loc = loc[:-1]
    tag = raw[2] if len(raw) >= 3 and raw[0] == "cameras" else None
    return loc, _model_at(loc[:-1], tag)


def _camera_tag(cls: type[CameraBase]) -> str:
    return str(cls.model_fields["type"].default)


def _model_at(loc: Loc, tag: object) -> type[BaseModel] | None:
    """The model class holding the fields at `loc` (for "did you mean")."""
    model: type[BaseModel] = Config
    index = 0
    while index < len(loc):
        name = loc[index]
        if not isinstance(name, str) or name not in model.model_fields:
            return None
        if name == "cameras" and model is Config:
            if index + 1 >= len(loc):
                return None
            by_tag = {_camera_tag(cls): cls for cls in CAMERA_MODELS}
            camera = by_tag.get(str(tag))
            if camera is None:
                return None
            model = camera
            index += 2
            continue
        section = _submodel(model.model_fields[name])
        if section is None:
            return None
        model = section
        index += 1
    return model


def _submodel(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _value_at(data: Mapping[str, Any], loc: Loc) -> tuple[bool, Any]:
    value: Any = data
    for part in loc:
        in_table = isinstance(value, Mapping) and part in value
        in_array = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if in_table or in_array:
            value = value[part]
        else:
            return False, None
    return True, value


def _explain(item: Mapping[str, Any], loc: Loc, model: type[BaseModel] | None, value: Any) -> str:
    kind = item["type"]
    ctx = item.get("ctx") or {}
    name = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        known = sorted(model.model_fields) if model is not None else []
        what = "unknown section" if len(loc) == 1 and isinstance(value, dict) else "unknown key"
        hint = _did_you_mean(name, known)
        if hint:
            return f"{what}; {hint}"
        return f"{what}; allowed here: {', '.join(known)}" if known else what
    if kind == "missing":
        return "required key is missing"
    types = ", ".join(repr(_camera_tag(cls)) for cls in CAMERA_MODELS)
    if kind == "union_tag_not_found":
        return f"every camera needs a type: one of {types}"
    if kind == "union_tag_invalid":
        hint = _did_you_mean(str(ctx.get("tag", "")), [_camera_tag(c) for c in CAMERA_MODELS])
        return f"unknown camera type; allowed: {types}" + (f"; {hint}" if hint else "")
    message = str(item["msg"]).removeprefix("Value error, ")
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (inf and nan are not allowed)"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _did_you_mean(value, allowed) if isinstance(value, str) else ""
        return message + (f"; {hint}" if hint else "")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a table (a [section] or { ... })"
    if kind in ("tuple_type", "list_type"):
        return message.replace("a valid tuple", "an array") + _shape_hint(loc)
    if kind in ("too_short", "too_long"):
        return message.replace("Tuple", "Array") + _shape_hint(loc)
    return message


def _shape_hint(loc: Loc) -> str:
    hints = {
        "roi": " [x1, y1, x2, y2]",
        "scaler_crop": " [x, y, width, height]",
        "resolution": " [width, height]",
        "lores": " [width, height]",
    }
    hint = hints.get(str(loc[-1])) if loc else None
    return f"; expected{hint}" if hint else ""


def _did_you_mean(word: object, choices: Sequence[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _dotted(loc: Loc) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            text = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            parts.append(f".{text}" if parts else text)
    return "".join(parts)


def _show(value: Any) -> str:
    try:
        shown = render_toml_value(value)
    except ValueError:
        shown = repr(value)
    if len(shown) > _MAX_VALUE_CHARS:
        shown = shown[: _MAX_VALUE_CHARS - 3] + "..."
    return shown


# ---- line numbers ----------------------------------------------------------------------------


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every key path and table header in TOML text to its (first) line number.

    Best effort, line by line: multi-line strings are skipped; keys inside inline tables are
    found through their parent key.
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER_LINE.match(line)
        if header:
            parts = _split_dotted_key(header.group(1))
            if parts is not None:
                table = parts
                for depth in range(1, len(parts) + 1):
                    lines.setdefault(parts[:depth], number)
            continue
        key = _KEY_LINE.match(line)
        if key:
            parts = _split_dotted_key(key.group(1))
            if parts is not None:
                for depth in range(1, len(parts) + 1):
                    lines.setdefault(table + parts[:depth], number)
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
                    break
    return lines


def _line_of(lines: Mapping[tuple[str, ...], int], loc: Loc) -> int | None:
    keys = tuple(part for part in loc if isinstance(part, str))
    for depth in range(len(keys), 0, -1):
        line = lines.get(keys[:depth])
        if line is not None:
            return line
    return None


def _split_dotted_key(text: str) -> tuple[str, ...] | None:
    parts: list[str] = []
    for match in re.finditer(rf"\s*({_KEY_PART})\s*(\.|$)", text):
        raw = match.group(1)
        if raw.startswith('"'):
            try:
                parts.append(str(json.loads(raw)))
            except json.JSONDecodeError:
                return None
        elif raw.startswith("'"):
            parts.append(raw[1:-1])
        else:
            parts.append(raw)
    return tuple(parts) or None


# ---- TOML rendering ------------------------------------------------------------------------


def render_toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else render_toml_value(key)


def render_toml_value(value: Any) -> str:
    """A Python value in TOML syntax (inline); `None` has no TOML form: ValueError."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        # JSON escapes are valid TOML escapes; anything unprintable is escaped too, so that an
        # error message never carries a raw DEL, NEL or line separator.
        return "".join(
            c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
            for c in json.dumps(str(value), ensure_ascii=False)
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(
            f"{render_toml_key(str(k))} = {render_toml_value(v)}" for k, v in value.items()
        )
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise ValueError(f"no TOML form for {value!r}")


# ---- the generated default file ------------------------------------------------------------

_HEADER = """\
camclassd configuration (default path: {path})

Generated by `camclassd default-config` from the daemon's own schema, so every key below is
shown with its default value and its description. Every key is optional: keep only what you
change. Unknown keys are errors. Check a file with `camclassd check-config FILE`; the daemon
exits with status 78 on an invalid file. Relative paths are relative to this file's directory.
Lines starting with "# key =" are settings without a default value, or examples: remove the
"# " to use them. Never put the MQTT password here: see mqtt.password_file."""

_EXAMPLE_CAMERA_NAMES: Mapping[type[CameraBase], str] = MappingProxyType(
    {OpenCVCamera: "usb", ImagesCamera: "photos", SyntheticCamera: "test"}
)


def render_default_config() -> str:
    """The fully commented default configuration file, generated from the models."""
    out: list[str] = [_comment(_HEADER.format(path=DEFAULT_CONFIG_PATH))]
    for name, field in Config.model_fields.items():
        if name == "cameras":
            out.extend(_render_cameras(field))
            continue
        section = _submodel(field)
        assert section is not None, name
        out.extend(_render_table((name,), section, field.description))
    return "\n".join(out).rstrip("\n") + "\n"


def _render_cameras(field: FieldInfo) -> Iterator[str]:
    yield ""
    yield _comment(
        (field.description or "")
        + " Each camera has a `type`: "
        + ", ".join(repr(_camera_tag(cls)) for cls in CAMERA_MODELS)
        + ". Listing any camera replaces the default [cameras.main]."
    )
    yield from _render_table(("cameras", "main"), Picamera2Camera, Picamera2Camera.__doc__)
    common = set(CameraBase.model_fields)
    for cls, name in _EXAMPLE_CAMERA_NAMES.items():
        block = _render_table(("cameras", name), cls, cls.__doc__, skip=common)
        yield ""
        yield f"# Example, type {_camera_tag(cls)!r} (it takes {', '.join(sorted(common))} too):"
        for line in block:
            if line:
                yield line if line.startswith("#") else f"# {line}"


def _render_table(
    path: tuple[str, ...],
    model: type[BaseModel],
    description: str | None,
    skip: Iterable[str] = (),
) -> Iterator[str]:
    yield ""
    if description:
        yield _comment(description)
    yield "[" + ".".join(render_toml_key(part) for part in path) + "]"
    fields = sorted(model.model_fields.items(), key=lambda item: item[0] != "type")
    nested: list[tuple[str, type[BaseModel], str | None]] = []
    for name, field in fields:
        if name in skip:
            continue
        section = _submodel(field)
        if section is not None:
            nested.append((name, section, field.description))
            continue
        if name != "type" and field.description:
            yield _comment(field.description)
        yield _render_field(name, field)
    for name, sub, sub_description in nested:
        yield from _render_table((*path, name), sub, sub_description)


def _render_field(name: str, field: FieldInfo) -> str:
    key = render_toml_key(name)
    if field.is_required():
        examples = field.examples or [""]
        return f"{key} = {render_toml_value(examples[0])}"
    default = field.get_default(call_default_factory=True)
    if default is None:
        example = (field.examples or [None])[0]
        shown = render_toml_value(example) if example is not None else "..."
        return f"# {key} = {shown}"
    return f"{key} = {render_toml_value(default)}"


def _comment(text: str) -> str:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        wrapped = textwrap.wrap(paragraph, width=_WRAP - 2) or [""]
        lines.extend(f"# {line}".rstrip() for line in wrapped)
    return "\n".join(lines)


# ---- commands ------------------------------------------------------------------------------


def check_config_main(args: argparse.Namespace) -> int:
    """`camclassd check-config FILE`: OK and a summary, or every error (exit 78)."""
    path: Path = args.file
    config = load_config(path, overrides=list(getattr(args, "set", None) or []))
    print(f"OK: {path}")
    print(summarise(config))
    return EXIT_OK


def default_config_main(args: argparse.Namespace) -> int:
    """`camclassd default-config`: the commented default file on stdout."""
    sys.stdout.write(render_default_config())
    return EXIT_OK


def summarise(config: Config) -> str:
    """A few lines saying what the daemon would run; never shows a secret."""
    device = config.device
    name = f" ({device.name})" if device.name else ""
    lines = [f"  device: {device.resolved_id}{name}" + ("" if device.id else " (hostname)")]
    for camera_name, camera in config.cameras.items():
        state = "" if camera.enabled else ", disabled"
        lines.append(
            f"  camera {camera_name}: {camera.type} {_camera_source(camera)}, "
            f"crop {camera.crop}, motion {_motion(camera)}{state}"
        )
    model = config.model
    missing = "" if model.path.exists() else " (file not found here)"
    threads = f"{model.num_threads} thread(s)"
    if model.num_threads == "auto":
        threads = f"auto threads ({resolve_threads(config)} here)"
    lines.append(
        f"  model: {model.path}{missing}, {threads}, top {model.top_k}, delegate {model.delegate}"
    )
    mqtt = config.mqtt
    if mqtt.enabled:
        tls = "TLS" if mqtt.tls.enabled else "no TLS"
        user = f", user {mqtt.username}" if mqtt.username else ""
        lines.append(
            f"  mqtt: {mqtt.host}:{mqtt.port} (MQTT {mqtt.protocol}, {tls}{user}), "
            f"topics {mqtt.prefix}/{device.resolved_id}/..."
        )
    else:
        lines.append("  mqtt: off (results go to stdout)")
    lines.append(f"  homeassistant: {'on' if config.homeassistant.enabled else 'off'}")
    return "\n".join(lines)


def _motion(camera: CameraBase) -> str:
    """'on (...)' when the scene-change gate runs for this camera, 'off' when it does not."""
    gate = camera.gate
    live = camera_is_live(str(getattr(camera, "type", "")), getattr(camera, "uri", None))
    if resolve_mode(gate, live) == "always":
        return "off" + (" (auto: not a live camera)" if gate.mode == "auto" else "")
    return (
        f"on (threshold {gate.threshold}, min_area {gate.min_area:g}, refresh {gate.refresh_s:g} s)"
    )


def _camera_source(camera: CameraBase) -> str:
    if isinstance(camera, Picamera2Camera):
        width, height = camera.lores
        return f"camera {camera.camera_num}, lores {width}x{height} at {camera.fps:g} fps"
    if isinstance(camera, OpenCVCamera):
        # An RTSP URL may carry a password: never print it.
        return mask_uri(camera.uri)
    if isinstance(camera, ImagesCamera):
        return camera.path
    if isinstance(camera, SyntheticCamera):
        return f"{camera.width}x{camera.height}"
    return ""
