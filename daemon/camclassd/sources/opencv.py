"""OpenCV capture: USB/V4L2 cameras, video files and RTSP/HTTP streams."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2

from camclassd.errors import SourceError
from camclassd.redact import mask_uri
from camclassd.sources.base import Capture
from camclassd.sources.pacing import Pacer
from camclassd.sources.uri import classify_uri, device_index

__all__ = ["OpenCVSource", "classify_uri"]

log = logging.getLogger(__name__)


class OpenCVSource:
    """One cv2.VideoCapture, opened once and reopened by the pipeline after a failure.

    Devices and streams are live. A video file is not (every frame is classified) and either
    loops or ends. Stream reads carry open/read timeouts, so a camera that drops off the
    network raises SourceError after `read_timeout_s` instead of blocking for 30 s or forever.
    """

    def __init__(
        self,
        name: str,
        uri: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        loop: bool = True,
        rtsp_transport: str = "tcp",
        read_timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self.uri = uri
        self._shown_uri = mask_uri(uri)  # for messages: an RTSP URL may carry a password
        self.kind = classify_uri(uri)
        self.live = self.kind != "file"
        self._width = width
        self._height = height
        self._fps = fps
        self._loop = loop
        self._rtsp_transport = rtsp_transport
        self._timeout_ms = max(1, round(read_timeout_s * 1000))
        self._capture: cv2.VideoCapture | None = None
        # A file plays at `fps` when given; devices and streams pace themselves.
        self._pacer = Pacer(fps if self.kind == "file" else None)

    def open(self) -> None:
        self.close()
        capture = self._make_capture()
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"camera {self.name}: cannot open {self._shown_uri}")
        self._capture = capture
        self._pacer = Pacer(self._fps if self.kind == "file" else None)

    def _make_capture(self) -> cv2.VideoCapture:
        if self.kind == "device":
            capture = cv2.VideoCapture(device_index(self.uri), cv2.CAP_V4L2)
            if self._width:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, self._width)
            if self._height:
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self._height)
            if self._fps:
                capture.set(cv2.CAP_PROP_FPS, self._fps)
            # Keep at most one stale frame in the driver: we want the newest.
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            # Where the backend supports it, a USB camera that stops sending cannot block a
            # read for longer than the timeout either (ignored otherwise).
            capture.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._timeout_ms)
            return capture
        if self.kind == "stream":
            # FFmpeg reads its options from the environment at open time only.
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{self._rtsp_transport}"
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self._timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self._timeout_ms,
            ]
            return cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)
        if not Path(self.uri).is_file():
            raise SourceError(f"camera {self.name}: video file {self.uri} does not exist")
        return cv2.VideoCapture(self.uri)

    def read(self) -> Capture | None:
        capture = self._capture
        if capture is None:
            raise SourceError(f"camera {self.name}: read before open")
        ok, bgr = capture.read()
        if not ok and self.kind == "file":
            if not self._loop:
                return None
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = capture.read()
        if not ok or bgr is None:
            raise SourceError(
                f"camera {self.name}: no frame from {self._shown_uri} (ended, stalled or lost)"
            )
        self._pacer.wait()
        return Capture(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
