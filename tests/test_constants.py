"""Module-level tables are constants: nothing can change them at run time by accident."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import camclassd
from camclassd import cli

_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")


def test_module_level_tables_are_immutable() -> None:
    mutable: list[str] = []
    for info in pkgutil.walk_packages(camclassd.__path__, "camclassd."):
        if info.name.endswith(".__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if _CONSTANT.match(name) and isinstance(value, dict | list | set | bytearray):
                mutable.append(f"{info.name}.{name}")
    assert not mutable, f"mutable module-level tables: {mutable}"


def test_a_table_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        cli._HANDLERS["run"] = "elsewhere:main"  # type: ignore[index]
    assert cli._HANDLERS["run"] == "camclassd.daemon:main"
