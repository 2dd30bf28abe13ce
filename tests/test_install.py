"""scripts/install.sh and scripts/uninstall.sh against a temporary root (--destdir).

Most tests use --skip-pip: the venv is created (without pip, ~0.1 s) but the package is not
installed, so they check the layout, idempotence and config handling in well under a second.
One slow test runs the real `pip install --no-deps` of this checkout into the staged venv.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from camclassd.configfile import parse_config
from tests.conftest import REPO

INSTALL = REPO / "scripts" / "install.sh"
UNINSTALL = REPO / "scripts" / "uninstall.sh"
DEFAULT_CONFIG = REPO / "config" / "camclassd.toml"
# The venv needs a real interpreter, not this test venv's (a venv of a venv is fragile).
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def run(script: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def install(root: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run(INSTALL, "--destdir", str(root), "--python", BASE_PYTHON, *extra, timeout=timeout)


def snapshot(root: Path) -> dict[str, str]:
    """Every file outside the venv -> sha256 (the venv is Python's business)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "venv" not in path.relative_to(root).parts:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_files_land_where_expected(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = install(root, "--skip-pip")
    # No command is offered that was not installed.
    assert "no camclassd command was installed" in done.stdout, done.stdout
    prefix = root / "opt" / "camclassd"
    assert (prefix / "venv" / "bin" / "python").exists()
    cfg = (prefix / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    for model in (REPO / "models").glob("*.tflite"):
        assert (prefix / "models" / model.name).read_bytes() == model.read_bytes()
    assert (prefix / "models" / "imagenet_labels.txt").exists()
    assert (root / "etc/camclassd/camclassd.toml").read_text() == DEFAULT_CONFIG.read_text()
    mqtt_dir = root / "etc/camclassd/mqtt"
    assert stat.S_IMODE(mqtt_dir.stat().st_mode) == 0o700, "holds the MQTT password"
    unit = (root / "etc/systemd/system/camclassd.service").read_text()
    assert unit == (REPO / "systemd/camclassd.service").read_text()
    for example in ("pi-door.toml", "usb-camera.toml", "rtsp-camera.toml", "two-cameras.toml"):
        assert (prefix / "share" / "examples" / example).exists()


def test_second_run_is_idempotent_and_keeps_an_edited_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, "--skip-pip")
    before = snapshot(root)
    second = install(root, "--skip-pip")
    assert snapshot(root) == before
    assert "wrote" not in second.stdout, second.stdout

    config = root / "etc/camclassd/camclassd.toml"
    edited = config.read_text().replace('host = "localhost"', 'host = "broker.lan"')
    config.write_text(edited)
    third = install(root, "--skip-pip")
    assert config.read_text() == edited, "an edited config is never overwritten"
    dist = root / "etc/camclassd/camclassd.toml.dist"
    assert dist.read_text() == DEFAULT_CONFIG.read_text()
    assert "kept your edited" in third.stdout


def test_an_unedited_old_default_follows_the_new_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, "--skip-pip")
    # Pretend an older release installed (and recorded) a different default.
    old = "# an older default\n" + DEFAULT_CONFIG.read_text()
    (root / "etc/camclassd/camclassd.toml").write_text(old)
    (root / "opt/camclassd/share/camclassd.toml.default").write_text(old)
    install(root, "--skip-pip")
    assert (root / "etc/camclassd/camclassd.toml").read_text() == DEFAULT_CONFIG.read_text()
    assert not (root / "etc/camclassd/camclassd.toml.dist").exists()


def test_prefix_is_written_into_the_unit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, "--skip-pip", "--prefix", "/usr/local/camclassd")
    unit = (root / "etc/systemd/system/camclassd.service").read_text()
    assert "ExecStart=/usr/local/camclassd/venv/bin/camclassd run" in unit
    assert "/opt/camclassd" not in unit
    assert (root / "usr/local/camclassd/models/imagenet_labels.txt").exists()


