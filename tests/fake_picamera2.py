"""A stand-in for the `picamera2` module, used because the real camera cannot run here.

picamera2 needs Raspberry Pi's libcamera and a camera. This module keeps to the part of
picamera2's documented API that camclassd uses, with the same names and signatures:
`Picamera2(camera_num=0)`, `create_video_configuration(main=..., lores=..., controls=...)`,
`configure(camera_config)`, `start()`, `stream_configuration(name)`, `camera_config`,
`capture_request(wait=None, signal_function=None, flush=None)` (a numeric `wait` is a timeout
that raises TimeoutError, as picamera2's job futures do) returning a request with
`make_array(name)` (a copy of that stream's buffer) and `release()`, `cancel_all_and_flush()`,
`stop()`, `close()`.

Like the real ISP it adjusts the lores size it is given: the width is rounded up to a
multiple of 64 pixels and every row is padded to a stride that is a multiple of 128 bytes.
Frames come out as picamera2 returns YUV420: a (height * 3 / 2, stride) uint8 array holding
the Y plane (rows of `stride` bytes) followed by the U and V planes (rows of `stride / 2`).
Padding bytes are filled with 0xEE so that a converter that forgets them shows it. The main
stream ("RGB888", which picamera2 lays out as B, G, R bytes) shows the same pattern at its own
size, so a test can tell that both streams came from one request. As with the real camera,
a request holds one of the configuration's `buffer_count` buffers until it is released; with
every buffer held no frame comes (capture_request times out).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2
import numpy as np

PAD_BYTE = 0xEE
WIDTH_ALIGN = 64
STRIDE_ALIGN = 128


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def pattern(width: int, height: int, index: int = 0) -> np.ndarray:
    """The RGB picture frame `index` shows: coloured bars and a gradient, shifted per frame."""
    x = np.arange(width, dtype=np.int32)
    y = np.arange(height, dtype=np.int32)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = ((x[None, :] * 255) // max(1, width - 1) + 16 * index) % 256
    rgb[..., 1] = (y[:, None] * 255) // max(1, height - 1)
    rgb[..., 2] = np.where((x[None, :] // 32 + y[:, None] // 32) % 2 == 0, 200, 40)
    return rgb


def to_padded_yuv420(rgb: np.ndarray, stride: int) -> np.ndarray:
    """The (h*3/2, stride) buffer libcamera would hand out for this RGB picture."""
    height, width = rgb.shape[:2]
    packed = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    quarter = (height // 2) * (width // 2)
    planes = (
        packed[: height * width].reshape(height, width),
        packed[height * width : height * width + quarter].reshape(height // 2, width // 2),
        packed[height * width + quarter :].reshape(height // 2, width // 2),
    )
    buffer = np.full(height * 3 // 2 * stride, PAD_BYTE, dtype=np.uint8)
    offset = 0
    for plane, row_bytes in zip(planes, (stride, stride // 2, stride // 2), strict=True):
        rows, cols = plane.shape
        buffer[offset : offset + rows * row_bytes].reshape(rows, row_bytes)[:, :cols] = plane
        offset += rows * row_bytes
    return buffer.reshape(height * 3 // 2, stride)


class Picamera2:
    """One fake camera. Class attributes let a test shape the next instances."""

    # Tests set these to make cameras fail: instances made while > 0 raise at construction.
    fail_opens = 0
    # A camera hangs (capture_request times out) after this many frames; None never.
    stall_after: int | None = None
    instances: list[Picamera2] = []  # noqa: RUF012 - test introspection, reset by the test

    def __init__(
        self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None
    ) -> None:
        if Picamera2.fail_opens > 0:
            Picamera2.fail_opens -= 1
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.frames = 0
        self.cancelled = 0
        self.held = 0  # requests captured and not yet released
        self.main_arrays = 0  # make_array("main") calls: copies of the large stream
        self._lock = threading.Lock()
        Picamera2.instances.append(self)

    def create_video_configuration(  # noqa: PLR0917 - picamera2's own signature
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str | None = None,
    ) -> dict[str, Any]:
        return {
            "use_case": "video",
            "main": {"format": "XBGR8888", "size": (1280, 720), **(main or {})},
            "lores": None if lores is None else {"format": "YUV420", **lores},
            "raw": raw,
            "controls": dict(controls or {}),
            "buffer_count": buffer_count,
            "queue": queue,
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any] | None = None) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config or self.create_video_configuration())
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is None:
                continue
            stream = dict(stream)
            width, height = stream["size"]
            if name == "lores":
                if stream["format"] != "YUV420":
                    raise RuntimeError("stand-in supports only YUV420 lores")
                width = round_up(width, WIDTH_ALIGN)
                stream["stride"] = round_up(width, STRIDE_ALIGN)
                stream["framesize"] = stream["stride"] * height * 3 // 2
            else:
                stream["stride"] = width * 3
            stream["size"] = (width, height)
            config[name] = stream
        self.camera_config = config

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        assert self.camera_config is not None, "not configured"
        stream: dict[str, Any] = self.camera_config[name]
        return stream

    def start(
        self, config: dict[str, Any] | None = None, show_preview: bool | None = False
    ) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_request(
        self, wait: float | bool | None = None, signal_function: Any = None, flush: Any = None
    ) -> CompletedRequest:
        if not self.started or self.camera_config is None:
            raise RuntimeError("Camera not started")
        with self._lock:
            starved = self.held >= int(self.camera_config.get("buffer_count", 6))
            stalled = Picamera2.stall_after is not None and self.frames >= Picamera2.stall_after
            if starved or stalled:
                timeout = wait if isinstance(wait, int | float) and wait is not True else None
                if timeout is None:
                    raise AssertionError("a stalled capture without a timeout would hang forever")
                time.sleep(timeout)
                raise TimeoutError()
            index = self.frames
            self.frames += 1
            self.held += 1
        return CompletedRequest(self, index)

    def cancel_all_and_flush(self) -> None:
        self.cancelled += 1

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        self.closed = True


class CompletedRequest:
    """One request: every configured stream of the same frame, until released."""

    def __init__(self, camera: Picamera2, index: int) -> None:
        self._camera = camera
        self.index = index
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        assert self._camera.camera_config is not None
        stream = self._camera.camera_config[name]
        width, height = stream["size"]
        if name == "lores":
            return to_padded_yuv420(pattern(width, height, self.index), stream["stride"])
        if stream["format"] != "RGB888":
            raise RuntimeError("stand-in supports only RGB888 main")
        with self._camera._lock:
            self._camera.main_arrays += 1
        return np.ascontiguousarray(pattern(width, height, self.index)[..., ::-1])

    def release(self) -> None:
        if not self.released:
            self.released = True
            with self._camera._lock:
                self._camera.held -= 1
