"""Files that are whole or absent: temp file + fsync + rename, directories with a mode."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

DIR_MODE = 0o750  # the service user and its group; nobody else
FILE_MODE = 0o640


def make_dirs(path: Path, mode: int = DIR_MODE) -> None:
    """mkdir -p, each new directory given `mode` whatever the umask."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
            os.chmod(directory, mode)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one, never half.

    The temp file is removed on any failure (ENOSPC included) and the error re-raised.
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def replace_dir(staged: Path, target: Path) -> None:
    """Move a fully written directory into place; an existing target goes afterwards."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staged, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
