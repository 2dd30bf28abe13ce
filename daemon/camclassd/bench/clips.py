"""Test clips made of real photos: a still view, real objects appearing, a lighting step.

Deterministic (seeded per frame, so any frame can be rendered on its own) and made only of
the photos bundled with scikit-image (no download): the background is `coffee()` (a cup on a
table, 'espresso' to the shipped model), the objects are cut from `chelsea()` (the cat) and
`stereo_motorcycle()` (the moped) and pasted over the middle of the view. Every frame gets
sensor-like noise: Gaussian read noise plus shot noise that grows with the signal, drawn
anew per frame and per channel.

    .venv/bin/python scripts/make_clip.py OUT.mp4 [--clip change] [--seconds 10] [--fps 30]

writes a clip as an 'mp4v' video file (the codec the opencv wheel can write), for
`camclassd bench --source OUT.mp4`.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
READ_NOISE = 2.0  # grey levels, sigma
SHOT_NOISE = 0.08  # variance per grey level of signal: sigma ~4.5 at 255
SEED = 20261201

Gain = Callable[[int], float]


@dataclass(frozen=True)
class Appearance:
    """An object shown from frame `start` up to (not including) `end`."""

    name: str  # 'cat' or 'moped'
    start: int
    end: int


@dataclass(frozen=True)
class Clip:
    """A scene, frame by frame: a background, objects, a lighting gain, fresh noise."""

    name: str
    fps: float
    frames: int
    objects: tuple[Appearance, ...] = ()
    gain: Gain = lambda index: 1.0
    step: int | None = None  # the frame a global lighting step shows in
    seed: int = SEED

    @property
    def changes(self) -> tuple[int, ...]:
        """The frames in which a change first shows: an object appears or leaves."""
        marks = {a.start for a in self.objects} | {a.end for a in self.objects}
        return tuple(sorted(m for m in marks if 0 < m < self.frames))

    def render(self, index: int) -> np.ndarray:
        """Frame `index` as RGB uint8 HEIGHTxWIDTHx3."""
        scene = background().astype(np.float32)
        for shown in self.objects:
            if shown.start <= index < shown.end:
                patch, (x, y) = cutout(shown.name)
                scene[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
        scene *= self.gain(index)
        rng = np.random.default_rng((self.seed, index))
        sigma = np.sqrt(READ_NOISE**2 + SHOT_NOISE * np.clip(scene, 0, 255))
        scene += rng.standard_normal(scene.shape, dtype=np.float32) * sigma
        return np.clip(scene, 0, 255).astype(np.uint8)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.render(index) for index in range(self.frames))


def still(fps: float = 10.0, seconds: float = 60.0) -> Clip:
    """Nothing moves; the light drifts down by 8% over a minute (clouds, dusk)."""
    frames = round(fps * seconds)
    return Clip("still", fps, frames, gain=lambda index: 1.0 - 0.08 * index / (fps * 60.0))


def change(fps: float = 10.0, seconds: float = 30.0) -> Clip:
    """A cat comes and goes, then a moped: four changes, each held for seconds."""
    frames = round(fps * seconds)
    at = functools.partial(_at, frames)
    objects = (Appearance("cat", at(0.2), at(0.43)), Appearance("moped", at(0.63), at(0.87)))
    return Clip("change", fps, frames, objects=objects)


def lighting_step(fps: float = 10.0, seconds: float = 20.0) -> Clip:
    """The light drops to 55% at once, then auto-exposure brings it back to 85% in 5 frames."""
    frames = round(fps * seconds)
    step = _at(frames, 0.25)

    def gain(index: int) -> float:
        if index < step:
            return 1.0
        return 0.55 + 0.3 * min(index - step, 5) / 5

    return Clip("lighting step", fps, frames, gain=gain, step=step)


def noise_only(fps: float = 10.0, seconds: float = 30.0) -> Clip:
    """The same view with fresh sensor noise per frame, nothing else."""
    return Clip("noise only", fps, round(fps * seconds))


def _at(frames: int, fraction: float) -> int:
    return round(frames * fraction)


@functools.cache
def background() -> np.ndarray:
    """skimage's coffee() scaled to cover WIDTHxHEIGHT, centre cut (read-only, RGB)."""
    return _cover(_photo("coffee"), WIDTH, HEIGHT)


@functools.cache
def cutout(name: str) -> tuple[np.ndarray, tuple[int, int]]:
    """A real object cut from another photo, and where its top-left corner goes."""
    if name == "cat":
        photo, box = _photo("chelsea"), (75, 0, 375, 300)  # x1, y1, x2, y2: the cat
    elif name == "moped":
        photo, box = _photo("stereo_motorcycle"), (120, 0, 620, 500)
    else:
        raise ValueError(f"no object {name!r}: 'cat' or 'moped'")
    x1, y1, x2, y2 = box
    part = photo[y1:y2, x1:x2]
    # Covers the middle 90% of the centre square the model sees.
    side = int(HEIGHT * 0.9)
    scale = side / max(part.shape[:2])
    size = (round(part.shape[1] * scale), round(part.shape[0] * scale))
    patch = cv2.resize(part, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    patch.flags.writeable = False
    return patch, ((WIDTH - size[0]) // 2, (HEIGHT - size[1]) // 2)


def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data  # noqa: PLC0415 (a dev dependency: only the clips need it)
    except ImportError:
        raise RuntimeError(
            "the test clips are made of scikit-image's photos: pip install scikit-image"
        ) from None
    image = getattr(skimage.data, name)()
    return np.asarray(image[0] if isinstance(image, tuple) else image)


def _cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = max(width / image.shape[1], height / image.shape[0])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    x, y = (size[0] - width) // 2, (size[1] - height) // 2
    out = np.ascontiguousarray(scaled[y : y + height, x : x + width])
    out.flags.writeable = False
    return out


CLIPS = MappingProxyType(
    {"still": still, "change": change, "lighting_step": lighting_step, "noise": noise_only}
)


def write_video(clip: Clip, path: Path) -> int:
    """Write `clip` as an 'mp4v' video file; returns the frames written."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), clip.fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (mp4v)")
    try:
        for frame in clip:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return clip.frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/make_clip.py", description=__doc__)
    parser.add_argument("out", type=Path, help="the video file to write (.mp4)")
    parser.add_argument("--clip", choices=sorted(CLIPS), default="change")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    clip = CLIPS[args.clip](fps=args.fps, seconds=args.seconds)
    frames = write_video(clip, args.out)
    print(f"{args.out}: {frames} frames, {WIDTH}x{HEIGHT} at {args.fps:g} fps ({clip.name})")
    return 0
