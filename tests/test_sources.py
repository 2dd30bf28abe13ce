"""Frame sources on real files: images, a video written here with cv2.VideoWriter, synthetic."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from camclassd.cameras import absolute_paths, open_source
from camclassd.cameras.images import ImagesCamera
from camclassd.cameras.opencv import OpenCVCamera
from camclassd.cameras.synthetic import SyntheticCamera
from camclassd.configfile import resolve_path
from camclassd.errors import SourceError
from camclassd.sources import Backoff, Capture, reopen
from camclassd.sources.images import ImagesSource
from camclassd.sources.opencv import OpenCVSource, classify_uri
from camclassd.sources.synthetic import SyntheticSource
from tests.conftest import SAMPLES

VIDEO_SIZE = (160, 120)


def pixels(capture: Capture | None) -> np.ndarray | None:
    """The model frame of a read; images, video and synthetic sources have no more."""
    if capture is None:
        return None
    assert capture.full_image() is None and capture.luma is None
    return capture.pixels


def rgb_of(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """A 6-frame MJPG AVI of the sample photos, and the RGB frames that went in."""
    path = tmp_path_factory.mktemp("video") / "samples.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, VIDEO_SIZE)
    assert writer.isOpened()
    frames = []
    for photo in sorted(SAMPLES.glob("*.jpg"))[:3] * 2:
        rgb = cv2.resize(rgb_of(photo), VIDEO_SIZE, interpolation=cv2.INTER_AREA)
        frames.append(rgb)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path, frames


# ---- images ----------------------------------------------------------------------------------


def test_images_sorted_looped_and_rgb() -> None:
    photos = sorted(SAMPLES.glob("*.jpg"))
    source = ImagesSource("cam", SAMPLES)
    source.open()
    assert source.files == photos
    got = [pixels(source.read()) for _ in range(len(photos) + 1)]
    for frame, photo in zip(got, [*photos, photos[0]], strict=True):
        assert frame is not None
        np.testing.assert_array_equal(frame, rgb_of(photo))
    source.close()


def test_images_glob_without_loop_ends(tmp_path: Path) -> None:
    for photo in sorted(SAMPLES.glob("*.jpg"))[:2]:
        shutil.copy(photo, tmp_path / photo.name)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    source = ImagesSource("cam", tmp_path / "*.jpg", loop=False)
    source.open()
    frames = [pixels(source.read()) for _ in range(3)]
    assert all(frame is not None for frame in frames[:2])
    assert frames[2] is None  # broken.jpg was skipped, then the end


def test_images_none_found_or_none_readable(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no images found"):
        ImagesSource("cam", tmp_path / "*.jpg").open()
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    source = ImagesSource("cam", tmp_path)
    source.open()
    with pytest.raises(SourceError, match="readable"):
        source.read()


def test_images_fps_pacing() -> None:
    source = ImagesSource("cam", SAMPLES, fps=40.0)
    source.open()
    started = time.monotonic()
    for _ in range(5):
        source.read()
    elapsed = time.monotonic() - started
    assert 0.08 <= elapsed < 1.0  # 4 periods of 25 ms at least


# ---- synthetic -------------------------------------------------------------------------------


def test_synthetic_cycles_premade_frames() -> None:
    source = SyntheticSource("syn", 320, 200)
    source.open()
    frames = [frame for _ in range(8) if (frame := pixels(source.read())) is not None]
    assert len(frames) == 8
    assert all(f.shape == (200, 320, 3) and f.dtype == np.uint8 for f in frames)
    assert frames[0] is frames[2]  # cycled, not regenerated
    assert not np.array_equal(frames[0], frames[1])
    assert not frames[0].flags.writeable  # shared between reads: read-only
    assert source.live


def test_synthetic_paced() -> None:
    source = SyntheticSource("syn", 64, 48, fps=50.0)
    source.open()
    started = time.monotonic()
    for _ in range(6):
        source.read()
    assert time.monotonic() - started >= 0.09


# ---- opencv ----------------------------------------------------------------------------------


def test_classify_uri() -> None:
    assert classify_uri("0") == "device"
    assert classify_uri("/dev/video2") == "device"
    assert classify_uri("rtsp://cam.local/stream") == "stream"
    assert classify_uri("http://cam.local/mjpg") == "stream"
    assert classify_uri("clips/door.mp4") == "file"


def test_opencv_video_file_stops_at_end(video: tuple[Path, list[np.ndarray]]) -> None:
    path, written = video
    source = OpenCVSource("vid", str(path), loop=False)
    assert not source.live
    source.open()
    frames = []
    while (frame := pixels(source.read())) is not None:
        frames.append(frame)
    source.close()
    assert len(frames) == len(written)
    for got, want in zip(frames, written, strict=True):
        assert got.shape == (VIDEO_SIZE[1], VIDEO_SIZE[0], 3)
        # MJPG is lossy; a BGR/RGB swap would be off by far more than this.
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 6


def test_opencv_video_file_loops(video: tuple[Path, list[np.ndarray]]) -> None:
    path, written = video
    source = OpenCVSource("vid", str(path), loop=True)
    source.open()
    frames = [pixels(source.read()) for _ in range(len(written) + 2)]
    source.close()
    assert all(frame is not None for frame in frames)
    first, again = frames[0], frames[len(written)]
    assert first is not None and again is not None
    np.testing.assert_array_equal(first, again)


def test_opencv_missing_file_and_dead_stream(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        OpenCVSource("vid", str(tmp_path / "nope.mp4")).open()
    # Nothing listens on port 9 of localhost: the open fails fast, it does not hang.
    started = time.monotonic()
    source = OpenCVSource("net", "rtsp://127.0.0.1:9/none", read_timeout_s=1.0)
    assert source.live
    with pytest.raises(SourceError, match="cannot open"):
        source.open()
    assert time.monotonic() - started < 10


def test_camera_paths_are_resolved_then_opened(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", tmp_path / "media" / "coffee.jpg")

    def absolute(path: Path) -> Path:
        return resolve_path(tmp_path, path)

    images = absolute_paths(ImagesCamera(path="media/*.jpg"), absolute)
    source = open_source("cam", images)
    source.open()
    assert source.read() is not None
    clip = absolute_paths(OpenCVCamera(uri="media/clip.avi"), absolute)
    video_source = open_source("vid", clip)
    assert isinstance(video_source, OpenCVSource)
    assert video_source.uri == str(tmp_path / "media" / "clip.avi")
    assert isinstance(open_source("syn", SyntheticCamera(width=32, height=16)), SyntheticSource)


# ---- reopen with backoff ---------------------------------------------------------------------


def test_backoff_doubles_up_to_max() -> None:
    backoff = Backoff(min_s=0.5, max_s=3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(min_s=2.0, max_s=1.0)


class FlakyOpen:
    """A real source whose first `failures` opens fail."""

    live = True

    def __init__(self, failures: int) -> None:
        self.name = "flaky"
        self.failures = failures
        self.opens = 0
        self.closes = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.failures:
            raise SourceError("device busy")

    def read(self) -> np.ndarray | None:
        return np.zeros((4, 4, 3), dtype=np.uint8)

    def close(self) -> None:
        self.closes += 1


def test_reopen_retries_until_open(caplog: pytest.LogCaptureFixture) -> None:
    source = FlakyOpen(failures=2)
    retries: list[float] = []
    started = time.monotonic()
    ok = reopen(source, threading.Event(), Backoff(0.01, 0.04), lambda: retries.append(1))
    assert ok and source.opens == 3 and len(retries) == 3
    assert time.monotonic() - started >= 0.01 + 0.02 + 0.04 - 0.005
    assert caplog.text.count("reopen attempt") == 2  # each failure logged


def test_reopen_gives_up_when_stopped() -> None:
    source = FlakyOpen(failures=1000)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert not reopen(source, stop, Backoff(0.02, 10.0))
    assert time.monotonic() - started < 2.0


def test_opencv_errors_never_show_a_stream_password() -> None:
    source = OpenCVSource("net", "rtsp://admin:hunter2@127.0.0.1:9/live", read_timeout_s=1.0)
    with pytest.raises(SourceError) as raised:
        source.open()
    message = str(raised.value)
    assert "hunter2" not in message
    assert "rtsp://admin:***@127.0.0.1:9/live" in message


class BuggyOpen(FlakyOpen):
    """A source whose first opens fail with a bug rather than a SourceError."""

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.failures:
            raise RuntimeError("driver bug")


def test_reopen_survives_unexpected_errors_from_open(caplog: pytest.LogCaptureFixture) -> None:
    source = BuggyOpen(failures=2)
    errors: list[int] = []
    ok = reopen(source, threading.Event(), Backoff(0.01, 0.02), on_error=lambda: errors.append(1))
    assert ok and source.opens == 3
    assert len(errors) == 2  # each one counted
    failures = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(failures) == 2
    assert [bool(r.exc_info) for r in failures] == [True, False]  # one traceback
