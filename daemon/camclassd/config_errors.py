"""Validation errors as a person reads them: one line per problem, with the dotted key, the
value, the line in the file, what is wrong and what is allowed (and "did you mean" for typos).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from camclassd.cameras import BY_NAME
from camclassd.config import Config
from camclassd.redact import MASK, is_secret_key
from camclassd.schema import section_of
from camclassd.tomltext import BARE_KEY, Loc, key_lines, line_of, render_toml_value

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_MAX_VALUE_CHARS = 80


def toml_error_message(source: str, text: str, error: tomllib.TOMLDecodeError) -> str:
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
        where, line = "", line_of(lines, loc)
        if tuple(loc) in from_overrides:
            where = " (from --set)"
        elif line is not None:
            where = f" (line {line})"
        # A password put in the file by mistake must not end up in the journal.
        secret = any(isinstance(part, str) and is_secret_key(part) for part in loc)
        shown = ""
        if found and item["type"] != "missing":
            shown = f" = {MASK if secret else show(value)}"
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
    tags = set(BY_NAME)
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
            kind = BY_NAME.get(str(tag))
            if kind is None:
                return None
            model = kind.model
            index += 2
            continue
        section = section_of(model.model_fields[name])
        if section is None:
            return None
        model = section
        index += 1
    return model


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
    types = ", ".join(repr(name) for name in BY_NAME)
    if kind == "union_tag_not_found":
        return f"every camera needs a type: one of {types}"
    if kind == "union_tag_invalid":
        hint = _did_you_mean(str(ctx.get("tag", "")), list(BY_NAME))
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
            text = part if BARE_KEY.fullmatch(part) else json.dumps(part)
            parts.append(f".{text}" if parts else text)
    return "".join(parts)


def show(value: Any) -> str:
    try:
        shown = render_toml_value(value)
    except ValueError:
        shown = repr(value)
    if len(shown) > _MAX_VALUE_CHARS:
        shown = shown[: _MAX_VALUE_CHARS - 3] + "..."
    return shown
