"""The streaming pipeline, top-down: capture -> bounded queues -> batched inference -> sinks.

    capture thread per camera          FrameQueues                 inference workers
    Source.read() -> Preprocessor  ->  one bounded deque per   ->  take 1..batch_size frames
    stamp seq + times                  camera, one condition       Engine.infer(batch)
                                       (drop_oldest | block)       top_k, LabelTracker,
                                                                   PublishPolicy -> sinks

Why per-camera queues behind one condition: drop_oldest must evict the oldest frame of
*that* camera (one busy camera must not push out another camera's only frame), while the
workers should still wait on one thing and batch across cameras. Taking round-robin keeps
the cameras fair when inference is the bottleneck.

Threads, not processes: invoke() and OpenCV release the GIL. Each worker owns its engine
(a TFLite interpreter is not thread-safe). Every frame carries monotonic stamps per stage;
Metrics turns them into latency percentiles.
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

from camclassd.config import CameraConfig, Config
from camclassd.errors import SourceError
from camclassd.frame import Frame
from camclassd.metrics import Metrics
from camclassd.preprocess import Preprocessor
from camclassd.results import Classification, LabelTracker, PublishPolicy, top_k
from camclassd.sinks import Sink
from camclassd.sources import Backoff, Source, open_source, reopen
from camclassd.sources.base import describe

log = logging.getLogger(__name__)

SourceFactory = Callable[[str, CameraConfig, Path], Source]
SINK_LOG_INTERVAL_S = 60.0


class InferenceEngine(Protocol):
    """What the pipeline needs of `camclassd.engine.Engine`."""

    name: str
    input_size: tuple[int, int]
    labels: list[str]

    def to_input(self, pixels: np.ndarray) -> np.ndarray: ...

    def infer(self, batch: np.ndarray) -> np.ndarray: ...


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
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        first_seq: Mapping[str, int] | None = None,
    ) -> None:
        self.config = config
        # Sequence numbers carry on across a reload, so a subscriber can still spot gaps.
        self._first_seq = dict(first_seq or {})
        self.metrics = metrics
        self._last_results: dict[str, Classification] = {}
        self.finished = threading.Event()
        # Cameras whose capture thread died of a bug (not an end of stream): see `failed`.
        self._crashed: list[str] = []
        self._engine_factory = engine_factory
        self._sinks = tuple(sinks)  # owned by the caller: never closed here
        self._config_dir = config_dir
        self._source_factory = source_factory
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
        self._started_at = 0.0
        self._sink_logged: dict[int, float] = {}

    # ==== lifecycle =============================================================================

    def start(self) -> None:
        """Load one engine per worker, open the cameras, start the threads.

        Raises ModelError when the model cannot load and SourceError when no camera opens
        (a camera that fails alone is retried in its thread), so `run` exits 69 at once.
        """
        settings = self.config.pipeline
        engines = [self._engine_factory() for _ in range(settings.workers)]
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
        self._started_at = time.monotonic()
        for camera in self._cameras.values():
            camera.last_classified = self._started_at
            self._queues.add(camera.name, settings.queue_size)
        self._captures_running = len(self._cameras)
        self._workers_running = len(engines)
        for camera in self._cameras.values():
            self._captures.append(self._spawn(f"capture-{camera.name}", self._capture, camera))
        for index, engine in enumerate(engines):
            self._workers.append(self._spawn(f"infer-{index}", self._infer, engine))

    def stop(self, timeout: float) -> bool:
        """Stop the sources, classify what is in flight, join every thread by the deadline.

        Returns True when every thread joined in time. Frames still queued at the deadline are
        discarded and counted as dropped ("shutdown").
        """
        deadline = time.monotonic() + timeout
        self._stopping.set()  # `paused` is kept: a reload carries it over to the next pipeline
        self._queues.close()  # wakes producers blocked on a full queue; workers drain, then end
        for thread in self._captures + self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._workers):
            self._abort.set()
        for camera, frames in self._queues.discard().items():
            self.metrics.dropped(camera, "shutdown", frames)
        self.finished.set()
        stuck = [thread.name for thread in self._captures + self._workers if thread.is_alive()]
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
            camera.last_classified = max(camera.last_classified, now)
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def request_snapshot(self, camera: str | None) -> None:
        """The next result of `camera` (of every camera for None) carries the raw image."""
        if camera is not None and camera not in self._cameras:
            raise ValueError(f"no camera named {camera!r}; cameras: {', '.join(self._cameras)}")
        for state in self._cameras.values():
            if camera is None or state.name == camera:
                state.snapshot_wanted = True

    @property
    def failed(self) -> bool:
        """True once a capture thread died of an unexpected exception (a bug).

        Such a camera is not "ended": `finished` is not set because of it, and its stalled
        `last_classified` trips the watchdog. `run` should treat this as a failure (exit 1).
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
        """The newest result per camera (a copy: safe to iterate while workers run)."""
        return dict(self._last_results)

    def sequence_numbers(self) -> dict[str, int]:
        """The newest frame number per camera: where a reloaded pipeline carries on."""
        return {**self._first_seq, **{name: c.seq for name, c in self._cameras.items()}}

    def queue_depths(self) -> dict[str, int]:
        """Frames waiting for inference, per camera."""
        return self._queues.depth()

    @property
    def last_classified(self) -> float:
        """Monotonic time of the newest result of the most stalled running camera.

        It stops advancing when any running camera stalls or inference hangs, which is what
        the systemd watchdog needs. While paused it is "now": nothing is expected.
        """
        if self.paused:
            return time.monotonic()
        running = [c.last_classified for c in self._cameras.values() if not c.ended]
        if running:
            return min(running)
        return max((c.last_classified for c in self._cameras.values()), default=0.0)

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
                pixels = source.read()
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
            if pixels is None:
                log.info(
                    "camera %s: end of stream",
                    camera.name,
                    extra={"camera": camera.name, "seq": camera.seq, "stage": "capture"},
                )
                camera.ended = True
                return
            if self.paused:
                continue  # a live camera keeps flowing so it is fresh on resume
            self._enqueue(camera, pixels)

    def _enqueue(self, camera: _Camera, pixels: np.ndarray) -> None:
        t_captured = time.monotonic()
        wall_time = time.time()
        camera.seq += 1
        self.metrics.captured(camera.name)
        try:
            tensor = camera.preprocess(pixels)
        except Exception:  # a malformed frame must not end the camera
            log.exception(
                "camera %s: frame %d cannot be preprocessed",
                camera.name,
                camera.seq,
                extra={"camera": camera.name, "seq": camera.seq, "stage": "preprocess"},
            )
            self.metrics.error(camera.name)
            self.metrics.dropped(camera.name, "bad_frame")
            return
        frame = Frame(camera.name, camera.seq, tensor, wall_time, t_captured, time.monotonic())
        if camera.snapshot_wanted:
            # Claimed here, so exactly one frame carries the image (not every frame captured
            # until a worker delivers one).
            camera.snapshot_wanted = False
            frame.image = np.array(pixels)  # the source may reuse its buffer
        lost = self._queues.put(frame, drop_oldest=camera.drop_oldest)
        if lost is not None:
            self.metrics.dropped(camera.name, "queue_full" if lost is not frame else "shutdown")
            if lost.image is not None:
                camera.snapshot_wanted = True  # the snapshot frame was dropped: take the next

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

    def _infer(self, engine: InferenceEngine) -> None:
        settings = self.config.pipeline
        max_wait = settings.max_batch_wait_ms / 1000.0
        try:
            while batch := self._queues.take(settings.batch_size, max_wait):
                if self._abort.is_set():
                    for frame in batch:
                        self.metrics.dropped(frame.camera, "shutdown")
                    continue
                dequeued = time.monotonic()
                for frame in batch:
                    frame.t_dequeued = dequeued
                try:
                    tensors = (
                        batch[0].tensor[np.newaxis]
                        if len(batch) == 1
                        else np.stack([frame.tensor for frame in batch])
                    )
                    probabilities = engine.infer(tensors)
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
                    continue
                inferred = time.monotonic()
                for frame, row in zip(batch, probabilities, strict=True):
                    frame.t_inferred = inferred
                    try:
                        self._deliver(frame, row, engine)
                    except Exception:  # a bug in one result must not end the worker
                        log.exception(
                            "camera %s: frame %d: results failed",
                            frame.camera,
                            frame.seq,
                            extra={"camera": frame.camera, "seq": frame.seq, "stage": "publish"},
                        )
                        self.metrics.error(frame.camera)
                        self.metrics.dropped(frame.camera, "results_error")
        finally:
            with self._lock:
                self._workers_running -= 1
                last = self._workers_running == 0
            if last:
                self.finished.set()

    # ==== 3. results: top-k, hysteresis, publish policy, sinks ==================================

    def _deliver(self, frame: Frame, probabilities: np.ndarray, engine: InferenceEngine) -> None:
        camera = self._cameras[frame.camera]
        settings = self.config.pipeline
        # One camera's results go out one at a time and in the order they were classified.
        with camera.lock:
            top = top_k(probabilities, self.config.model.top_k, engine.labels, settings.min_score)
            stable_label, changed = camera.tracker.update(top)
            frame.t_published = time.monotonic()
            latency = frame.latencies_ms()  # once: for the result and for the metrics
            result = Classification(
                camera=frame.camera,
                seq=frame.seq,
                wall_time=frame.wall_time,
                model=engine.name,
                top=top,
                stable_label=stable_label,
                changed=changed,
                latency_ms=latency,
                image=frame.image,
            )
            publish = camera.policy.should_publish(frame.t_published, changed)
            self._last_results[camera.name] = result
            camera.last_classified = frame.t_published
            self.metrics.classified(frame, latency)
            if publish or frame.image is not None:
                self._publish(result)

    def _publish(self, result: Classification) -> None:
        delivered = False
        for index, sink in enumerate(self._sinks):
            try:
                sink.publish(result)
                delivered = True
            except Exception:  # one broken sink must not stop the others or the pipeline
                self.metrics.error(result.camera)
                self._log_sink_failure(index, sink, result)
        if delivered:
            self.metrics.published(result.camera)

    def _log_sink_failure(self, index: int, sink: Sink, result: Classification) -> None:
        # A sink that fails on every frame would flood the journal: one traceback, then a
        # line at most every SINK_LOG_INTERVAL_S (the errors counter has the exact count).
        now = time.monotonic()
        with self._lock:
            last = self._sink_logged.get(index)
            if last is not None and now - last < SINK_LOG_INTERVAL_S:
                return
            self._sink_logged[index] = now
        name = type(sink).__name__
        fields = {"camera": result.camera, "seq": result.seq, "stage": "publish"}
        if last is None:
            log.exception("sink %s failed on %s #%d", name, result.camera, result.seq, extra=fields)
        else:
            log.warning("sink %s is still failing (see the errors counter)", name, extra=fields)

    # ==== helpers ==============================================================================

    def _make_camera(self, name: str, camera: CameraConfig, engine: InferenceEngine) -> _Camera:
        settings = self.config.pipeline
        source = self._source_factory(name, camera, self._config_dir)
        policy = settings.drop_policy
        return _Camera(
            name=name,
            source=source,
            preprocess=Preprocessor(
                size=engine.input_size,
                crop=camera.crop,
                roi=camera.roi,
                interpolation=camera.interpolation,
                to_input=engine.to_input,  # pure (dtype conversion): safe from any thread
            ),
            drop_oldest=source.live if policy == "auto" else policy == "drop_oldest",
            tracker=LabelTracker(
                settings.threshold_high, settings.threshold_low, settings.stable_frames
            ),
            policy=PublishPolicy(settings.publish, settings.max_rate_hz),
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
    drop_oldest: bool
    tracker: LabelTracker
    policy: PublishPolicy
    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: int = 0
    opened: bool = False
    ended: bool = False
    snapshot_wanted: bool = False
    last_classified: float = 0.0


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


def _close_quietly(source: Source) -> None:
    try:
        source.close()
    except Exception:
        log.debug("camera %s: close failed", source.name, exc_info=True)