def test_prefix_is_written_into_a_fresh_config_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, "--skip-pip", "--prefix", "/usr/local/camclassd")
    config_file = root / "etc/camclassd/camclassd.toml"
    model = parse_config(config_file.read_text()).model
    # The service would exit 69 on a model path the prefix does not hold.
    assert model.path == Path("/usr/local/camclassd/models/efficientnet_lite0_uint8.tflite")
    assert model.labels == Path("/usr/local/camclassd/models/imagenet_labels.txt")
    for path in (model.path, model.labels):
        assert (root / path.relative_to("/")).is_file(), path
    assert "/opt/camclassd/models" not in config_file.read_text()
    # Unchanged otherwise, and a second run changes nothing.
    shipped = DEFAULT_CONFIG.read_text().replace('"/opt/camclassd/', '"/usr/local/camclassd/')
    assert config_file.read_text() == shipped
    before = snapshot(root)
    assert "wrote" not in install(root, "--skip-pip", "--prefix", "/usr/local/camclassd").stdout
    assert snapshot(root) == before
    # An edited config is never touched; the .dist next to it has the prefix.
    edited = config_file.read_text().replace('host = "localhost"', 'host = "broker.lan"')
    edited = edited.replace("/usr/local/camclassd/models/", "/srv/models/")
    config_file.write_text(edited)
    install(root, "--skip-pip", "--prefix", "/usr/local/camclassd")
    assert config_file.read_text() == edited
    assert (root / "etc/camclassd/camclassd.toml.dist").read_text() == shipped


def test_user_groups_are_the_units_supplementary_groups() -> None:
    """install.sh gives the user the groups the unit asks for, and no more (docs/systemd.md:
    no 'render', /dev/dri is outside the unit's DevicePolicy)."""
    unit = (REPO / "systemd/camclassd.service").read_text().splitlines()
    unit_groups = {
        group
        for line in unit
        if line.startswith("SupplementaryGroups=")
        for group in line.partition("=")[2].split()
    }
    script = INSTALL.read_text()
    assert 'for group in "${SERVICE_GROUPS[@]}"; do' in script
    lists = [
        line.partition("=(")[2].rstrip(")").split()
        for line in script.splitlines()
        if line.startswith("SERVICE_GROUPS=(")
    ]
    assert len(lists) == 1, lists
    assert set(lists[0]) == unit_groups == {"video"}


def test_uninstall_removes_what_install_added(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, "--skip-pip")
    run(UNINSTALL, "--destdir", str(root))
    assert not (root / "opt/camclassd").exists()
    assert not (root / "etc/systemd/system/camclassd.service").exists()
    # Your config and password stay...
    assert (root / "etc/camclassd/camclassd.toml").exists()
    assert (root / "etc/camclassd/mqtt").is_dir()
    # ...unless purged; then nothing install.sh added is left but empty parent directories.
    run(UNINSTALL, "--destdir", str(root), "--purge")
    leftovers = [p for p in root.rglob("*") if not p.is_dir()]
    assert leftovers == []
    # A second uninstall has nothing to do and still succeeds.
    run(UNINSTALL, "--destdir", str(root), "--purge")


def test_refuses_bad_options(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(INSTALL), "--destdir", str(tmp_path), "--bogus"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 64
    assert "unknown option --bogus" in result.stderr
    if os.geteuid() != 0:
        result = subprocess.run(
            ["bash", str(INSTALL)], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 77
        assert "run as root" in result.stderr


@pytest.mark.slow
def test_real_pip_install_of_this_checkout(tmp_path: Path) -> None:
    """The pip step for real (dependencies left out: they would be downloaded, ~100 MB)."""
    root = tmp_path / "root"
    done = install(root, "--pip-arg", "--no-deps", timeout=300)
    venv = root / "opt/camclassd/venv"
    assert (venv / "bin" / "camclassd").exists()
    # The check-config command it prints names the staged binary and config, which exist.
    match = re.search(r"check it: (\S+) check-config (\S+)\)", done.stdout)
    assert match is not None, done.stdout
    assert Path(match[1]) == venv / "bin" / "camclassd"
    assert Path(match[2]) == root / "etc/camclassd/camclassd.toml" and Path(match[2]).exists()
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import camclassd, sys; print(camclassd.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(venv) in result.stdout, "the installed copy, not the checkout"


@pytest.mark.slow
def test_numpy_already_in_the_venv_is_not_taken_for_the_systems(tmp_path: Path) -> None:
    """A second run must ask the system Python: the venv sees the numpy the first run put in."""
    root = tmp_path / "root"
    install(root, "--skip-pip")  # the venv, as a first run leaves it (numpy added below)
    venv = root / "opt/camclassd/venv"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", purelib],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    (Path(site) / "numpy").mkdir()
    (Path(site) / "numpy" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    system = subprocess.run(
        [BASE_PYTHON, "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result = install(root, "--pip-arg", "--no-deps", timeout=300)
    assert "keeping the system numpy 0.0.1" not in result.stdout, result.stdout
    if system.returncode == 0:
        assert f"keeping the system numpy {system.stdout.strip()}" in result.stdout, result.stdout
    else:
        assert "keeping the system numpy" not in result.stdout, result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(INSTALL), str(UNINSTALL)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout
