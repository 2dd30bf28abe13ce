"""TOML text without a TOML library: key paths and their line numbers, values rendered inline.

tomllib parses but neither says on which line a key is nor writes TOML; the config's error
messages and the generated default file need both. Pure functions, no pydantic.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Loc = tuple[str | int, ...]

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_LINE = re.compile(rf"^\s*\[\[?\s*({_DOTTED_KEY})\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(rf"^\s*({_DOTTED_KEY})\s*=")


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
            parts = split_dotted_key(header.group(1))
            if parts is not None:
                table = parts
                for depth in range(1, len(parts) + 1):
                    lines.setdefault(parts[:depth], number)
            continue
        key = _KEY_LINE.match(line)
        if key:
            parts = split_dotted_key(key.group(1))
            if parts is not None:
                for depth in range(1, len(parts) + 1):
                    lines.setdefault(table + parts[:depth], number)
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
                    break
    return lines


def line_of(lines: Mapping[tuple[str, ...], int], loc: Loc) -> int | None:
    keys = tuple(part for part in loc if isinstance(part, str))
    for depth in range(len(keys), 0, -1):
        line = lines.get(keys[:depth])
        if line is not None:
            return line
    return None


def split_dotted_key(text: str) -> tuple[str, ...] | None:
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


def render_toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else render_toml_value(key)


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
