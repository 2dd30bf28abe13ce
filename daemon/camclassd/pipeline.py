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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np

from camclassd.camera_state import (
    CameraState,
    InferenceEngine,
    ModelFiles,
    luma_crop,
    make_camera,
    own_model,
    scene_gate,
)
from camclassd.cameras import open_source
from camclassd.collect import AutoCollect, CollectJob, Sample
from camclassd.config import CameraConfig, Config
from camclassd.errors import SourceError
from camclassd.frame import Frame
from camclassd.metrics import Metrics
from camclassd.queues import FrameQueues
from camclassd.results import Classification
from camclassd.sinks import CLOSE_GRACE_S, FanOut, Sink
from camclassd.snapshots import Snapshot
from camclassd.sources import Backoff, Capture, Source, reopen
from camclassd.sources.base import describe
from camclassd.stage import Stage, StageInput

log = logging.getLogger(__name__)

SourceFactory = Callable[[str, CameraConfig], Source]
StageFactory = Callable[[str, CameraConfig], Stage]
SINK_QUEUE = 64  # results and snapshots waiting for the sinks, all cameras together


class Pipeline:
    """Runs every enabled camera of a Config through shared inference workers into sinks."""

    def __init__(
        self,
        config: Config,
        # () -> the [model] engine; (model, labels) -> a camera's own model's
        engine_factory: Callable[..., InferenceEngine],
        sinks: Sequence[Sink],
        metrics: Metrics,
        config_dir: Path,
        *,
        source_factory: SourceFactory = open_source,
        stage_factory: StageFactory = scene_gate,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        first_seq: Mapping[str, int] | None = None,
        samples: Callable[[Sample], None] | None = None,
    ) -> None:
        self.config = config
        self._samples = samples  # where collected examples are written (the sinks' thread)
        self._auto_collect = AutoCollect(config.collect)
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
        self._cameras: dict[str, CameraState] = {}
        self._stopping = threading.Event()  # sources stop; workers drain what is queued
        self._abort = threading.Event()  # past the stop deadline: discard instead of draining
        self._paused = threading.Event()
        self._captures: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._captures_running = 0
        self._workers_running = 0
        self._busy_since: dict[int, float] = {}  # worker index -> when its batch was taken
        # camera -> its model's labels, once started (Home Assistant's enum options, events)
        self.labels: Mapping[str, tuple[str, ...]] = MappingProxyType({})

    # ==== lifecycle =============================================================================

    def start(self) -> None:
        """Load one engine per worker, open the cameras, start the threads.

        Raises ModelError when the model cannot load and SourceError when no camera opens
        (a camera that fails alone is retried in its thread), so `run` exits 69 at once.
        """
        settings = self.config.pipeline
        # Workers are per model: cameras on the same model share them (and batch together),
        # a camera with a model of its own (a state model for one view) gets its own.
        by_model: dict[ModelFiles | None, list[str]] = {}
        for name, spec in self.config.cameras.items():
            if spec.enabled:
                by_model.setdefault(own_model(spec), []).append(name)
        engines: list[tuple[InferenceEngine, FrameQueues]] = []
        labels: dict[str, tuple[str, ...]] = {}
        for key, names in by_model.items():
            queues = FrameQueues()
            models = [
                self._engine_factory() if key is None else self._engine_factory(*key)
                for _ in range(settings.workers)
            ]
            engines += [(engine, queues) for engine in models]
            for name in names:
                spec = self.config.cameras[name]
                self._cameras[name] = make_camera(
                    name,
                    spec,
                    self.config,
                    engine=models[0],
                    queues=queues,
                    source=self._source_factory(name, spec),
                    stage=self._stage_factory(name, spec),
                    first_seq=self._first_seq.get(name, 0),
                )
                labels[name] = tuple(models[0].labels)
        self.labels = MappingProxyType(labels)
        failures = [self._first_open(camera) for camera in self._cameras.values()]
        if all(failures):
            for camera in self._cameras.values():
                camera.source.close()
            raise SourceError("no camera could be opened: " + "; ".join(filter(None, failures)))
        started = time.monotonic()
        for camera in self._cameras.values():
            camera.last_alive = started
            camera.queues.add(camera.name, settings.queue_size)
        self._fanout = FanOut(
            self._sinks,
            capacity=SINK_QUEUE,
            on_published=self.metrics.published,
            on_drop=lambda camera: self.metrics.dropped(camera, "sink_full"),
            on_error=self.metrics.error,
            samples=self._samples,
        )
        self._captures_running = len(self._cameras)
        self._workers_running = len(engines)
        for camera in self._cameras.values():
            self._captures.append(self._spawn(f"capture-{camera.name}", self._capture, camera))
        for index, (engine, queues) in enumerate(engines):
            self._workers.append(self._spawn(f"infer-{index}", self._infer, index, engine, queues))

    def stop(self, timeout: float) -> bool:
        """Stop the sources, classify and deliver what is in flight, join every thread by the
        deadline. Returns True when every thread joined in time. Frames still queued at the
        deadline are discarded and counted as dropped ("shutdown")."""
        deadline = time.monotonic() + timeout
        self._stopping.set()  # `paused` is kept: a reload carries it over to the next pipeline
        self._close_queues()  # wakes producers blocked on a full queue; workers drain, then end
        for thread in self._captures + self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._workers):
            self._abort.set()
        for queues in self._all_queues():
            for camera, frames in queues.discard().items():
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

    def collect(self, job: CollectJob) -> None:
        """Save the camera's next `job.count` frames, one every `job.interval_s`."""
        if job.camera not in self._cameras:
            raise ValueError(f"unknown camera {job.camera!r}; cameras: {', '.join(self._cameras)}")
        if self._samples is None:
            raise ValueError("collecting is not set up in this daemon")
        self._cameras[job.camera].collect.add(job)

    def move_collect_jobs_to(self, other: Pipeline) -> None:
        """Hand the unfinished `collect` jobs to the pipeline that replaces this one."""
        for camera in self._cameras.values():
            for job in camera.collect.take_unfinished():
                if job.camera in other.cameras:
                    other.collect(job)

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
        return {name: depth for q in self._all_queues() for name, depth in q.depth().items()}

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

    def _capture(self, camera: CameraState) -> None:
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

    def _capture_loop(self, camera: CameraState) -> None:
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

    def _admit(self, camera: CameraState, capture: Capture) -> None:
        """Preprocess one frame, let the stage judge it, queue it for inference."""
        t_captured = time.monotonic()
        wall_time = time.time()
        self.metrics.captured(camera.name)
        try:
            view = camera.preprocess(capture.pixels)
        except Exception:  # a malformed frame must not end the camera
            camera.seq += 1  # lost, so a gap in seq shows it
            self._lost(camera.name, camera.seq, "preprocess", "bad_frame", "cannot be preprocessed")
            return
        t_preprocessed = time.monotonic()
        jobs = camera.collect.claim(t_captured)
        if jobs:  # the `collect` command: what the model sees, and the full image
            self._submit_sample(camera, capture, view, tuple(jobs))
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
            frame.image = self._full_image(camera, capture)
        lost = camera.queues.put(frame, drop_oldest=camera.drop_oldest)
        if lost is not None:
            lost_frame, reason = lost
            self.metrics.dropped(camera.name, reason)
            if lost_frame.image is not None:
                camera.snapshots.rearm()

    def _submit_sample(
        self, camera: CameraState, capture: Capture, view: np.ndarray, jobs: tuple[CollectJob, ...]
    ) -> None:
        fanout = self._fanout
        assert fanout is not None  # started before any capture thread
        full = self._full_image(camera, capture)
        fanout.submit(Sample(camera.name, camera.seq, np.array(view), full, jobs[0].label, jobs))

    def _full_image(self, camera: CameraState, capture: Capture) -> np.ndarray:
        """The source's full-size image where it has one, else its frame; a new array either
        way (the source may reuse its buffers). A failure costs the size, not the frame."""
        try:
            full = capture.full_image()
        except Exception as error:
            log.warning(
                "camera %s: no full-size image for this frame (%s); using the frame itself",
                camera.name,
                error,
                extra={"camera": camera.name, "seq": camera.seq, "stage": "capture"},
            )
            self.metrics.error(camera.name)
            full = None
        return full if full is not None else np.array(capture.pixels)

    def _reopen(self, camera: CameraState) -> bool:
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
            self._close_queues()  # every source ended: workers drain the queues and end

    def _all_queues(self) -> list[FrameQueues]:
        return list(
            {id(camera.queues): camera.queues for camera in self._cameras.values()}.values()
        )

    def _close_queues(self) -> None:
        for queues in self._all_queues():
            queues.close()

    # ==== 2. inference: workers shared by all cameras ===========================================

    def _infer(self, index: int, engine: InferenceEngine, queues: FrameQueues) -> None:
        settings = self.config.pipeline
        max_wait = settings.max_batch_wait_ms / 1000.0
        try:
            while batch := queues.take(settings.batch_size, max_wait):
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
                self._lost(frame.camera, frame.seq, "results", "results_error", "results failed")

    def _lost(self, camera: str, seq: int, stage: str, reason: str, what: str) -> None:
        """A frame lost to bad data or a bug (call it while handling the exception): its
        traceback in the log, counted as an error and as dropped for `reason`."""
        extra = {"camera": camera, "seq": seq, "stage": stage}
        log.exception("camera %s: frame %d: %s", camera, seq, what, extra=extra)
        self.metrics.error(camera)
        self.metrics.dropped(camera, reason)

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
            if self._samples is not None and self._auto_collect.wants(result, frame.t_published):
                # [collect] auto: unsure, or a new stable label: worth labelling.
                fanout.submit(Sample(frame.camera, frame.seq, frame.pixels, frame.image, None))

    # ==== helpers ==============================================================================

    @staticmethod
    def _first_open(camera: CameraState) -> str | None:
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


def _close_quietly(source: Source) -> None:
    try:
        source.close()
    except Exception:
        log.debug("camera %s: close failed", source.name, exc_info=True)
