"""The whole pipeline with the real model, the real sample photos and real sources.

The only stand-ins are small Source classes written here (a source that fails on its Nth
read, one that hangs), injected through the pipeline's `source_factory` parameter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from camclassd.cameras import open_source
from camclassd.config import CameraConfig, Config
from camclassd.engine import Engine
from camclassd.errors import ModelError, SourceError
from camclassd.metrics import Metrics
from camclassd.pipeline import Pipeline
from camclassd.results import Classification
from camclassd.snapshots import Snapshot
from camclassd.sources import Capture, Source
from camclassd.sources.synthetic import SyntheticSource
from tests.conftest import GOLDEN, LABELS, MODELS, SAMPLES, UINT8_MODEL


class Collect:
    """A sink that keeps every result; optionally slow or broken."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.results: list[Classification] = []
        self.snapshots: list[Snapshot] = []
        self.delay_s = delay_s
        self.fail = fail
        self.lock = threading.Lock()

    def publish(self, result: Classification) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("sink is broken")
        with self.lock:
            self.results.append(result)

    def snapshot(self, snapshot: Snapshot) -> None:
        with self.lock:
            self.snapshots.append(snapshot)

    def close(self) -> None:
        pass

    def count(self) -> int:
        with self.lock:
            return len(self.results)


def make_config(cameras: dict[str, dict[str, Any]], **pipeline: Any) -> Config:
    return Config.model_validate({"cameras": cameras, "pipeline": {"stable_frames": 1, **pipeline}})


def golden_images(**extra: Any) -> dict[str, Any]:
    return {"type": "images", "path": str(SAMPLES / "*.jpg"), "loop": False, **extra}


def engine_factory(model: Path = UINT8_MODEL) -> Callable[[], Engine]:
    return lambda: Engine(model, LABELS, num_threads=1)


@pytest.fixture
def running() -> Iterator[list[Pipeline]]:
    """Pipelines a test started; stopped even when the test fails."""
    pipelines: list[Pipeline] = []
    yield pipelines
    for pipeline in pipelines:
        pipeline.stop(5.0)


def start(
    running: list[Pipeline],
    config: Config,
    sinks: list[Any],
    metrics: Metrics | None = None,
    **kwargs: Any,
) -> tuple[Pipeline, Metrics]:
    metrics = metrics or Metrics(window=200)
    pipeline = Pipeline(
        config, engine_factory(), sinks, metrics, SAMPLES, reconnect_min_s=0.01,
        reconnect_max_s=0.05, **kwargs,
    )  # fmt: skip
    running.append(pipeline)
    pipeline.start()
    return pipeline, metrics


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("camclassd-")]


# ---- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["efficientnet_lite0_uint8", "efficientnet_lite0_float32"])
def test_golden_photos_through_the_whole_pipeline(model: str) -> None:
    config = make_config({"photos": golden_images()})
    sink = Collect()
    metrics = Metrics(window=100)
    pipeline = Pipeline(
        config, engine_factory(MODELS / f"{model}.tflite"), [sink], metrics, SAMPLES
    )
    pipeline.start()
    assert pipeline.finished.wait(20), "a finite source must finish"
    assert pipeline.stop(5.0)
    photos = sorted(SAMPLES.glob("*.jpg"))
    assert [r.seq for r in sink.results] == list(range(1, len(photos) + 1))
    for result, photo in zip(sink.results, photos, strict=True):
        assert result.model == model
        if photo.name in GOLDEN:
            assert result.top[0].label in GOLDEN[photo.name], (photo.name, result.top)
        assert len(result.top) == 3
        assert set(result.latency_ms) >= {"capture_to_publish", "queue", "preprocess", "inference"}
        assert result.latency_ms["capture_to_publish"] >= result.latency_ms["inference"] > 0
    counters = metrics.counters()
    assert counters["captured"] == counters["classified"] + counters["dropped"] + counters["gated"]
    assert counters["captured"] == len(photos) and counters["dropped"] == 0
    assert counters["published"] == len(photos) and counters["errors"] == 0
    assert pipeline.last_results["photos"].seq == len(photos)
    assert not our_threads()


