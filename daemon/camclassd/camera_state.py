"""One camera's running parts, and what the pipeline keeps per camera.

The pipeline's flow stays in pipeline.py; this is how each camera's pieces are put together:
its source, the preprocessor, its stage (the scene gate), its result processor, snapshot and
collect policies, the queue of its model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from camclassd.collect import CollectPolicy
from camclassd.config import CameraConfig, Config
from camclassd.gate import stage_for
from camclassd.preprocess import Preprocessor
from camclassd.queues import FrameQueues
from camclassd.results import LabelTracker, PublishPolicy, ResultProcessor
from camclassd.snapshots import SnapshotPolicy
from camclassd.sources import Capture, Source
from camclassd.stage import Stage

ModelFiles = tuple[Path, Path]  # a camera's own model and labels


def own_model(camera: CameraConfig) -> ModelFiles | None:
    """The camera's own model and labels (labels default to MODEL.txt beside it), or None
    for the config's `[model]`."""
    if camera.model is None:
        return None
    return camera.model, camera.labels or camera.model.with_suffix(".txt")


class InferenceEngine(Protocol):
    """What the pipeline needs of `camclassd.engine.Engine`."""

    name: str
    input_size: tuple[int, int]
    labels: list[str]

    def to_input(self, pixels: np.ndarray) -> np.ndarray: ...

    def infer(self, batch: np.ndarray) -> np.ndarray: ...


def scene_gate(_name: str, camera: CameraConfig) -> Stage:
    """The camera's `[gate]`: a SceneGate, or PassThrough where it is off (by default, off
    for sources that are not live cameras: images, files, synthetic frames)."""
    return stage_for(camera)


def make_camera(
    name: str,
    camera: CameraConfig,
    config: Config,
    *,
    engine: InferenceEngine,
    queues: FrameQueues,
    source: Source,
    stage: Stage,
    first_seq: int,
) -> CameraState:
    """One camera's running parts, from its settings and its model's engine."""
    settings = config.pipeline
    policy = settings.drop_policy
    snapshot_interval = config.mqtt.snapshot_interval_s if config.mqtt.enabled else 0
    return CameraState(
        name=name,
        source=source,
        preprocess=Preprocessor(
            size=engine.input_size,
            crop=camera.crop,
            roi=camera.roi,
            interpolation=camera.interpolation,
        ),
        stage=stage,
        drop_oldest=source.live if policy == "auto" else policy == "drop_oldest",
        results=ResultProcessor(
            engine.labels,
            top=config.model.top_k,
            min_score=settings.min_score,
            tracker=LabelTracker(
                settings.threshold_high, settings.threshold_low, settings.stable_frames
            ),
            policy=PublishPolicy(settings.publish, settings.max_rate_hz),
        ),
        snapshots=SnapshotPolicy(snapshot_interval),
        collect=CollectPolicy(),
        queues=queues,
        seq=first_seq,
    )


@dataclass(eq=False)
class CameraState:
    """What the pipeline keeps per camera: its source, its stages and policies, its queue,
    and where it stands (seq, liveness)."""

    name: str
    source: Source
    preprocess: Preprocessor
    stage: Stage
    drop_oldest: bool
    results: ResultProcessor
    snapshots: SnapshotPolicy
    collect: CollectPolicy
    queues: FrameQueues  # its model's: shared by the cameras on that model
    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: int = 0
    opened: bool = False
    ended: bool = False
    last_alive: float = 0.0  # monotonic: the newest frame skipped by the stage or classified


def luma_crop(preprocess: Preprocessor, capture: Capture) -> tuple[int, int, int, int]:
    """The camera's crop/ROI in the luma plane's coordinates, as (x, y, width, height)."""
    assert capture.luma is not None
    height, width = capture.pixels.shape[:2]
    luma_h, luma_w = capture.luma.shape[:2]
    x1, y1, x2, y2 = preprocess.crop_box(width, height)
    sx, sy = luma_w / width, luma_h / height
    left, top = round(x1 * sx), round(y1 * sy)
    return (left, top, max(1, round(x2 * sx) - left), max(1, round(y2 * sy) - top))
