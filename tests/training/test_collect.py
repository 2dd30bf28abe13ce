"""DatasetWriter (the component the daemon shares) and `camclassd collect` offline."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from camclassd.errors import UsageError
from camclassd.training.collect import Sampler, parse_interval
from camclassd.training.writer import (
    MIB,
    Budget,
    BudgetReachedError,
    DatasetWriter,
    DiskFullError,
)
from tests.conftest import SAMPLES, run_cli
from tests.training.data import _rgb, camera_view, write_jpeg


def _photo() -> np.ndarray:
    return _rgb("chelsea")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_save_writes_the_view_and_the_full_frame_privately(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", Budget(max_files=10, max_bytes=10 * MIB))
    photo = _photo()
    saved = writer.save("door", None, cv2.resize(photo, (224, 224)), photo)
    assert saved.view.parent == tmp_path / "ds" / "door" / "_unlabelled"
    assert saved.full is not None and saved.full.parent == saved.view.parent / "_full"
    assert cv2.imread(str(saved.full)).shape == photo.shape
    assert cv2.imread(str(saved.view)).shape == (224, 224, 3)
    for directory in (tmp_path / "ds", saved.view.parent, saved.full.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    assert stat.S_IMODE(saved.view.stat().st_mode) == 0o640
    assert writer.usage() == (2, saved.bytes)
    labelled = writer.save("door", "open", cv2.resize(photo, (224, 224)))
    assert labelled.full is None and labelled.view.parent.name == "open"
    assert not [p for p in _files(tmp_path) if p.name.endswith(".tmp")]


def test_names_that_are_not_folder_names_are_refused(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, Budget())
    view = np.zeros((8, 8, 3), np.uint8)
    for bad in ("../up", "a/b", ".hidden", ""):
        with pytest.raises(UsageError):
            writer.save(bad, "x", view)
        with pytest.raises(UsageError):
            writer.save("cam", bad or "/", view)
    assert _files(tmp_path) == []


def test_the_budget_is_never_exceeded_by_threads(tmp_path: Path) -> None:
    """8 threads save at once; the count and size budgets hold, existing files count too."""
    root = tmp_path / "ds"
    write_jpeg(root / "door" / "open" / "old.jpg", _photo())
    budget = Budget(max_files=25, max_bytes=int(0.6 * MIB))
    writer = DatasetWriter(root, budget)
    rng = np.random.default_rng(3)
    views = [cv2.resize(camera_view(_photo(), rng), (224, 224)) for _ in range(8)]
    refused = []

    def work(view: np.ndarray) -> None:
        for _ in range(10):
            try:
                writer.save("door", None, view)
            except BudgetReachedError:
                refused.append(1)

    threads = [threading.Thread(target=work, args=(v,)) for v in views]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    files = _files(root)
    size = sum(p.stat().st_size for p in files)
    assert len(files) <= budget.max_files and size <= budget.max_bytes
    assert refused, "the budget should have been reached"
    assert writer.usage() == (len(files), size)
    names = [p.name for p in files]
    assert len(set(names)) == len(names)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs (root only), so that a write really fails with ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_stops_cleanly_with_nothing_half_written(tiny_disk: Path) -> None:
    writer = DatasetWriter(tiny_disk / "ds", Budget(max_files=1000, max_bytes=100 * MIB))
    photo = _photo()
    rng = np.random.default_rng(5)
    with pytest.raises(DiskFullError, match="disk full"):
        for _ in range(100):
            noisy = camera_view(photo, rng, keep=(0.99, 1.0))  # noise: JPEGs that do not shrink
            writer.save("door", None, cv2.resize(noisy, (224, 224)), noisy)
    files = _files(tiny_disk / "ds")
    assert not [p for p in files if p.name.endswith(".tmp")]
    for path in files:
        assert cv2.imread(str(path)) is not None, f"{path} is half-written"
    views = {p.name for p in files if p.parent.name != "_full"}
    fulls = {p.name for p in files if p.parent.name == "_full"}
    assert views == fulls, "a view without its full frame (or the reverse)"


def test_collect_from_an_image_folder_until_the_budget(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    done = run_cli("collect", "--source", str(SAMPLES), "--out", str(out), "--max-files", "5")
    assert done.returncode == 73, done.stderr
    assert done.stderr.count("\n") == 1 and "budget reached" in done.stderr
    files = _files(out)
    assert len(files) == 4  # two views and their full frames; a third pair would make 6
    done = run_cli(
        "collect",
        "--source",
        str(SAMPLES),
        "--out",
        str(tmp_path / "two"),
        "--label",
        "cat",
        "--no-full",
        "--count",
        "2",
        "--camera",
        "porch",
    )
    assert done.returncode == 0, done.stderr
    assert len(_files(tmp_path / "two" / "porch" / "cat")) == 2
    assert "collected 2 example(s)" in done.stdout


def test_collect_from_a_video_file_every_second_of_video_time(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    assert writer.isOpened()
    rng = np.random.default_rng(9)
    for _ in range(45):  # 4.5 s of video at 10 fps
        frame = cv2.resize(camera_view(_photo(), rng, keep=(0.9, 0.95)), (320, 240))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    done = run_cli(
        "collect", "--source", str(video), "--out", str(tmp_path / "ds"), "--every", "1s"
    )
    assert done.returncode == 0, done.stderr
    views = [p for p in _files(tmp_path / "ds") if p.parent.name == "_unlabelled"]
    assert len(views) == 5  # frames 0, 10, 20, 30, 40


def test_collect_bad_arguments(tmp_path: Path) -> None:
    done = run_cli("collect", "--source", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "d"))
    assert done.returncode == 66 and "no such file" in done.stderr
    done = run_cli(
        "collect", "--source", str(SAMPLES), "--out", str(tmp_path / "d"), "--every", "soon"
    )
    assert done.returncode == 64 and "not a duration" in done.stderr
    assert not (tmp_path / "d").exists()


def test_intervals_and_sampling() -> None:
    assert parse_interval("2s") == 2.0
    assert parse_interval("500ms") == 0.5
    assert parse_interval("1m") == 60.0
    assert parse_interval("3") == 3.0
    sampler = Sampler("file", 0.5, 4.0)  # every other frame at 4 fps
    assert [sampler.keep() for _ in range(6)] == [True, False, True, False, True, False]
    images = Sampler("images", 10.0, None)
    assert all(images.keep() for _ in range(3))


def test_collect_from_a_camera_of_the_config(tmp_path: Path) -> None:
    """--config/--camera: the daemon's own source for that camera, read once, its roi used."""
    config = tmp_path / "camclassd.toml"
    config.write_text(
        f'[cameras.porch]\ntype = "images"\npath = "{SAMPLES}"\ncrop = "roi"\n'
        "roi = [0.0, 0.0, 0.5, 0.5]\n"
    )
    out = tmp_path / "ds"
    done = run_cli(
        "collect", "--config", str(config), "--camera", "porch", "--out", str(out), "--size", "64"
    )
    assert done.returncode == 0, done.stderr
    views = sorted((out / "porch" / "_unlabelled").glob("*.jpg"))
    assert len(views) == len(list(SAMPLES.glob("*.jpg")))  # once each, not looped
    first = cv2.imread(str(views[0]))
    assert first.shape == (64, 64, 3)
    done = run_cli("collect", "--config", str(config), "--camera", "nope", "--out", str(out))
    assert done.returncode == 64 and "porch" in done.stderr


