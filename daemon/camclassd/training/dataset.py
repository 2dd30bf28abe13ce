"""A dataset folder: one sub-folder per class, images inside; scanning, decoding, checks.

Folders whose name starts with `_` or `.` are not classes (`_unlabelled` is where collect puts
what nobody has labelled yet; `_full` keeps full frames next to model-size views).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camclassd.errors import InputDataError, InputNotFoundError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MIN_PER_CLASS = 10  # below this the dataset check warns; validation needs 2
IMBALANCE_RATIO = 3.0  # largest class / smallest class above this is a warning
BACKGROUND_LABELS = frozenset({"none", "background"})


@dataclass(frozen=True, slots=True)
class Example:
    path: Path
    label: int  # index into Dataset.classes


@dataclass(frozen=True, slots=True)
class Dataset:
    root: Path
    classes: tuple[str, ...]
    examples: tuple[Example, ...]
    other_files: tuple[Path, ...]  # files that are not images by name (skipped)

    def counts(self) -> tuple[int, ...]:
        counts = [0] * len(self.classes)
        for example in self.examples:
            counts[example.label] += 1
        return tuple(counts)


def is_class_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(("_", "."))


def scan(root: Path) -> Dataset:
    """Class folders (sorted by name) and their image files; raises when there is no dataset."""
    if not root.exists():
        raise InputNotFoundError(
            f"dataset folder {root} does not exist: give a folder with one sub-folder per class"
        )
    if not root.is_dir():
        raise InputNotFoundError(f"dataset {root} is a file: give a folder of class folders")
    classes: list[str] = []
    examples: list[Example] = []
    others: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if is_class_dir(p)):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        others.extend(p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES)
        label = len(classes)
        classes.append(folder.name)
        examples.extend(Example(path, label) for path in images)
    if not examples:
        for name in classes:
            _refuse_nested(root, name)
        raise InputDataError(
            f"dataset {root} has no images: put one folder per class in it (e.g. "
            f"{root}/open/*.jpg, {root}/closed/*.jpg)"
        )
    return Dataset(root, tuple(classes), tuple(examples), tuple(others))


def _refuse_nested(root: Path, name: str) -> None:
    """A "class" whose folder holds class folders: the collect layout one level too high."""
    if any(is_class_dir(p) for p in (root / name).iterdir()):
        raise InputDataError(
            f"{root / name} holds folders, not images: collect writes DIR/CAMERA/LABEL, so "
            f"give {root / name} (the folder whose sub-folders are the classes)"
        )


def require_trainable(dataset: Dataset) -> None:
    """At least two classes, each with an image file (readability is checked while decoding)."""
    counts = dataset.counts()
    if len(dataset.classes) < 2:
        raise InputDataError(
            f"dataset {dataset.root} has one class ({dataset.classes[0]!r}): a classifier "
            "needs at least two; add a folder such as 'none' with views of nothing of interest"
        )
    empty = [name for name, count in zip(dataset.classes, counts, strict=True) if count == 0]
    if empty:
        _refuse_nested(dataset.root, empty[0])
        raise InputDataError(
            f"class {empty[0]!r} in {dataset.root} has no image files: add images or remove "
            "the folder"
        )


def decode(path: Path) -> np.ndarray | None:
    """RGB uint8 HxWx3, or None when the file cannot be read or decoded."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if image is None:
        return None
    rgb: np.ndarray = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return rgb


def file_hash(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True, slots=True)
class Check:
    """What `camclassd dataset` reports."""

    counts: tuple[tuple[str, int], ...]  # readable images per class
    unreadable: tuple[Path, ...]
    other_files: tuple[Path, ...]
    duplicates: tuple[tuple[Path, ...], ...]  # groups of byte-identical files
    warnings: tuple[str, ...]


def check(dataset: Dataset) -> Check:
    """Decode every image once; count, hash and judge the dataset."""
    readable = [0] * len(dataset.classes)
    unreadable: list[Path] = []
    by_hash: dict[str, list[Path]] = {}
    for example in dataset.examples:
        if decode(example.path) is None:
            unreadable.append(example.path)
            continue
        readable[example.label] += 1
        by_hash.setdefault(file_hash(example.path), []).append(example.path)
    duplicates = tuple(tuple(paths) for paths in by_hash.values() if len(paths) > 1)
    warnings = _warnings(dataset.classes, readable, unreadable, dataset.other_files, duplicates)
    return Check(
        counts=tuple(zip(dataset.classes, readable, strict=True)),
        unreadable=tuple(unreadable),
        other_files=dataset.other_files,
        duplicates=duplicates,
        warnings=tuple(warnings),
    )


def _warnings(
    classes: Sequence[str],
    readable: Sequence[int],
    unreadable: Sequence[Path],
    others: Sequence[Path],
    duplicates: Sequence[Sequence[Path]],
) -> list[str]:
    warnings: list[str] = []
    if len(classes) < 2:
        warnings.append("only one class: training needs at least two (e.g. add 'none')")
    for name, count in zip(classes, readable, strict=True):
        if count < MIN_PER_CLASS:
            warnings.append(
                f"class {name!r} has {count} readable image(s): aim for {MIN_PER_CLASS}+ "
                "(20+ varied views is better)"
            )
    present = [count for count in readable if count > 0]
    if len(present) >= 2 and max(present) > IMBALANCE_RATIO * min(present):
        warnings.append(
            f"imbalanced: the largest class has {max(present)} images, the smallest "
            f"{min(present)} (training weights classes equally, but few examples stay few)"
        )
    if unreadable:
        warnings.append(f"{len(unreadable)} image file(s) do not decode and are skipped")
    if others:
        warnings.append(f"{len(others)} file(s) are not images (by name) and are skipped")
    if duplicates:
        extra = sum(len(group) - 1 for group in duplicates)
        warnings.append(f"{extra} duplicate file(s) (same bytes) in {len(duplicates)} group(s)")
    if not any(name.lower() in BACKGROUND_LABELS for name in classes):
        warnings.append(
            "no 'none' class: every view will be given one of the classes; a state or "
            "presence model usually wants a 'none' folder of views with nothing of interest"
        )
    return warnings


def format_check(root: Path, result: Check, *, show: int = 5) -> str:
    width = max([8, *(len(name) for name, _ in result.counts)])
    total = sum(count for _, count in result.counts)
    lines = [f"dataset {root}: {len(result.counts)} classes, {total} readable images"]
    lines += [f"  {name:<{width}} {count:6d}" for name, count in result.counts]
    for path in result.unreadable[:show]:
        lines.append(f"  unreadable: {path}")
    for path in result.other_files[:show]:
        lines.append(f"  not an image: {path}")
    for group in result.duplicates[:show]:
        lines.append(f"  duplicates: {', '.join(str(p) for p in group)}")
    lines += [f"warning: {warning}" for warning in result.warnings]
    if not result.warnings:
        lines.append("ok: no warnings")
    return "\n".join(lines)
