"""A targeted edit of the config's `[model] path` and `labels`: every other line, comment and
blank stays as the user wrote it. The caller validates the result before writing it."""

from __future__ import annotations

import json
import re

from camclassd.errors import ConfigError

_HEADER = re.compile(r"^\s*\[\s*model\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_STRING = r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''
_KEY = re.compile(
    rf"^(?P<lead>\s*)(?P<key>path|labels)(?P<eq>\s*=\s*)(?P<value>{_STRING})(?P<tail>\s*(#.*)?)$"
)
_KEY_START = re.compile(r"^\s*(path|labels)\s*=")


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML ones)."""
    return json.dumps(value, ensure_ascii=False)


def set_model_paths(text: str, *, path: str, labels: str) -> str:
    """`text` with `[model] path` and `labels` set; the table is added when missing."""
    lines = text.splitlines(keepends=True)
    wanted = {"path": toml_string(path), "labels": toml_string(labels)}
    header = next((i for i, line in enumerate(lines) if _HEADER.match(line.rstrip("\r\n"))), None)
    if header is None:
        ending = "" if not text or text.endswith("\n") else "\n"
        table = "".join(f"{key} = {value}\n" for key, value in wanted.items())
        return f"{text}{ending}\n[model]\n{table}"
    end = next(
        (i for i in range(header + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines)
    )
    found: set[str] = set()
    for index in range(header + 1, end):
        raw = lines[index]
        body = raw.rstrip("\r\n")
        newline = raw[len(body) :]
        match = _KEY.match(body)
        if match is None:
            if _KEY_START.match(body):
                raise ConfigError(
                    f"line {index + 1}: [model] {body.split('=')[0].strip()} is not a one-line "
                    "string; set it by hand"
                )
            continue
        key = match["key"]
        found.add(key)
        lines[index] = (
            f"{match['lead']}{key}{match['eq']}{wanted[key]}{match['tail']}{newline or chr(10)}"
        )
    missing = [f"{key} = {wanted[key]}\n" for key in wanted if key not in found]
    if missing:
        if not lines[header].endswith("\n"):
            lines[header] += "\n"
        lines[header + 1 : header + 1] = missing
    return "".join(lines)