class RecordingEngine(Engine):
    """The real engine, remembering the batch size of every infer() call."""

    def __init__(self) -> None:
        super().__init__(UINT8_MODEL, LABELS, num_threads=1)
        self.batches: list[int] = []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        return super().infer(batch)


def test_batching_gives_the_same_results_as_single_frames() -> None:
    cameras = {name: golden_images() for name in ("a", "b", "c")}
    outcomes = []
    for batch_size in (1, 4):
        sink = Collect()
        metrics = Metrics(window=100)
        engines: list[RecordingEngine] = []

        def make_engine(engines: list[RecordingEngine] = engines) -> RecordingEngine:
            engines.append(RecordingEngine())
            return engines[-1]

        pipeline = Pipeline(
            make_config(cameras, batch_size=batch_size, max_batch_wait_ms=50, queue_size=4),
            make_engine, [sink], metrics, SAMPLES,
        )  # fmt: skip
        pipeline.start()
        assert pipeline.finished.wait(20)
        assert pipeline.stop(5.0)
        outcomes.append({(r.camera, r.seq): r.top for r in sink.results})
        counters = metrics.counters()
        assert counters["captured"] == counters["classified"] == 3 * len(GOLDEN)
        sizes = engines[0].batches
        assert sum(sizes) == 3 * len(GOLDEN) and max(sizes) <= batch_size
        if batch_size > 1:
            assert max(sizes) > 1  # the frames of several cameras did share an invoke
    single, batched = outcomes
    assert single.keys() == batched.keys()
    for key, top in single.items():
        assert [p.label for p in batched[key]] == [p.label for p in top]
        np.testing.assert_allclose(
            [p.score for p in batched[key]], [p.score for p in top], atol=1e-4
        )


def test_slow_sink_keeps_queue_bounded_and_counts_drops(running: list[Pipeline]) -> None:
    config = make_config(
        {"live": {"type": "synthetic", "width": 640, "height": 480}},
        queue_size=2,
        drop_policy="auto",
    )
    sink = Collect(delay_s=0.05)
    pipeline, metrics = start(running, config, [sink])
    depths = []
    for _ in range(30):
        depths.append(pipeline.queue_depths()["live"])
        time.sleep(0.01)
    assert wait_until(lambda: sink.count() >= 4)
    assert pipeline.stop(5.0)
    assert max(depths) <= 2
    counters = metrics.counters()
    snapshot = metrics.snapshot()
    assert snapshot.dropped()["queue_full"] > 10 * counters["classified"] / 4
    assert counters["captured"] == counters["classified"] + counters["dropped"] + counters["gated"]
    # drop-oldest keeps the newest: frames reach the sink with growing gaps in seq.
    seqs = [r.seq for r in sink.results]
    assert seqs == sorted(seqs) and seqs[-1] - seqs[0] > len(seqs)


