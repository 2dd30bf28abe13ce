"""The streaming pipeline, top-down: capture -> stage -> queue -> engine -> results -> fan-out.

    capture thread per camera            FrameQueues             inference workers      fan-out
    Source.read() -> Preprocessor  ->  bounded deque per  ->  take 1..batch_size  ->  own thread:
    -> Stage.admit (classify/skip)     camera, one cond       Engine.infer(batch)     every Sink
    -> SnapshotPolicy.claim            (drop_oldest|block)    ResultProcessor         (bounded,
    stamp seq + times                                         (top-k, tracker,         drops
                                                               publish policy)         counted)

Why per-camera queues behind one condition: drop_oldest must evict the oldest frame of
*that* camera (one busy camera must not push out another camera's only frame), while the
workers should still wait on one thing and batch across cameras. Taking round-robin keeps
the cameras fair when inference is the bottleneck.

Threads, not processes: invoke() and OpenCV release the GIL. Each worker owns its engine
(a TFLite interpreter is not thread-safe). Every frame carries monotonic stamps per stage;
`Frame.latencies_ms()` turns them into the figures the payloads and Metrics use. Data flows
down only: nothing here calls back into the daemon or the sinks' owners.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from camclassd.cameras import open_source
from camclassd.config import CameraConfig, Config
from camclassd.errors import SourceError
from camclassd.frame import Frame
from camclassd.gate import make_stage
from camclassd.gate_config import camera_is_live
from camclassd.metrics import Metrics
from camclassd.preprocess import Preprocessor
from camclassd.results import Classification, LabelTracker, PublishPolicy, ResultProcessor
from camclassd.sinks import CLOSE_GRACE_S, FanOut, Sink
from camclassd.snapshots import Snapshot, SnapshotPolicy
from camclassd.sources import Backoff, Capture, Source, reopen
from camclassd.sources.base import describe
from camclassd.stage import Stage, StageInput

log = logging.getLogger(__name__)

SourceFactory = Callable[[str, CameraConfig], Source]
StageFactory = Callable[[str, CameraConfig], Stage]
SINK_QUEUE = 64  # results and snapshots waiting for the sinks, all cameras together


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
    return make_stage(camera.gate, camera_is_live(camera.type, getattr(camera, "uri", None)))


class Pipeline:
    """Runs every enabled camera of a Config through shared inference workers into sinks."""

    def __init__(
        self,
        config: Config,
        engine_factory: Callable[[], InferenceEngine],
        sinks: Sequence[Sink],
        metrics: Metrics,
        config_dir: Path,
        *,
        source_factory: SourceFactory = open_source,
        stage_factory: StageFactory = scene_gate,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        first_seq: Mapping[str, int] | None = None,
    ) -> None:
        self.config = config
        # Sequence numbers carry on across a reload, so a subscriber can still spot gaps.
        self._first_seq = dict(first_seq or {})
        self.metrics = metrics
        self.finished = threading.Event()
        # Cameras whose capture thread died of a bug (not an end of stream): see `failed`.
        self._crashed: list[str] = []
        self._engine_factory = engine_factory
        self._sinks = tuple(sinks)  # owned by the caller: never closed here
        self._fanout: FanOut | None = None
        del config_dir  # still accepted: the loaded Config's paths are already absolute
        self._source_factory = source_factory
        self._stage_factory = stage_factory
        self._backoff = (reconnect_min_s, reconnect_max_s)
        self._cameras: dict[str, _Camera] = {}
        self._queues = FrameQueues()
        self._stopping = threading.Event()  # sources stop; workers drain what is queued
        self._abort = threading.Event()  # past the stop deadline: discard instead of draining
        self._paused = threading.Event()
        self._captures: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._captures_running = 0
        self._workers_running = 0
        self._busy_since: dict[int, float] = {}  # worker index -> when its batch was taken
        self.labels: tuple[str, ...] = ()  # the model's, once started

    # ==== lifecycle =============================================================================

    def start(self) -> None:
        """Load one engine per worker, open the cameras, start the threads.

        Raises ModelError when the model cannot load and SourceError when no camera opens
        (a camera that fails alone is retried in its thread), so `run` exits 69 at once.
        """
        settings = self.config.pipeline
        engines = [self._engine_factory() for _ in range(settings.workers)]
        self.labels = tuple(engines[0].labels)
        self._cameras = {
            name: self._make_camera(name, camera, engines[0])
            for name, camera in self.config.cameras.items()
            if camera.enabled
        }
        failures = [self._first_open(camera) for camera in self._cameras.values()]
        if all(failures):
            for camera in self._cameras.values():
                camera.source.close()
            raise SourceError("no camera could be opened: " + "; ".join(filter(None, failures)))
        started = time.monotonic()
        for camera in self._cameras.values():
            camera.last_alive = started
            self._queues.add(camera.name, settings.queue_size)
        self._fanout = FanOut(
            self._sinks,
            capacity=SINK_QUEUE,
            on_published=self.metrics.published,
            on_drop=lambda camera: self.metrics.dropped(camera, "sink_full"),
            on_error=self.metrics.error,
        )
        self._captures_running = len(self._cameras)
        self._workers_running = len(engines)
        for camera in self._cameras.values():
            self._captures.append(self._spawn(f"capture-{camera.name}", self._capture, camera))
        for index, engine in enumerate(engines):
            self._workers.append(self._spawn(f"infer-{index}", self._infer, index, engine))

    def stop(self, timeout: float) -> bool:
        """Stop the sources, classify and deliver what is in flight, join every thread by the
        deadline. Returns True when every thread joined in time. Frames still queued at the
        deadline are discarded and counted as dropped ("shutdown")."""
        deadline = time.monotonic() + timeout
        self._stopping.set()  # `paused` is kept: a reload carries it over to the next pipeline
        self._queues.close()  # wakes producers blocked on a full queue; workers drain, then end
        for thread in self._captures + self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._workers):
            self._abort.set()
        for camera, frames in self._queues.discard().items():
            self.metrics.dropped(camera, "shutdown", frames)
        sinks_done = self._fanout is None or self._fanout.close(
            max(0.0, deadline - time.monotonic() - CLOSE_GRACE_S)
        )
        self.finished.set()
        stuck = [thread.name for thread in self._captures + self._workers if thread.is_alive()]
        if not sinks_done:
            stuck.append("camclassd-sinks")
        if stuck:
            log.warning("threads still running after %.1f s: %s", timeout, ", ".join(stuck))
        return not stuck

    def pause(self) -> None:
        """Stop classifying; cameras stay open (live ones keep being read and discarded)."""
        self._paused.set()

    def resume(self) -> None:
        # The pause was not a stall: the watchdog clock restarts now.
        now = time.monotonic()
        for camera in self._cameras.values():
            camera.last_alive = max(camera.last_alive, now)
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self._cameras)

    @property
    def gated_cameras(self) -> tuple[str, ...]:
        """The cameras whose stage may skip frames (the scene gate is on)."""
        return tuple(name for name, camera in self._cameras.items() if camera.stage.name != "none")

    def request_snapshot(self, camera: str | None) -> None:
        """The next frame of `camera` (of every camera for None) becomes a snapshot."""
        if camera is not None and camera not in self._cameras:
            raise ValueError(f"unknown camera {camera!r}; cameras: {', '.join(self._cameras)}")
        for state in self._cameras.values():
            if camera is None or state.name == camera:
                state.snapshots.request()

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until the sinks have everything classified so far (tests, --max-frames)."""
        return self._fanout is None or self._fanout.drain(timeout)

    @property
    def failed(self) -> bool:
        """True once a capture thread died of an unexpected exception (a bug).

        Such a camera is not "ended": `finished` is not set because of it, and its stalled
        liveness trips the watchdog. `run` should treat this as a failure (exit 1).
        """
        with self._lock:
            return bool(self._crashed)

    @property
    def crashed_cameras(self) -> tuple[str, ...]:
        """The cameras whose capture thread died of an unexpected exception."""
        with self._lock:
            return tuple(self._crashed)

    @property
    def last_results(self) -> dict[str, Classification]:
        """The newest result per camera, published or not (a new dict: safe to iterate)."""
        return {
            name: camera.results.last
            for name, camera in self._cameras.items()
            if camera.results.last is not None
        }

    def sequence_numbers(self) -> dict[str, int]:
        """The newest frame number per camera: where a reloaded pipeline carries on."""
        return {**self._first_seq, **{name: c.seq for name, c in self._cameras.items()}}

    def queue_depths(self) -> dict[str, int]:
        """Frames waiting for inference, per camera."""
        return self._queues.depth()

    @property
    def last_alive(self) -> float:
        """Monotonic time up to which every running camera and every worker made progress.

        A camera makes progress with each frame its stage skipped (a still scene is not a
        stall) or that was classified; a worker stalls when one batch takes too long. So this
        stops advancing when any running camera stalls or inference hangs, which is what the
        systemd watchdog needs. While paused it is "now": nothing is expected.
        """
        now = time.monotonic()
        if self.paused:
            return now
        with self._lock:
            busy = list(self._busy_since.values())
            workers = self._workers_running
        running = [c.last_alive for c in self._cameras.values() if not c.ended]
        if running and workers == 0:
            return min([*running, 0.0])
        if running:
            return min(running + busy)
        return max((c.last_alive for c in self._cameras.values()), default=0.0)

    # ==== 1. capture: one thread per camera =====================================================

    def _capture(self, camera: _Camera) -> None:
        try:
            self._capture_loop(camera)
        except Exception:  # a bug, not a camera failure: the watchdog sees this camera stall
            log.exception(
                "camera %s: capture thread failed",
                camera.name,
                extra={"camera": camera.name, "seq": camera.seq, "stage": "capture"},
            )
            self.metrics.error(camera.name)
            with self._lock:
                self._crashed.append(camera.name)
            # Not an end of stream: the camera does not count as ended, so `finished` is not
            # set on its account (the queues stay open until stop()); `failed` tells.
            _close_quietly(camera.source)
            return
        _close_quietly(camera.source)
        self._capture_ended()

    def _capture_loop(self, camera: _Camera) -> None:
        source = camera.source
        if not camera.opened and not self._reopen(camera):
            return
        while not self._stopping.is_set():
            if self.paused and not source.live:
                self._stopping.wait(0.05)  # a file waits where it is
                continue
            try:
                capture = source.read()
            except Exception as error:  # SourceError, or a cv2.error from a broken device
                log.warning(
                    "camera %s: read failed: %s",
                    camera.name,
                    describe(camera.name, error),
                    extra={"camera": camera.name, "seq": camera.seq, "stage": "capture"},
                )
                self.metrics.error(camera.name)
                if not self._reopen(camera):
                    return
                continue
            if capture is None:
                log.info(
                    "camera %s: end of stream",
                    camera.name,
                    extra={"camera": camera.name, "seq": camera.seq, "stage": "capture"},
                )
                camera.ended = True
                return
            if self.paused:
                continue  # a live camera keeps flowing so it is fresh on resume
            self._admit(camera, capture)

    def _admit(self, camera: _Camera, capture: Capture) -> None:
        """Preprocess one frame, let the stage judge it, queue it for inference."""
        t_captured = time.monotonic()
        wall_time = time.time()
        self.metrics.captured(camera.name)
        try:
            view = camera.preprocess(capture.pixels)
        except Exception:  # a malformed frame must not end the camera
            camera.seq += 1  # lost, so a gap in seq shows it
            log.exception(
                "camera %s: frame %d cannot be preprocessed",
                camera.name,
                camera.seq,
                extra={"camera": camera.name, "seq": camera.seq, "stage": "preprocess"},
            )
            self.metrics.error(camera.name)
            self.metrics.dropped(camera.name, "bad_frame")
            return
        t_preprocessed = time.monotonic()
        # A due snapshot is classified whatever the stage says: its image needs its top-k.
        snapshot = camera.snapshots.claim(t_captured)
        admitted = snapshot or camera.stage.admit(
            StageInput(
                camera=camera.name,
                pixels=view,
                luma=capture.luma,
                crop=None if capture.luma is None else luma_crop(camera.preprocess, capture),
                t=t_captured,
                label_pending=camera.results.label_pending,
            )
        )
        for gauge, value in camera.stage.gauges().items():
            self.metrics.set_gauge(gauge, value, camera=camera.name)
        if not admitted:
            self.metrics.gated(camera.name)
            camera.last_alive = t_preprocessed
            return
        # Only classified frames are numbered: a gap in seq is a frame lost, never one skipped.
        camera.seq += 1
        frame = Frame(camera.name, camera.seq, view, wall_time, t_captured, t_preprocessed)
        if snapshot:
            # The source's full-size image where it has one; a copy: it may reuse its buffer.
            frame.image = np.array(capture.full if capture.full is not None else capture.pixels)
        lost = self._queues.put(frame, drop_oldest=camera.drop_oldest)
        if lost is not None:
            self.metrics.dropped(camera.name, "queue_full" if lost is not frame else "shutdown")
            if lost.image is not None:
                camera.snapshots.rearm()

    def _reopen(self, camera: _Camera) -> bool:
        backoff = Backoff(*self._backoff)
        opened = reopen(
            camera.source,
            self._stopping,
            backoff,
            on_retry=lambda: self.metrics.reconnect(camera.name),
            on_error=lambda: self.metrics.error(camera.name),
        )
        camera.opened = opened
        return opened

    def _capture_ended(self) -> None:
        with self._lock:
            self._captures_running -= 1
            last = self._captures_running == 0
        if last:
            self._queues.close()  # every source ended: workers drain the queues and end

    # ==== 2. inference: workers shared by all cameras ===========================================

    def _infer(self, index: int, engine: InferenceEngine) -> None:
        settings = self.config.pipeline
        max_wait = settings.max_batch_wait_ms / 1000.0
        try:
            while batch := self._queues.take(settings.batch_size, max_wait):
                if self._abort.is_set():
                    for frame in batch:
                        self.metrics.dropped(frame.camera, "shutdown")
                    continue
                dequeued = time.monotonic()
                with self._lock:
                    self._busy_since[index] = dequeued
                try:
                    self._classify(batch, engine, dequeued)
                finally:
                    with self._lock:
                        del self._busy_since[index]
        finally:
            with self._lock:
                self._workers_running -= 1
                last = self._workers_running == 0
            if last:
                self.finished.set()

    def _classify(self, batch: list[Frame], engine: InferenceEngine, dequeued: float) -> None:
        for frame in batch:
            frame.t_dequeued = dequeued
        try:
            pixels = (
                batch[0].pixels[np.newaxis]
                if len(batch) == 1
                else np.stack([frame.pixels for frame in batch])
            )
            probabilities = engine.infer(engine.to_input(pixels))
            if len(probabilities) != len(batch):
                raise ValueError(f"{len(probabilities)} results for {len(batch)} frames")
        except Exception:
            log.exception(
                "inference failed on a batch of %d",
                len(batch),
                extra={
                    "camera": ",".join(sorted({frame.camera for frame in batch})),
                    "seq": batch[0].seq,
                    "stage": "inference",
                },
            )
            for frame in batch:
                self.metrics.error(frame.camera)
                self.metrics.dropped(frame.camera, "inference_error")
            return
        inferred = time.monotonic()
        for frame, row in zip(batch, probabilities, strict=True):
            frame.t_inferred = inferred
            try:
                self._deliver(frame, row, engine.name)
            except Exception:  # a bug in one result must not end the worker
                log.exception(
                    "camera %s: frame %d: results failed",
                    frame.camera,
                    frame.seq,
                    extra={"camera": frame.camera, "seq": frame.seq, "stage": "results"},
                )
                self.metrics.error(frame.camera)
                self.metrics.dropped(frame.camera, "results_error")

    # ==== 3. results -> fan-out =================================================================

    def _deliver(self, frame: Frame, probabilities: np.ndarray, model: str) -> None:
        camera = self._cameras[frame.camera]
        fanout = self._fanout
        assert fanout is not None  # started before any worker
        # One camera's results reach the fan-out one at a time and in classification order.
        with camera.lock:
            frame.t_published = time.monotonic()
            latency = frame.latencies_ms()  # once: for the result and for the metrics
            result, publish = camera.results.process(
                probabilities,
                camera=frame.camera,
                seq=frame.seq,
                wall_time=frame.wall_time,
                model=model,
                now=frame.t_published,
                latency_ms=latency,
            )
            camera.last_alive = frame.t_published
            self.metrics.classified(frame, latency)
            if publish:
                fanout.submit(result)
            if frame.image is not None:
                fanout.submit(
                    Snapshot(frame.camera, frame.seq, frame.wall_time, frame.image, result.top)
                )

    # ==== helpers ==============================================================================

    def _make_camera(self, name: str, camera: CameraConfig, engine: InferenceEngine) -> _Camera:
        settings = self.config.pipeline
        source = self._source_factory(name, camera)
        policy = settings.drop_policy
        snapshot_interval = self.config.mqtt.snapshot_interval_s if self.config.mqtt.enabled else 0
        return _Camera(
            name=name,
            source=source,
            preprocess=Preprocessor(
                size=engine.input_size,
                crop=camera.crop,
                roi=camera.roi,
                interpolation=camera.interpolation,
            ),
            stage=self._stage_factory(name, camera),
            drop_oldest=source.live if policy == "auto" else policy == "drop_oldest",
            results=ResultProcessor(
                engine.labels,
                top=self.config.model.top_k,
                min_score=settings.min_score,
                tracker=LabelTracker(
                    settings.threshold_high, settings.threshold_low, settings.stable_frames
                ),
                policy=PublishPolicy(settings.publish, settings.max_rate_hz),
            ),
            snapshots=SnapshotPolicy(snapshot_interval),
            seq=self._first_seq.get(name, 0),
        )

    @staticmethod
    def _first_open(camera: _Camera) -> str | None:
        """None when the camera opened, else why not (its thread keeps retrying)."""
        try:
            camera.source.open()
        except Exception as error:  # SourceError, or a bug in open(): both are retried
            log.warning(
                "camera %s: %s; retrying in the background",
                camera.name,
                describe(camera.name, error),
                exc_info=not isinstance(error, SourceError),
                extra={"camera": camera.name, "stage": "capture"},
            )
            return f"camera {camera.name}: {describe(camera.name, error)}"
        camera.opened = True
        return None

    def _spawn(self, role: str, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"camclassd-{role}", daemon=True)
        thread.start()
        return thread


