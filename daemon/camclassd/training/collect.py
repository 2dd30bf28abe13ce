"""`camclassd collect --source ... --out DIR`: examples from a source, offline.

Cameras and streams are sampled every `--every` of wall-clock time, video files every
`--every` of video time, image folders image by image. Each saved example is the model's
view (centre crop, model size) and, unless --no-full, the full frame.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from types import MappingProxyType

import cv2

from camclassd.errors import EXIT_OK, InputNotFoundError, UsageError
from camclassd.preprocess import Preprocessor
from camclassd.sources.base import Source
from camclassd.sources.images import ImagesSource
from camclassd.sources.opencv import OpenCVSource, classify_uri
from camclassd.training.writer import MIB, Budget, BudgetReachedError, DatasetWriter

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")
_UNIT = MappingProxyType({"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0})
VIDEO_FPS_FALLBACK = 25.0


def parse_interval(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"--every {text!r} is not a duration: use e.g. 2s, 500ms or 1m")
    return float(match[1]) * _UNIT[match[2]]


def open_offline_source(spec: str) -> tuple[Source, str, float | None]:
    """(source, kind, file fps): an image folder or glob, or anything OpenCV opens."""
    path = Path(spec)
    if path.is_dir() or any(ch in spec for ch in "*?["):
        return ImagesSource("collect", spec, loop=False), "images", None
    kind = classify_uri(spec)
    if kind == "file" and not path.exists():
        raise InputNotFoundError(f"--source {spec}: no such file or folder")
    fps = _file_fps(spec) if kind == "file" else None
    return OpenCVSource("collect", spec, loop=False), kind, fps


def config_source(
    config_path: Path, camera: str | None, size: tuple[int, int]
) -> tuple[Source, str, float | None, Preprocessor]:
    """A camera of the daemon's config (picamera2 included) with its crop and roi."""
    from camclassd.cameras import open_source  # noqa: PLC0415
    from camclassd.configfile import load_config  # noqa: PLC0415 (pydantic: only here)

    config = load_config(config_path)
    names = sorted(config.cameras)
    if camera not in config.cameras:
        raise UsageError(f"--camera: give one of the cameras of {config_path}: {', '.join(names)}")
    settings = config.cameras[camera]
    if hasattr(settings, "loop"):  # a file or folder is read once, not replayed forever
        settings = settings.model_copy(update={"loop": False})
    source = open_source(camera, settings)
    kind = "images" if isinstance(source, ImagesSource) else "live" if source.live else "file"
    fps = None
    if kind == "file" and isinstance(source, OpenCVSource):
        fps = _file_fps(source.uri)
    preprocess = Preprocessor(
        size=size, crop=settings.crop, roi=settings.roi, interpolation=settings.interpolation
    )
    return source, kind, fps, preprocess


def _file_fps(path: str) -> float:
    probe = cv2.VideoCapture(path)
    try:
        return float(probe.get(cv2.CAP_PROP_FPS)) or VIDEO_FPS_FALLBACK
    finally:
        probe.release()


class Sampler:
    """Says which frames to keep: one per interval of wall-clock or video time."""

    def __init__(self, kind: str, interval: float, fps: float | None) -> None:
        self.kind, self.interval, self.fps = kind, interval, fps
        self._index = -1
        self._next: float | None = None

    def keep(self) -> bool:
        self._index += 1
        if self.kind == "images":
            return True
        now = (
            self._index / (self.fps or VIDEO_FPS_FALLBACK)
            if self.kind == "file"
            else (time.monotonic())
        )
        if self._next is None or now >= self._next:
            self._next = now + self.interval
            return True
        return False


def main(args: argparse.Namespace) -> int:
    interval = parse_interval(args.every)
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count must be at least 1, got {args.count}")
    if args.size < 16:
        raise UsageError(f"--size must be at least 16 pixels, got {args.size}")
    budget = Budget(max_files=args.max_files, max_bytes=int(args.max_mib * MIB))
    view_size = (args.size, args.size)
    if (args.source is None) == (args.config is None):
        raise UsageError("give --source (a folder, file, device or URL) or --config and --camera")
    if args.config is not None:
        source, kind, fps, preprocess = config_source(args.config, args.camera, view_size)
        args.camera = source.name
    else:
        source, kind, fps = open_offline_source(args.source)
        preprocess = Preprocessor(size=view_size)
        args.camera = args.camera or "offline"
    writer = DatasetWriter(args.out, budget)
    sampler = Sampler(kind, interval, fps)
    saved = 0
    source.open()
    try:
        while args.count is None or saved < args.count:
            capture = source.read()
            if capture is None:
                break
            if not sampler.keep():
                continue
            frame = capture.pixels
            # The full-size image where the source has one (picamera2's main stream).
            full = None if args.no_full else capture.full_image()
            if full is None and not args.no_full:
                full = frame
            try:
                result = writer.save(args.camera, args.label, preprocess(frame), full)
            except BudgetReachedError as error:
                raise BudgetReachedError(f"stopped after {saved} saved: {error}") from None
            saved += 1
            print(f"saved {result.view}", flush=True)
    finally:
        source.close()
    files, size = writer.usage()
    print(
        f"collected {saved} example(s) into {args.out}/{args.camera}/"
        f"{args.label or '_unlabelled'}; the dataset holds {files} files, {size / MIB:.1f} MiB"
    )
    return EXIT_OK
