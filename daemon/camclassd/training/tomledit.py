"""A targeted edit of a few string keys of one TOML table (the config's `[model] path` and
`labels`): every other line, comment and blank stays as the user wrote it. The caller
validates the result with the config loader before writing it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from camclassd.errors import ConfigError

_ANY_HEADER = re.compile(r"^\s*\[")
_STRING = r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML ones)."""
    return json.dumps(value, ensure_ascii=False)


def _header(table: str) -> re.Pattern[str]:
    """`[a.b]` with any spacing around the brackets and dots (bare keys only)."""
    parts = r"\s*\.\s*".join(re.escape(part) for part in table.split("."))
    return re.compile(rf"^\s*\[\s*{parts}\s*\]\s*(#.*)?$")


def set_keys(text: str, table: str, values: Mapping[str, str]) -> str:
    """`text` with string keys of `[table]` set (added when missing; the table too)."""
    keys = "|".join(re.escape(key) for key in values)
    line_re = re.compile(
        rf"^(?P<lead>\s*)(?P<key>{keys})(?P<eq>\s*=\s*)(?P<value>{_STRING})(?P<tail>\s*(#.*)?)$"
    )
    start_re = re.compile(rf"^\s*({keys})\s*=")
    wanted = {key: toml_string(value) for key, value in values.items()}
    lines = text.splitlines(keepends=True)
    header_re = _header(table)
    header = next((i for i, line in enumerate(lines) if header_re.match(line.rstrip("\r\n"))), None)
    if header is None:
        ending = "" if not text or text.endswith("\n") else "\n"
        body = "".join(f"{key} = {value}\n" for key, value in wanted.items())
        return f"{text}{ending}\n[{table}]\n{body}"
    end = next(
        (i for i in range(header + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines)
    )
    found: set[str] = set()
    for index in range(header + 1, end):
        raw = lines[index]
        body = raw.rstrip("\r\n")
        newline = raw[len(body) :] or "\n"
        match = line_re.match(body)
        if match is None:
            if start_re.match(body):
                raise ConfigError(
                    f"line {index + 1}: [{table}] {body.split('=')[0].strip()} is not a one-line "
                    "string; set it by hand"
                )
            continue
        key = match["key"]
        found.add(key)
        lines[index] = f"{match['lead']}{key}{match['eq']}{wanted[key]}{match['tail']}{newline}"
    missing = [f"{key} = {wanted[key]}\n" for key in wanted if key not in found]
    if missing:
        if not lines[header].endswith("\n"):
            lines[header] += "\n"
        lines[header + 1 : header + 1] = missing
    return "".join(lines)


def set_model_paths(text: str, *, path: str, labels: str) -> str:
    """`[model] path` and `labels` set."""
    return set_keys(text, "model", {"path": path, "labels": labels})
