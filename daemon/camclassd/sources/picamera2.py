"""Raspberry Pi cameras through picamera2: inference reads the lores YUV420 stream, snapshots
the main stream of the same request (made only when one is taken).

picamera2 exists only on a Pi (it needs Raspberry Pi's libcamera), so it is imported when a
camera is opened, never at module import.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import cv2
import numpy as np

from camclassd.errors import SourceError
from camclassd.sources.base import Capture

log = logging.getLogger(__name__)

NOT_INSTALLED = (
    "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` "
    "and create the venv with `--system-site-packages`"
)


def yuv420_to_rgb(buffer: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """RGB (height, width, 3) from an I420 buffer whose rows are `stride` bytes long.

    libcamera pads every Y row to `stride` and every U and V row to `stride / 2`, so the
    padding is cut plane by plane (cutting columns of the (h*3/2, stride) view would be wrong
    for the chroma rows) into one packed I420 image, which OpenCV converts in one pass.
    """
    if width % 2 or height % 2 or stride % 2 or stride < width:
        raise ValueError(f"bad YUV420 geometry: {width}x{height}, stride {stride}")
    flat = np.ascontiguousarray(buffer).reshape(-1)
    half_stride, half_w, half_h = stride // 2, width // 2, height // 2
    y_end = height * stride
    u_end = y_end + half_h * half_stride
    v_end = u_end + half_h * half_stride
    if flat.size < v_end:
        raise ValueError(f"YUV420 buffer of {flat.size} bytes is short of {v_end}")
    luma = flat[:y_end].reshape(height, stride)[:, :width]
    u = flat[y_end:u_end].reshape(half_h, half_stride)[:, :half_w]
    v = flat[u_end:v_end].reshape(half_h, half_stride)[:, :half_w]
    packed = np.empty(height * width * 3 // 2, dtype=np.uint8)
    quarter = half_h * half_w
    packed[: height * width].reshape(height, width)[...] = luma
    packed[height * width : height * width + quarter].reshape(half_h, half_w)[...] = u
    packed[height * width + quarter :].reshape(half_h, half_w)[...] = v
    return cv2.cvtColor(packed.reshape(height * 3 // 2, width), cv2.COLOR_YUV2RGB_I420)


class Picamera2Source:
    """A Pi camera opened once: main stream (for snapshots) plus a lores YUV420 stream.

    Each read takes one request (`capture_request()`), so the lores frame, its Y plane and the
    main image are the same moment. The lores frame is copied out at once; the request is
    held until the next read (one of the camera's buffers), so that the main image is copied
    only for the frames that need it (`Capture.full_image`). A read
    waits at most `capture_timeout_s` (picamera2's job `wait=` timeout): a capture that would
    hang raises SourceError, so the pipeline reopens the camera and the watchdog sees the
    stall instead of a silent freeze.
    """

    live = True

    def __init__(
        self,
        name: str,
        *,
        camera_num: int = 0,
        resolution: tuple[int, int] = (1280, 720),
        lores: tuple[int, int] = (320, 240),
        fps: float = 10.0,
        scaler_crop: tuple[int, int, int, int] | None = None,
        capture_timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self._camera_num = camera_num
        self._resolution = resolution
        # The ISP wants even sizes; it may round the width further, read back after configure.
        self._lores = (lores[0] - lores[0] % 2, lores[1] - lores[1] % 2)
        self._fps = fps
        self._scaler_crop = scaler_crop
        self._timeout = capture_timeout_s
        self._camera: Any = None
        self._held: Any = None  # the last read's request, released by the next read or close
        self.lores_size: tuple[int, int] = self._lores
        self.lores_stride = self._lores[0]

    def open(self) -> None:
        self.close()
        try:
            module = importlib.import_module("picamera2")
        except ImportError as error:
            raise SourceError(NOT_INSTALLED) from error
        if self._lores[0] > self._resolution[0] or self._lores[1] > self._resolution[1]:
            raise SourceError(
                f"camera {self.name}: lores {self._lores} must not exceed resolution "
                f"{self._resolution}"
            )
        controls: dict[str, Any] = {"FrameRate": self._fps}
        if self._scaler_crop is not None:
            controls["ScalerCrop"] = tuple(self._scaler_crop)
        camera: Any = None
        try:
            camera = module.Picamera2(self._camera_num)
            config = camera.create_video_configuration(
                main={"size": tuple(self._resolution), "format": "RGB888"},
                lores={"size": self._lores, "format": "YUV420"},
                controls=controls,
            )
            camera.configure(config)
            lores = camera.stream_configuration("lores")
            self.lores_size = (int(lores["size"][0]), int(lores["size"][1]))
            self.lores_stride = int(lores["stride"])
            camera.start()
        except Exception as error:  # picamera2 raises RuntimeError, IndexError, OSError...
            if camera is not None:
                _shut(camera)
            raise SourceError(
                f"camera {self.name}: picamera2 camera {self._camera_num}: {error}"
            ) from error
        if self.lores_size != self._lores:
            log.info(
                "camera %s: lores stream is %dx%d (asked %dx%d)",
                self.name,
                *self.lores_size,
                *self._lores,
            )
        self._camera = camera

    def read(self) -> Capture | None:
        camera = self._camera
        if camera is None:
            raise SourceError(f"camera {self.name}: read before open")
        self._release_held()
        try:
            request = camera.capture_request(wait=self._timeout)
        except TimeoutError as error:
            # The timed-out job stays queued in picamera2; drop it before reopening.
            camera.cancel_all_and_flush()
            raise SourceError(f"camera {self.name}: no frame within {self._timeout:g} s") from error
        except Exception as error:
            raise SourceError(f"camera {self.name}: capture failed: {error}") from error
        try:
            buffer = request.make_array("lores")  # a copy out of the request's buffer
        except Exception as error:
            request.release()
            raise SourceError(f"camera {self.name}: capture failed: {error}") from error
        self._held = request
        width, height = self.lores_size
        pixels = yuv420_to_rgb(buffer, width, height, self.lores_stride)
        luma = np.asarray(buffer).reshape(-1)[: height * self.lores_stride]
        luma = luma.reshape(height, self.lores_stride)[:, :width]
        luma.flags.writeable = False
        return Capture(pixels, luma=luma, make_full=lambda: self._main_image(request))

    def _main_image(self, request: Any) -> np.ndarray:
        if request is not self._held:
            raise SourceError(f"camera {self.name}: that frame's request went back to the camera")
        try:
            main = request.make_array("main")
        except Exception as error:
            raise SourceError(f"camera {self.name}: main stream: {error}") from error
        # picamera2's "RGB888" is B, G, R in memory.
        rgb: np.ndarray = cv2.cvtColor(main, cv2.COLOR_BGR2RGB)
        return rgb

    def _release_held(self) -> None:
        request, self._held = self._held, None
        if request is not None:
            try:
                request.release()
            except Exception:  # a camera that failed may refuse; it is reopened anyway
                log.debug("picamera2 request release failed", exc_info=True)

    def close(self) -> None:
        self._release_held()
        if self._camera is not None:
            camera, self._camera = self._camera, None
            _shut(camera)


def _shut(camera: Any) -> None:
    for step in ("stop", "close"):
        try:
            getattr(camera, step)()
        except Exception:  # closing a failed camera must not hide the original error
            log.debug("picamera2 %s failed", step, exc_info=True)