def test_make_room_keeps_the_newest_unlabelled_and_every_labelled(tmp_path: Path) -> None:
    """Automatic collection: the oldest unlabelled examples give way; labelled ones never."""
    root = tmp_path / "ds"
    writer = DatasetWriter(root, Budget(max_files=7, max_bytes=100 * MIB))
    photo = _photo()
    view = cv2.resize(photo, (224, 224))
    writer.save("door", "open", view)  # a labelled example: 1 file
    saved = [writer.save("door", None, view, photo, make_room=True) for _ in range(6)]
    unlabelled = sorted((root / "door" / "_unlabelled").glob("*.jpg"))
    assert [p.name for p in unlabelled] == [s.view.name for s in saved[-3:]]  # the newest 3
    assert sorted(p.name for p in (root / "door" / "_unlabelled" / "_full").glob("*.jpg")) == [
        s.view.name for s in saved[-3:]
    ]
    assert len(_files(root)) == 7 and (root / "door" / "open").exists()
    assert writer.usage() == (7, sum(p.stat().st_size for p in _files(root)))
    with pytest.raises(BudgetReachedError):  # without make_room: refused, nothing deleted
        writer.save("door", None, view)
    full = DatasetWriter(tmp_path / "labelled", Budget(max_files=2, max_bytes=100 * MIB))
    full.save("door", "open", view)
    full.save("door", "open", view)
    with pytest.raises(BudgetReachedError):  # nothing unlabelled to give way
        full.save("door", None, view, make_room=True)


def test_files_deleted_by_hand_free_the_budget(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    writer = DatasetWriter(root, Budget(max_files=2, max_bytes=100 * MIB))
    view = cv2.resize(_photo(), (224, 224))
    first = writer.save("door", None, view)
    writer.save("door", None, view)
    first.view.unlink()  # the user deleted one (moving it out of the dataset is the same)
    writer.save("door", None, view)
    assert len(_files(root)) == 2
