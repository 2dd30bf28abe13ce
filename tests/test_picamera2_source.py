"""The picamera2 source against a stand-in module (tests/fake_picamera2.py).

The real picamera2 cannot run here (it needs Raspberry Pi's libcamera and a camera), so the
stand-in follows picamera2's documented API and produces what a Pi produces: YUV420 lores
frames whose width the ISP rounded up and whose rows carry stride padding. It is put into
sys.modules for these tests only.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from camclassd.cameras import open_source
from camclassd.cameras.picamera2 import Picamera2Camera
from camclassd.config import Config
from camclassd.engine import Engine
from camclassd.errors import SourceError
from camclassd.metrics import Metrics
from camclassd.pipeline import Pipeline
from camclassd.sources.picamera2 import NOT_INSTALLED, Picamera2Source, yuv420_to_rgb
from tests import fake_picamera2
from tests.conftest import LABELS, UINT8_MODEL
from tests.test_pipeline import Collect


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[fake_picamera2.Picamera2]]:
    camera = fake_picamera2.Picamera2
    monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2)
    monkeypatch.setattr(camera, "fail_opens", 0)
    monkeypatch.setattr(camera, "stall_after", None)
    monkeypatch.setattr(camera, "instances", [])
    yield camera


def expected_rgb(width: int, height: int, index: int) -> np.ndarray:
    """What a correct converter yields: the pattern through an unpadded I420 round trip."""
    rgb = fake_picamera2.pattern(width, height, index)
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)


def test_missing_picamera2_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    source = Picamera2Source("pi")
    with pytest.raises(SourceError) as error:
        source.open()
    assert str(error.value) == NOT_INSTALLED
    assert "sudo apt install python3-picamera2" in str(error.value)
    assert "--system-site-packages" in str(error.value)


def test_configures_main_lores_and_controls(fake: type[fake_picamera2.Picamera2]) -> None:
    config = Picamera2Camera(
        resolution=(1920, 1080), lores=(300, 224), fps=15, scaler_crop=(100, 50, 1600, 900)
    )
    source = open_source("pi", config)
    source.open()
    try:
        camera = fake.instances[-1]
        assert camera.started
        assert camera.camera_config is not None
        assert camera.camera_config["main"]["size"] == (1920, 1080)
        assert camera.camera_config["main"]["format"] == "RGB888"
        assert camera.camera_config["lores"]["format"] == "YUV420"
        assert camera.camera_config["controls"] == {
            "FrameRate": 15.0,
            "ScalerCrop": (100, 50, 1600, 900),
        }
    finally:
        source.close()
    assert camera.closed and not camera.started


def test_lores_with_rounded_width_and_stride_padding_converts_exactly(
    fake: type[fake_picamera2.Picamera2],
) -> None:
    source = Picamera2Source("pi", lores=(300, 224), resolution=(640, 480))
    source.open()
    try:
        # The stand-in ISP rounded 300 up to 320 and pads rows to 384 bytes.
        assert source.lores_size == (320, 224)
        assert source.lores_stride == 384
        for index in range(3):
            capture = source.read()
            assert capture is not None
            frame = capture.pixels
            assert frame.shape == (224, 320, 3) and frame.dtype == np.uint8
            np.testing.assert_array_equal(frame, expected_rgb(320, 224, index))
    finally:
        source.close()


def test_one_request_gives_the_lores_frame_its_y_plane_and_the_main_image(
    fake: type[fake_picamera2.Picamera2],
) -> None:
    source = Picamera2Source("pi", lores=(300, 224), resolution=(640, 480))
    source.open()
    try:
        camera = fake.instances[-1]
        for index in range(2):
            capture = source.read()
            assert capture is not None
            assert camera.held == 1  # this frame's request; the one before went back
            # The main stream of the same request, as RGB (picamera2's RGB888 is B, G, R).
            full = capture.full_image()
            assert full is not None and full.flags.c_contiguous
            np.testing.assert_array_equal(full, fake_picamera2.pattern(640, 480, index))
            # The Y plane as the ISP wrote it: no padding, no conversion, read-only.
            assert capture.luma is not None
            luma = cv2.cvtColor(fake_picamera2.pattern(320, 224, index), cv2.COLOR_RGB2YUV_I420)
            np.testing.assert_array_equal(capture.luma, luma[:224])
            assert not capture.luma.flags.writeable
    finally:
        source.close()
    assert camera.held == 0


def test_the_main_stream_is_copied_only_for_frames_that_ask_for_it(
    fake: type[fake_picamera2.Picamera2],
) -> None:
    """Many more reads than the camera has buffers, one main image: every request went back,
    and the 1280x720 copy was made once. A frame's main image is gone after the next read."""
    source = Picamera2Source("pi", capture_timeout_s=0.2)
    source.open()
    try:
        camera = fake.instances[-1]
        captures = [source.read() for _ in range(20)]  # the stand-in has 6 buffers
        assert all(capture is not None for capture in captures)
        last = captures[-1]
        assert last is not None and last.full_image() is not None
        assert camera.main_arrays == 1
        earlier = captures[-2]
        assert earlier is not None
        with pytest.raises(SourceError, match="went back to the camera"):
            earlier.full_image()
    finally:
        source.close()
    assert camera.held == 0


