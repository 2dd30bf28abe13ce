"""A targeted edit of a few string keys of one TOML table (the config's `[model] path` and
`labels`, a camera's `model` and `labels`), set or removed: every other line, comment and
blank stays as the user wrote it. The caller
validates the result with the config loader before writing it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping

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


def _table_body(lines: list[str], table: str) -> tuple[int, int] | None:
    """(header line, end) of `[table]`'s own lines, or None when it has no header."""
    header_re = _header(table)
    header = next((i for i, line in enumerate(lines) if header_re.match(line.rstrip("\r\n"))), None)
    if header is None:
        return None
    end = next(
        (i for i in range(header + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines)
    )
    return header, end


def _key_lines(
    lines: list[str], table: str, body: tuple[int, int], keys: Iterable[str]
) -> Iterator[tuple[int, re.Match[str]]]:
    """(index, match) of each one-line string `key = "..."` of `keys` in the table's lines;
    such a key written any other way (multi-line, not a string) is left to the user."""
    alternatives = "|".join(re.escape(key) for key in keys)
    line_re = re.compile(
        rf"^(?P<lead>\s*)(?P<key>{alternatives})(?P<eq>\s*=\s*)(?P<value>{_STRING})"
        r"(?P<tail>\s*(#.*)?)$"
    )
    start_re = re.compile(rf"^\s*({alternatives})\s*=")
    for index in range(body[0] + 1, body[1]):
        line = lines[index].rstrip("\r\n")
        match = line_re.match(line)
        if match is not None:
            yield index, match
        elif start_re.match(line):
            raise ConfigError(
                f"line {index + 1}: [{table}] {line.split('=')[0].strip()} is not a one-line "
                "string; set it by hand"
            )


def set_keys(text: str, table: str, values: Mapping[str, str]) -> str:
    """`text` with string keys of `[table]` set (added when missing; the table too)."""
    wanted = {key: toml_string(value) for key, value in values.items()}
    lines = text.splitlines(keepends=True)
    body = _table_body(lines, table)
    if body is None:
        ending = "" if not text or text.endswith("\n") else "\n"
        added = "".join(f"{key} = {value}\n" for key, value in wanted.items())
        return f"{text}{ending}\n[{table}]\n{added}"
    found: set[str] = set()
    for index, match in list(_key_lines(lines, table, body, values)):
        raw = lines[index]
        newline = raw[len(raw.rstrip("\r\n")) :] or "\n"
        key = match["key"]
        found.add(key)
        lines[index] = f"{match['lead']}{key}{match['eq']}{wanted[key]}{match['tail']}{newline}"
    header = body[0]
    missing = [f"{key} = {wanted[key]}\n" for key in wanted if key not in found]
    if missing:
        if not lines[header].endswith("\n"):
            lines[header] += "\n"
        lines[header + 1 : header + 1] = missing
    return "".join(lines)


def remove_keys(text: str, table: str, keys: Iterable[str]) -> str:
    """`text` without the lines of `[table]`'s one-line string `keys` (their inline comments
    go with them); a key or table that is not there leaves the text as it was."""
    keys = list(keys)
    if not keys:  # an empty alternation would match any line that starts with `=`
        return text
    lines = text.splitlines(keepends=True)
    body = _table_body(lines, table)
    if body is None:
        return text
    gone = {index for index, _ in _key_lines(lines, table, body, keys)}
    return "".join(line for index, line in enumerate(lines) if index not in gone)


def has_table(text: str, table: str) -> bool:
    """Whether `[table]` has a header line of its own (not an inline table or dotted keys)."""
    return _table_body(text.splitlines(keepends=True), table) is not None


def set_model_paths(text: str, *, path: str, labels: str) -> str:
    """`[model] path` and `labels` set."""
    return set_keys(text, "model", {"path": path, "labels": labels})