def test_sink_that_raises_is_counted_and_survived(
    running: list[Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    good, broken = Collect(), Collect(fail=True)
    pipeline, metrics = start(
        running, make_config({"photos": golden_images(loop=True)}), [broken, good]
    )
    assert wait_until(lambda: good.count() >= 6)
    assert pipeline.stop(5.0)
    counters = metrics.counters()
    assert counters["errors"] >= 6
    assert counters["published"] == good.count()
    assert caplog.text.count("sink Collect failed") == 1  # one traceback, not one per frame


# ---- failures and reconnects -----------------------------------------------------------------


class EngineFailingOnce:
    """The real engine, except that its second infer() raises (a delegate hiccup, say)."""

    def __init__(self) -> None:
        self.engine = Engine(UINT8_MODEL, LABELS, num_threads=1)
        self.name = self.engine.name
        self.input_size = self.engine.input_size
        self.labels = self.engine.labels
        self.calls = 0

    def to_input(self, pixels: np.ndarray) -> np.ndarray:
        return self.engine.to_input(pixels)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("invoke failed")
        return self.engine.infer(batch)


def test_inference_error_is_counted_and_survived() -> None:
    metrics = Metrics()
    sink = Collect()
    pipeline = Pipeline(
        make_config({"photos": golden_images()}), EngineFailingOnce, [sink], metrics, SAMPLES
    )
    pipeline.start()
    assert pipeline.finished.wait(10)
    assert pipeline.stop(5.0)
    photos = len(list(SAMPLES.glob("*.jpg")))
    assert [r.seq for r in sink.results] == [s for s in range(1, photos + 1) if s != 2]
    assert metrics.snapshot().dropped() == {"inference_error": 1}
    counters = metrics.counters()
    assert counters["errors"] == 1
    assert counters["captured"] == counters["classified"] + counters["dropped"] + counters["gated"]


class BadFrames:
    """A real source whose every third frame is empty (a truncated buffer, say)."""

    live = False

    def __init__(self) -> None:
        self.name = "bad"
        self.inner = SyntheticSource("bad", 320, 240)
        self.reads = 0

    def open(self) -> None:
        self.inner.open()

    def read(self) -> Capture | None:
        self.reads += 1
        if self.reads > 30:
            return None
        if self.reads % 3 == 0:
            return Capture(np.zeros((0, 320, 3), dtype=np.uint8))
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def test_bad_frames_are_counted_and_survived() -> None:
    metrics = Metrics()
    sink = Collect()
    pipeline = Pipeline(
        make_config({"bad": {"type": "synthetic"}}),
        engine_factory(), [sink], metrics, SAMPLES,
        source_factory=factory_with({"bad": BadFrames()}),
    )  # fmt: skip
    pipeline.start()
    assert pipeline.finished.wait(10)
    assert pipeline.stop(5.0)
    counters = metrics.counters()
    assert counters["classified"] == 20 == sink.count()
    assert counters["errors"] == 10
    assert metrics.snapshot().dropped() == {"bad_frame": 10}
    assert counters["captured"] == counters["classified"] + counters["dropped"] + counters["gated"]


class FailingSource:
    """A real source: synthetic frames, but read number `fail_at` of each open raises
    (or, with `hang_s`, takes that long first, as a source's own read timeout would)."""

    live = True

    def __init__(self, name: str, fail_at: int, hang_s: float = 0.0) -> None:
        self.name = name
        self.fail_at = fail_at
        self.hang_s = hang_s
        self.inner = SyntheticSource(name, 320, 240, fps=200)
        self.opens = 0
        self.reads = 0

    def open(self) -> None:
        self.opens += 1
        self.reads = 0
        self.inner.open()

    def read(self) -> Capture | None:
        self.reads += 1
        if self.reads == self.fail_at:
            time.sleep(self.hang_s)
            raise SourceError(f"{self.name}: lost the device")
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def factory_with(special: dict[str, Source]) -> Callable[[str, CameraConfig], Source]:
    def make(name: str, camera: CameraConfig) -> Source:
        return special[name] if name in special else open_source(name, camera)

    return make


@pytest.mark.parametrize("hang_s", [0.0, 0.2], ids=["raises", "stalls"])
def test_failing_source_is_reopened(running: list[Pipeline], hang_s: float) -> None:
    flaky = FailingSource("flaky", fail_at=5, hang_s=hang_s)
    config = make_config({"flaky": {"type": "synthetic"}})
    sink = Collect()
    pipeline, metrics = start(
        running, config, [sink], source_factory=factory_with({"flaky": flaky})
    )
    assert wait_until(lambda: flaky.opens >= 3 and sink.count() >= 10)
    assert pipeline.stop(5.0)
    counters = metrics.counters()
    assert counters["reconnects"] >= 2
    assert metrics.snapshot().cameras["flaky"].counters["reconnects"] == counters["reconnects"]
    assert counters["errors"] >= 2  # each failure counted


def test_camera_that_cannot_open_at_start_is_retried(running: list[Pipeline]) -> None:
    class OpensLate(FailingSource):
        def open(self) -> None:
            if self.opens < 2:
                self.opens += 1
                raise SourceError("not plugged in yet")
            super().open()

    late = OpensLate("late", fail_at=10**9)
    config = make_config({"late": {"type": "synthetic"}, "photos": golden_images(loop=True)})
    sink = Collect()
    pipeline, metrics = start(running, config, [sink], source_factory=factory_with({"late": late}))
    assert wait_until(lambda: any(r.camera == "late" for r in list(sink.results)))
    assert pipeline.stop(5.0)
    assert metrics.counters()["reconnects"] >= 2


def test_start_fails_early_when_nothing_can_run(tmp_path: Path) -> None:
    config = make_config({"gone": {"type": "images", "path": str(tmp_path / "*.jpg")}})
    pipeline = Pipeline(config, engine_factory(), [], Metrics(), tmp_path)
    with pytest.raises(SourceError, match="no camera could be opened"):
        pipeline.start()
    assert not our_threads()
    broken = Pipeline(
        make_config({"photos": golden_images()}),
        engine_factory(tmp_path / "missing.tflite"), [], Metrics(), SAMPLES,
    )  # fmt: skip
    with pytest.raises(ModelError):
        broken.start()
    assert not our_threads()


def test_last_alive_stops_when_a_camera_hangs(running: list[Pipeline]) -> None:
    release = threading.Event()

    class Hangs(FailingSource):
        def read(self) -> Capture | None:
            self.reads += 1
            if self.reads > 3:
                release.wait(10)
            return self.inner.read()

    config = make_config({"hangs": {"type": "synthetic"}, "fine": {"type": "synthetic", "fps": 50}})
    sink = Collect()
    pipeline, _ = start(
        running, config, [sink], source_factory=factory_with({"hangs": Hangs("hangs", 0)})
    )
    # All three frames before the hang classified (under load they trail the first one).
    assert wait_until(
        lambda: (last := pipeline.last_results.get("hangs")) is not None and last.seq == 3
    )
    time.sleep(0.3)
    before = sink.count()
    stalled_at = pipeline.last_alive
    time.sleep(0.3)
    assert sink.count() > before  # the other camera still runs...
    assert pipeline.last_alive == stalled_at  # ...but the watchdog sees the stall
    assert time.monotonic() - stalled_at >= 0.5
    release.set()
    assert pipeline.stop(5.0)


# ---- control ---------------------------------------------------------------------------------


def test_a_snapshot_is_taken_once_even_when_frames_queue_up(running: list[Pipeline]) -> None:
    """A slow sink keeps the queue full: the image once went with every frame captured until
    a worker delivered one (several results with images, and a copy of every raw frame)."""
    config = make_config(
        {"live": {"type": "synthetic", "width": 640, "height": 480, "fps": 200}},
        queue_size=4,
        drop_policy="block",
    )
    sink = Collect(delay_s=0.05)  # 20 results/s at most, the camera gives 200 frames/s
    pipeline, _ = start(running, config, [sink])
    assert wait_until(lambda: sink.count() >= 2)
    pipeline.request_snapshot("live")
    assert wait_until(lambda: len(sink.snapshots) >= 1)
    count = sink.count()
    assert wait_until(lambda: sink.count() >= count + 6)  # the queue has turned over
    assert len(sink.snapshots) == 1
    assert pipeline.stop(5.0)


def test_pause_resume_and_snapshot(running: list[Pipeline]) -> None:
    config = make_config({"live": {"type": "synthetic", "width": 640, "height": 480, "fps": 100}})
    sink = Collect()
    pipeline, metrics = start(running, config, [sink])
    assert wait_until(lambda: sink.count() >= 3)
    pipeline.pause()
    assert pipeline.paused
    time.sleep(0.1)  # let frames in flight finish
    paused_count = sink.count()
    time.sleep(0.2)
    assert sink.count() == paused_count
    assert time.monotonic() - pipeline.last_alive < 0.05  # paused is healthy
    pipeline.resume()
    assert time.monotonic() - pipeline.last_alive < 0.05  # a pause is not a stall
    assert wait_until(lambda: sink.count() > paused_count + 3)
    assert not sink.snapshots
    pipeline.request_snapshot("live")
    assert wait_until(lambda: len(sink.snapshots) >= 1)
    shot = sink.snapshots[0]
    assert shot.image.shape == (480, 640, 3) and shot.camera == "live" and shot.top
    # the snapshot's top-k is that very frame's result
    assert any(r.seq == shot.seq and r.top == shot.top for r in sink.results)
    time.sleep(0.1)
    assert len(sink.snapshots) == 1  # only the next one
    with pytest.raises(ValueError, match="unknown camera"):
        pipeline.request_snapshot("nope")
    pipeline.pause()
    assert pipeline.stop(5.0)
    assert pipeline.paused  # kept after stop: a reload carries it to the next pipeline
    counters = metrics.counters()
    assert counters["captured"] == counters["classified"] + counters["dropped"] + counters["gated"]


def test_publish_on_change_publishes_first_and_changes(running: list[Pipeline]) -> None:
    config = make_config({"photos": golden_images(loop=True)}, publish="on_change")
    sink = Collect()
    pipeline, metrics = start(running, config, [sink])
    assert wait_until(lambda: metrics.counters()["classified"] >= 12)
    assert pipeline.stop(5.0)
    assert sink.results[0].seq == 1
    assert all(r.changed for r in sink.results[1:])
    assert metrics.counters()["published"] == len(sink.results) < metrics.counters()["classified"]


def test_shutdown_joins_every_thread_within_the_deadline() -> None:
    config = make_config(
        {
            "live": {"type": "synthetic"},
            "files": {"type": "images", "path": str(SAMPLES), "loop": True},
        },
        workers=2,
        queue_size=4,
    )
    sink = Collect(delay_s=0.01)
    metrics = Metrics()
    pipeline = Pipeline(config, engine_factory(), [sink], metrics, SAMPLES)
    pipeline.start()
    assert len(our_threads()) == 5  # two cameras, two workers, the sinks' thread
    assert wait_until(lambda: sink.count() >= 5)
    started = time.monotonic()
    assert pipeline.stop(2.0)
    assert time.monotonic() - started < 2.0
    assert not our_threads()
    assert pipeline.finished.is_set()
    counters = metrics.counters()
    assert counters["captured"] == counters["classified"] + counters["dropped"] + counters["gated"]


# ---- structured log fields -------------------------------------------------------------------


def test_failure_logs_carry_camera_seq_and_stage_fields(
    running: list[Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    """The warnings of a read failure and its reopen carry `extra=` fields (journald's
    CAMERA=/SEQ=/STAGE= through service.StructuredFields), as do bad frames."""
    flaky = FailingSource("flaky", fail_at=5)
    bad = BadFrames()
    config = make_config({"flaky": {"type": "synthetic"}, "bad": {"type": "synthetic"}})
    sink = Collect()
    caplog.set_level("INFO")
    pipeline, _ = start(
        running, config, [sink], source_factory=factory_with({"flaky": flaky, "bad": bad})
    )
    assert wait_until(lambda: flaky.opens >= 2 and bad.reads > 30)
    assert pipeline.stop(5.0)

    def fields(text: str) -> list[tuple[Any, Any, Any]]:
        return [
            (getattr(r, "camera", None), getattr(r, "seq", None), getattr(r, "stage", None))
            for r in caplog.records
            if text in r.getMessage()
        ]

    read_failed = fields("read failed")
    assert read_failed and all(c == "flaky" and s == "capture" for c, _, s in read_failed)
    assert all(isinstance(seq, int) for _, seq, _ in read_failed)
    reopening = fields("reopening in")
    assert reopening and all(c == "flaky" and s == "capture" for c, _, s in reopening)
    bad_frame = fields("cannot be preprocessed")
    assert bad_frame and all(c == "bad" and s == "preprocess" for c, _, s in bad_frame)
    assert [seq for _, seq, _ in bad_frame][:2] == [3, 6]
    assert fields("end of stream") == [("bad", 30, "capture")]


# ---- bugs in the capture thread --------------------------------------------------------------


class OpensAfterBugs(FailingSource):
    """A real synthetic source whose first two open() calls raise RuntimeError (a bug in a
    driver binding, say) instead of SourceError."""

    def open(self) -> None:
        if self.opens < 2:
            self.opens += 1
            raise RuntimeError("driver bug")
        super().open()


def test_camera_whose_open_raises_unexpectedly_is_retried(running: list[Pipeline]) -> None:
    buggy = OpensAfterBugs("buggy", fail_at=10**9)
    config = make_config({"buggy": {"type": "synthetic"}, "photos": golden_images(loop=True)})
    sink = Collect()
    pipeline, metrics = start(
        running, config, [sink], source_factory=factory_with({"buggy": buggy})
    )
    assert wait_until(lambda: any(r.camera == "buggy" for r in list(sink.results)))
    assert not pipeline.failed and not pipeline.finished.is_set()
    assert pipeline.stop(5.0)
    assert metrics.snapshot().cameras["buggy"].counters["reconnects"] >= 1


def test_camera_whose_reopen_raises_unexpectedly_keeps_retrying(running: list[Pipeline]) -> None:
    class BugOnReopen(FailingSource):
        def open(self) -> None:
            self.opens += 1
            if self.opens in (2, 3):  # the first reopens, after read 5 failed
                raise RuntimeError("driver bug")
            self.reads = 0
            self.inner.open()

    flaky = BugOnReopen("flaky", fail_at=5)
    sink = Collect()
    pipeline, metrics = start(
        running,
        make_config({"flaky": {"type": "synthetic"}}),
        [sink],
        source_factory=factory_with({"flaky": flaky}),
    )
    assert wait_until(lambda: flaky.opens >= 5 and sink.count() >= 10)
    assert not pipeline.failed and not pipeline.finished.is_set()
    assert pipeline.stop(5.0)
    assert metrics.counters()["errors"] >= 3  # the read failures and both bugs


class BuggyMetrics(Metrics):
    """Real metrics, except that counting a captured frame raises: a bug in the capture path."""

    def captured(self, camera: str) -> None:
        raise RuntimeError("bug in the capture path")


def test_crashed_capture_thread_is_a_failure_not_an_end_of_stream() -> None:
    metrics = BuggyMetrics()
    pipeline = Pipeline(
        make_config({"syn": {"type": "synthetic", "fps": 50}}),
        engine_factory(), [Collect()], metrics, SAMPLES,
    )  # fmt: skip
    pipeline.start()
    try:
        assert wait_until(lambda: pipeline.failed)
        assert pipeline.crashed_cameras == ("syn",)
        # With its only camera crashed the pipeline must not look like a clean end.
        assert not pipeline.finished.wait(0.5)
        assert metrics.counters()["errors"] == 1
    finally:
        assert pipeline.stop(5.0)
    assert pipeline.failed


def test_camera_errors_name_the_camera_once(
    tmp_path: Path, running: list[Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    gone = {"type": "opencv", "uri": str(tmp_path / "gone.mp4")}
    pipeline = Pipeline(make_config({"a": gone}), engine_factory(), [], Metrics(), tmp_path)
    with pytest.raises(SourceError) as raised:
        pipeline.start()
    assert str(raised.value).count("camera a:") == 1, raised.value
    assert "camera a: camera a:" not in caplog.text
    # A camera that fails alone: its warnings and reopen failures name it once too.
    config = make_config({"a": gone, "photos": golden_images(loop=True)})
    pipeline, _ = start(running, config, [Collect()])
    assert wait_until(lambda: "reopen attempt 2 failed" in caplog.text)
    assert pipeline.stop(5.0)
    retrying = [r.getMessage() for r in caplog.records if "in the background" in r.getMessage()]
    assert retrying and all(message.count("camera a:") == 1 for message in retrying), retrying
    assert "camera a: camera a:" not in caplog.text
    assert "camera a: reopen attempt 1 failed: video file" in caplog.text


def test_a_slow_sink_never_slows_inference(running: list[Pipeline]) -> None:
    """The sinks run on their own thread: a sink that takes 200 ms per result leaves the
    classified rate as it is; results it cannot take are dropped and counted."""
    config = make_config({"live": {"type": "synthetic"}})

    class Slow(Collect):
        def publish(self, result: Classification) -> None:
            time.sleep(0.2)
            super().publish(result)

    def one_second(sink: Collect) -> tuple[int, int, Metrics]:
        """(classified, received by the sink) in one second, after a warm-up."""
        pipeline, metrics = start(running, config, [sink])
        assert wait_until(lambda: metrics.counters()["classified"] >= 5)
        classified, received = metrics.counters()["classified"], sink.count()
        time.sleep(1.0)
        classified = metrics.counters()["classified"] - classified
        received = sink.count() - received
        assert pipeline.stop(5.0)
        return classified, received, metrics

    fast, _, _ = one_second(Collect())
    slow, received, metrics = one_second(Slow())
    # Had inference waited for the sink, it would have classified about what the sink took
    # (5 a second); it classified many times that, as fast as with a sink that keeps up.
    assert received <= 6 and slow >= 2 * received + 2, (slow, received)
    assert slow >= 0.5 * fast, (slow, fast)
    assert metrics.counters()["dropped"] > 0  # the sink's queue overflowed, counted


def test_a_camera_with_a_model_of_its_own(running: list[Pipeline]) -> None:
    """`[cameras.NAME] model`: that camera's frames go to its model's workers, the others to
    [model]'s; each result names the model that made it; cameras on one model share it."""
    float_model = MODELS / "efficientnet_lite0_float32.tflite"
    config = make_config(
        {
            "a": golden_images(loop=True),
            "b": golden_images(loop=True),
            "own": {**golden_images(loop=True), "model": str(float_model), "labels": str(LABELS)},
        }
    )
    loaded: list[str] = []

    def factory(path: Path = UINT8_MODEL, labels: Path = LABELS) -> Engine:
        loaded.append(path.name)
        return Engine(path, labels, num_threads=1)

    sink = Collect()
    pipeline = Pipeline(config, factory, [sink], Metrics(), SAMPLES)
    running.append(pipeline)
    pipeline.start()
    assert sorted(loaded) == sorted([UINT8_MODEL.name, float_model.name])  # one worker each
    # each camera's labels are its own model's (here the same file for both models)
    assert {name: len(labels) for name, labels in pipeline.labels.items()} == dict.fromkeys(
        ("a", "b", "own"), 1000
    )
    assert wait_until(lambda: {r.camera for r in list(sink.results)} == {"a", "b", "own"})
    assert pipeline.stop(5.0)
    models = {(r.camera, r.model) for r in sink.results}
    assert models == {
        ("a", "efficientnet_lite0_uint8"),
        ("b", "efficientnet_lite0_uint8"),
        ("own", "efficientnet_lite0_float32"),
    }
    for result in sink.results:  # both models see the same golden photos right
        assert result.top[0].label in set().union(*GOLDEN.values()), result
