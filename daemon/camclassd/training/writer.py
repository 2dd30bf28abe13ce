"""`DatasetWriter`: examples saved into a dataset folder under a disk budget, atomically.

Thread-safe: the daemon's MQTT `collect` command and automatic collection may save from
several threads; the budget check and the write happen under one lock, so the budget is
never exceeded. Layout: ROOT/CAMERA/LABEL/STEM.jpg (the model's view) and, when given,
ROOT/CAMERA/LABEL/_full/STEM.jpg (the full frame, for re-cropping later).
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camclassd.errors import CamclassdError, UsageError
from camclassd.training.files import make_dirs, write_atomic

DEFAULT_DATASET_DIR = Path("/var/lib/camclassd/dataset")  # the daemon's, in its StateDirectory
UNLABELLED = "_unlabelled"
FULL_DIR = "_full"
MIB = 1024 * 1024
EXIT_CANTCREAT = 73  # sysexits EX_CANTCREAT: the budget allows no more files
EXIT_IOERR = 74  # sysexits EX_IOERR: the disk is full
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BudgetReachedError(CamclassdError):
    """Saving one more example would exceed the dataset's file or size budget."""

    exit_code = EXIT_CANTCREAT


class DiskFullError(CamclassdError):
    """The file system has no room left (ENOSPC / EDQUOT)."""

    exit_code = EXIT_IOERR


@dataclass(frozen=True, slots=True)
class Budget:
    max_files: int = 1000
    max_bytes: int = 200 * MIB

    def __post_init__(self) -> None:
        if self.max_files < 1 or self.max_bytes < 1:
            raise UsageError(f"a dataset budget must allow something, got {self}")


@dataclass(frozen=True, slots=True)
class Saved:
    view: Path
    full: Path | None
    bytes: int


def _usage(root: Path) -> tuple[int, int]:
    files = size = 0
    for directory, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith(".tmp"):
                continue  # a temp file a crash left: not an example
            try:
                size += os.stat(os.path.join(directory, name)).st_size
            except OSError:
                continue
            files += 1
    return files, size


def _component(value: str, what: str) -> str:
    if value != UNLABELLED and not _NAME.match(value):
        raise UsageError(
            f"{what} {value!r} cannot be a folder name: use letters, digits, '_', '-', '.' "
            "(starting with a letter or digit, at most 64)"
        )
    return value


def encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


class DatasetWriter:
    """Saves examples under `root` within `budget`; safe to share between threads."""

    def __init__(
        self, root: Path, budget: Budget, *, now: Callable[[], datetime.datetime] | None = None
    ) -> None:
        self.root = root
        self.budget = budget
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self._lock = threading.Lock()
        self._sequence = 0
        try:
            make_dirs(root)
        except OSError as error:
            raise _os_error(error, root) from None
        self._files, self._bytes = _usage(root)

    def usage(self) -> tuple[int, int]:
        """(files, bytes) under the root, as this writer counts them."""
        with self._lock:
            return self._files, self._bytes

    def save(
        self,
        camera: str,
        label: str | None,
        model_view: np.ndarray,
        full_image: np.ndarray | None = None,
        *,
        make_room: bool = False,
    ) -> Saved:
        """Write one example; raises BudgetReachedError (nothing written) when it would not fit,
        DiskFullError when the disk is full (nothing left half-written).

        `make_room` (automatic collection: the newest are worth labelling) deletes the oldest
        unlabelled examples of this camera until the new one fits; labelled ones are never
        deleted.
        """
        folder = self.root / _component(camera, "camera") / _component(label or UNLABELLED, "label")
        # Encoding is the slow part: done outside the lock so that threads overlap there.
        view_bytes = encode_jpeg(model_view)
        full_bytes = encode_jpeg(full_image) if full_image is not None else None
        count = 1 if full_bytes is None else 2
        size = len(view_bytes) + (len(full_bytes) if full_bytes is not None else 0)
        with self._lock:
            if not self._fits(count, size):
                # Files deleted or moved out of the root by hand since the last count free room.
                self._files, self._bytes = _usage(self.root)
            while not self._fits(count, size):
                if not (make_room and self._evict_oldest(camera)):
                    raise BudgetReachedError(
                        f"dataset budget reached in {self.root}: {self._files} files, "
                        f"{self._bytes / MIB:.1f} MiB (limits {self.budget.max_files} files, "
                        f"{self.budget.max_bytes / MIB:.1f} MiB): label and move or delete "
                        "examples, or raise the budget"
                    )
            self._sequence += 1
            stamp = self._now().strftime("%Y%m%dT%H%M%S.%f")[:-3]
            stem = f"{camera}-{stamp}-{self._sequence:05d}"
            view = folder / f"{stem}.jpg"
            full = folder / FULL_DIR / f"{stem}.jpg" if full_bytes is not None else None
            try:
                make_dirs(view.parent)
                write_atomic(view, view_bytes)
                if full is not None and full_bytes is not None:
                    make_dirs(full.parent)
                    try:
                        write_atomic(full, full_bytes)
                    except BaseException:
                        view.unlink(missing_ok=True)  # both or neither
                        raise
            except OSError as error:
                raise _os_error(error, folder) from None
            self._files += count
            self._bytes += size
            return Saved(view, full, size)

    def _fits(self, count: int, size: int) -> bool:
        return (
            self._files + count <= self.budget.max_files
            and self._bytes + size <= self.budget.max_bytes
        )

    def _evict_oldest(self, camera: str) -> bool:
        """Delete the oldest unlabelled example of `camera` (its full frame too)."""
        folder = self.root / camera / UNLABELLED
        try:
            oldest = min((p for p in folder.iterdir() if p.suffix == ".jpg"), default=None)
        except FileNotFoundError:
            return False
        if oldest is None:
            return False
        for path in (oldest, folder / FULL_DIR / oldest.name):
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            self._files -= 1
            self._bytes -= size
        return True


def _os_error(error: OSError, where: Path) -> CamclassdError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full writing to {where}: free space or move the dataset")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UsageError(f"cannot write to {where} ({error.strerror}): choose a writable folder")
    return CamclassdError(f"cannot write to {where}: {error.strerror or error}")