def test_naive_column_crop_would_be_wrong() -> None:
    """Guards the test itself: cutting the padding off the (h*3/2, stride) view in one go
    garbles the chroma planes, so the exact comparison above does detect a careless converter."""
    width, height, stride = 320, 224, 384
    buffer = fake_picamera2.to_padded_yuv420(fake_picamera2.pattern(width, height), stride)
    naive = cv2.cvtColor(np.ascontiguousarray(buffer[:, :width]), cv2.COLOR_YUV2RGB_I420)
    right = yuv420_to_rgb(buffer, width, height, stride)
    assert not np.array_equal(naive, right)
    np.testing.assert_array_equal(right, expected_rgb(width, height, 0))


def test_yuv420_without_padding() -> None:
    rgb = fake_picamera2.pattern(64, 48, 2)
    buffer = fake_picamera2.to_padded_yuv420(rgb, 64)
    np.testing.assert_array_equal(yuv420_to_rgb(buffer, 64, 48, 64), expected_rgb(64, 48, 2))
    # A flat buffer (capture_buffer) works the same.
    np.testing.assert_array_equal(
        yuv420_to_rgb(buffer.reshape(-1), 64, 48, 64), expected_rgb(64, 48, 2)
    )
    with pytest.raises(ValueError):
        yuv420_to_rgb(buffer[:10], 64, 48, 64)


def test_stalled_capture_times_out_instead_of_hanging(
    fake: type[fake_picamera2.Picamera2],
) -> None:
    fake.stall_after = 1
    source = Picamera2Source("pi", capture_timeout_s=0.05)
    source.open()
    try:
        assert source.read() is not None
        with pytest.raises(SourceError, match="no frame within"):
            source.read()
        assert fake.instances[-1].cancelled == 1  # the timed-out job was flushed
    finally:
        source.close()


def test_open_failure_is_a_source_error(fake: type[fake_picamera2.Picamera2]) -> None:
    fake.fail_opens = 1
    with pytest.raises(SourceError, match="did not complete"):
        Picamera2Source("pi").open()
    with pytest.raises(SourceError, match="must not exceed"):
        Picamera2Source("pi", resolution=(320, 240), lores=(640, 480)).open()


def test_pipeline_reopens_a_stalled_pi_camera(fake: type[fake_picamera2.Picamera2]) -> None:
    fake.stall_after = 3
    config = Config.model_validate(
        {
            "cameras": {
                "pi": {"type": "picamera2", "lores": [224, 224], "capture_timeout_s": 0.05}
            },
            "pipeline": {"stable_frames": 1},
        }
    )
    metrics = Metrics(window=50)
    sink = Collect()
    pipeline = Pipeline(
        config,
        lambda: Engine(UINT8_MODEL, LABELS, num_threads=1),
        [sink],
        metrics,
        Path("."),
        reconnect_min_s=0.01,
        reconnect_max_s=0.02,
    )
    pipeline.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            if metrics.counters()["reconnects"] >= 1 and len(fake.instances) >= 2:
                break
            deadline.wait(0.05)
        # Reopened: a fresh camera object classifies frames again.
        for _ in range(100):
            if metrics.counters()["classified"] >= 4:
                break
            deadline.wait(0.05)
    finally:
        assert pipeline.stop(5.0)
    counters = metrics.counters()
    assert counters["reconnects"] >= 1
    assert counters["classified"] >= 4
    assert len(fake.instances) >= 2
    assert all(camera.closed for camera in fake.instances)


def test_a_pi_camera_snapshot_is_the_main_stream_copied_once(
    fake: type[fake_picamera2.Picamera2],
) -> None:
    """In the pipeline: the snapshot is the 1280x720 main image of a classified frame, and
    that is the one main-stream copy made while many frames were classified."""
    config = Config.model_validate(
        {
            "cameras": {"pi": {"type": "picamera2", "lores": [224, 224], "fps": 30}},
            "pipeline": {"stable_frames": 1},
        }
    )
    metrics = Metrics(window=50)
    sink = Collect()
    pipeline = Pipeline(
        config, lambda: Engine(UINT8_MODEL, LABELS, num_threads=1), [sink], metrics, Path(".")
    )
    pipeline.start()
    wait = threading.Event()
    try:
        for _ in range(200):
            if metrics.counters()["classified"] >= 3:
                break
            wait.wait(0.05)
        pipeline.request_snapshot("pi")
        for _ in range(200):
            if sink.snapshots and metrics.counters()["classified"] >= 10:
                break
            wait.wait(0.05)
    finally:
        assert pipeline.stop(5.0)
    assert metrics.counters()["classified"] >= 10
    (snapshot,) = sink.snapshots
    assert snapshot.image.shape == (720, 1280, 3)
    camera = fake.instances[-1]
    assert camera.main_arrays == 1
    assert camera.held == 0
