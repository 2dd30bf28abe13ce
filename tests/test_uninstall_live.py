"""scripts/uninstall.sh on the live root, as `sudo scripts/uninstall.sh` runs it.

The --destdir tests never exercise the empty-root path, where a `${ROOT:?}` once stopped the
script half-way. Here the prefix is a temporary directory and systemctl is left out, so the
only live path touched is the (absent) camclassd unit in /etc/systemd/system.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = Path("/etc/systemd/system/camclassd.service")


@pytest.mark.skipif(os.geteuid() != 0, reason="uninstall.sh without --destdir needs root")
@pytest.mark.skipif(UNIT.exists(), reason="a real camclassd is installed here: leave it be")
def test_uninstall_without_destdir_removes_the_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "opt" / "camclassd"
    for item in ("venv/bin", "models", "docs"):
        (prefix / item).mkdir(parents=True)
        (prefix / item / "file").write_text("x")
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "uninstall.sh"), "--prefix", str(prefix), "--no-systemctl"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not prefix.exists(), sorted(str(p) for p in prefix.rglob("*"))