@dataclass(eq=False)
class _Camera:
    name: str
    source: Source
    preprocess: Preprocessor
    stage: Stage
    drop_oldest: bool
    results: ResultProcessor
    snapshots: SnapshotPolicy
    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: int = 0
    opened: bool = False
    ended: bool = False
    last_alive: float = 0.0  # monotonic: the newest frame skipped by the stage or classified


class FrameQueues:
    """One bounded deque per camera behind one condition variable.

    `put` either evicts the camera's oldest frame (drop_oldest) or waits for room (block);
    `take` returns up to n frames round-robin across cameras, waiting at most `max_wait`
    after the first for the batch to fill. After close(), puts are refused and takes drain
    what is left, then return [].
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Frame]] = {}
        self._limits: dict[str, int] = {}
        self._order: list[str] = []
        self._next = 0
        self._closed = False

    def add(self, camera: str, size: int) -> None:
        with self._cond:
            self._queues[camera] = deque()
            self._limits[camera] = size
            self._order.append(camera)

    def put(self, frame: Frame, *, drop_oldest: bool) -> Frame | None:
        """Queue a frame; returns the frame that was lost (evicted, or this one if closed)."""
        with self._cond:
            queue, limit = self._queues[frame.camera], self._limits[frame.camera]
            while not drop_oldest and len(queue) >= limit and not self._closed:
                self._cond.wait()
            if self._closed:
                return frame
            lost = queue.popleft() if len(queue) >= limit else None
            queue.append(frame)
            self._cond.notify_all()
            return lost

    def take(self, n: int, max_wait: float) -> list[Frame]:
        with self._cond:
            while not self._any():
                if self._closed:
                    return []
                self._cond.wait()
            batch = [self._pop()]
            deadline = time.monotonic() + max_wait
            while len(batch) < n:
                if self._any():
                    batch.append(self._pop())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            self._cond.notify_all()  # room for producers blocked on a full queue
            return batch

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> dict[str, int]:
        """Empty every queue; returns how many frames each camera lost."""
        with self._cond:
            lost = {name: len(queue) for name, queue in self._queues.items() if queue}
            for queue in self._queues.values():
                queue.clear()
            self._cond.notify_all()
            return lost

    def depth(self) -> dict[str, int]:
        with self._cond:
            return {name: len(queue) for name, queue in self._queues.items()}

    def _any(self) -> bool:
        return any(self._queues.values())

    def _pop(self) -> Frame:
        for _ in range(len(self._order)):
            name = self._order[self._next % len(self._order)]
            self._next += 1
            if self._queues[name]:
                return self._queues[name].popleft()
        raise IndexError("take from empty queues")


def luma_crop(preprocess: Preprocessor, capture: Capture) -> tuple[int, int, int, int]:
    """The camera's crop/ROI in the luma plane's coordinates, as (x, y, width, height)."""
    assert capture.luma is not None
    height, width = capture.pixels.shape[:2]
    luma_h, luma_w = capture.luma.shape[:2]
    x1, y1, x2, y2 = preprocess.crop_box(width, height)
    sx, sy = luma_w / width, luma_h / height
    left, top = round(x1 * sx), round(y1 * sy)
    return (left, top, max(1, round(x2 * sx) - left), max(1, round(y2 * sy) - top))


def _close_quietly(source: Source) -> None:
    try:
        source.close()
    except Exception:
        log.debug("camera %s: close failed", source.name, exc_info=True)
