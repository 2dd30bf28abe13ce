"""The metrics model: counters, ring-buffer percentiles against numpy, histograms, the snapshot,
the generic counters and gauges, and the one sampler of process stats."""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from camclassd.frame import Frame
from camclassd.metrics import (
    LATENCY_BUCKETS_S,
    STAGES,
    Metrics,
    Window,
    rate,
)
from camclassd.procstats import ProcessSampler, decode_throttled, read_throttling

TENSOR = np.zeros((1, 1, 3), dtype=np.uint8)


def frame(camera: str, t0: float, *, pre: float, queue: float, infer: float, post: float) -> Frame:
    f = Frame(camera, 1, TENSOR, time.time(), t0)
    f.t_preprocessed = t0 + pre
    f.t_dequeued = f.t_preprocessed + queue
    f.t_inferred = f.t_dequeued + infer
    f.t_published = f.t_inferred + post
    return f


def test_window_keeps_the_last_values_and_counts_and_sums_all() -> None:
    window = Window(4, bounds=(2.5, 5.0))
    for value in range(10):
        window.add(float(value))
    assert window.count == 10
    assert window.sum == 45.0
    assert sorted(window.values()) == [6.0, 7.0, 8.0, 9.0]
    assert window.newest() == 9.0
    # 0,1,2 <= 2.5; 3,4,5 <= 5.0 (a value on a bound belongs to it); 6..9 above.
    assert window.buckets() == (3, 3, 4)


def test_frame_latencies_are_computed_once_from_the_stamps() -> None:
    f = frame("a", 10.0, pre=0.001, queue=0.002, infer=0.010, post=0.0005)
    latency = f.latencies_ms()
    assert list(latency) == list(STAGES)
    assert latency["preprocess"] == pytest.approx(1.0)
    assert latency["queue"] == pytest.approx(2.0)
    assert latency["inference"] == pytest.approx(10.0)
    assert latency["postprocess"] == pytest.approx(0.5)
    assert latency["capture_to_publish"] == pytest.approx(13.5)
    metrics = Metrics(window=10, sample_process=False)
    metrics.classified(f, {**latency, "inference": 99.0})  # the pipeline's mapping is used as is
    assert metrics.latency_values("inference")[0] == pytest.approx(0.099)


def test_percentiles_match_numpy_over_the_window() -> None:
    rng = np.random.default_rng(7)
    inference = rng.gamma(4.0, 0.003, size=1500)  # seconds
    metrics = Metrics(window=1000)
    t = 100.0
    for value in inference:
        metrics.classified(frame("a", t, pre=0.001, queue=0.0005, infer=float(value), post=0.0002))
        t += 0.1
    stats = metrics.snapshot().latency["inference"]
    recent = inference[-1000:]
    assert stats.count == 1500
    assert stats.sum_s == pytest.approx(inference.sum())
    for got, q in ((stats.p50_s, 50), (stats.p90_s, 90), (stats.p99_s, 99)):
        assert got == pytest.approx(np.percentile(recent, q), abs=1e-6)
    assert stats.max_s == pytest.approx(recent.max(), abs=1e-6)
    total = metrics.snapshot().latency["capture_to_publish"]
    expected_total = recent + 0.0017
    assert total.p50_s == pytest.approx(np.percentile(expected_total, 50), abs=1e-6)


def test_histograms_per_camera_count_every_sample() -> None:
    rng = np.random.default_rng(3)
    inference = rng.gamma(2.0, 0.02, size=700)
    metrics = Metrics(window=100, sample_process=False)
    for i, value in enumerate(inference):
        camera = "a" if i % 2 == 0 else "b"
        metrics.classified(frame(camera, 1.0, pre=0.001, queue=0.0, infer=float(value), post=0.0))
    snap = metrics.snapshot()
    a = snap.cameras["a"].latency["inference"]
    b = snap.cameras["b"].latency["inference"]
    assert a.count == 350 == b.count
    assert a.sum_s == pytest.approx(inference[0::2].sum())
    expected = np.histogram(inference[0::2], bins=(0.0, *LATENCY_BUCKETS_S, np.inf))[0]
    assert a.buckets == tuple(int(n) for n in expected)
    assert sum(a.buckets) == a.count
    assert snap.latency["inference"].count == 700  # the all-camera window counts every one


def test_snapshot_layout_is_the_documented_one() -> None:
    metrics = Metrics(window=10, cameras=["front", "back"])
    now = time.monotonic()
    for i in range(3):
        metrics.captured("front")
        metrics.classified(
            frame("front", now - 0.3 + i * 0.1, pre=0.001, queue=0.001, infer=0.01, post=0.001)
        )
        metrics.published("front")
    metrics.captured("front")
    metrics.dropped("front", "queue_full")
    metrics.error("back")
    metrics.error()
    metrics.reconnect("back")
    snap = metrics.snapshot()
    assert snap.frames() == {
        "captured": 4, "gated": 0, "classified": 3, "published": 3, "dropped": 1, "errors": 2,
        "reconnects": 1,
    }  # fmt: skip
    assert metrics.counters() == snap.frames()  # the cheap reader agrees
    assert snap.dropped() == {"queue_full": 1}
    assert snap.cameras["front"].counters == {
        "captured": 4, "gated": 0, "classified": 3, "published": 3, "dropped": 1, "errors": 0,
        "reconnects": 0,
    }  # fmt: skip
    assert snap.cameras["back"].counters["errors"] == 1
    assert snap.cameras["back"].counters["reconnects"] == 1
    assert snap.counters == {"errors": 1}  # the error outside any camera
    assert snap.cameras["front"].fps == pytest.approx(10.0, rel=0.05)
    assert metrics.fps() == pytest.approx(snap.fps, rel=0.05)  # the cheap reader agrees
    assert list(snap.latency) == list(STAGES)
    assert snap.latency["queue"].count == 3
    assert snap.window == 10
    assert snap.process is not None and snap.process.rss_bytes > 10 * 2**20


def test_generic_counters_gauges_and_collect_hooks() -> None:
    metrics = Metrics(window=10, cameras=["front"], sample_process=False)
    metrics.gated("front", 0)  # makes the counter appear before the first gated frame
    assert metrics.snapshot().cameras["front"].counters["gated"] == 0
    metrics.gated("front", 3)
    metrics.count("mqtt_reconnects")
    metrics.set_counter("mqtt_dropped", 9)
    metrics.set_gauge("gate_open_ratio", 0.5, camera="front")
    depth = [4]
    metrics.on_collect(lambda m: m.set_gauge("mqtt_buffered", depth[0]))
    snap = metrics.snapshot()
    assert snap.cameras["front"].counters["gated"] == 3 == snap.frames()["gated"]
    assert snap.cameras["front"].gauges == {"gate_open_ratio": 0.5}
    assert snap.counters == {"mqtt_reconnects": 1, "mqtt_dropped": 9}
    assert snap.gauges == {"mqtt_buffered": 4.0}
    depth[0] = 0
    assert metrics.snapshot().gauges == {"mqtt_buffered": 0.0}  # read at each snapshot
    assert snap.process is None
    with pytest.raises(ValueError, match="snake_case"):
        metrics.set_gauge("Bad Name", 1.0)


def test_a_failing_hook_does_not_stop_the_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics(window=10, sample_process=False)

    def broken(_: Metrics) -> None:
        raise RuntimeError("boom")

    metrics.on_collect(broken)
    metrics.captured("front")
    assert metrics.snapshot().frames()["captured"] == 1
    assert "boom" in caplog.text


def test_rate_over_recent_stamps() -> None:
    stamps = np.arange(0.0, 10.0, 0.05)  # 20 per second
    assert rate(stamps, now=10.0) == pytest.approx(20.0)
    assert rate(stamps, now=100.0) == 0.0  # nothing in the last few seconds
    assert rate(np.array([1.0]), now=1.0) == 0.0


def test_updates_are_thread_safe() -> None:
    metrics = Metrics(window=100)

    def hammer() -> None:
        for _ in range(2000):
            metrics.captured("cam")
            metrics.dropped("cam", "queue_full")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = metrics.snapshot()
    assert snap.frames()["captured"] == 8000
    assert snap.cameras["cam"].counters["dropped"] == 8000 == snap.dropped()["queue_full"]


def test_no_allocation_growth_per_frame() -> None:
    metrics = Metrics(window=200)
    now = time.monotonic()
    for _ in range(500):  # fill the rings
        metrics.classified(frame("cam", now, pre=0.001, queue=0.001, infer=0.01, post=0.001))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(5000):
        metrics.captured("cam")
        metrics.classified(frame("cam", now, pre=0.001, queue=0.001, infer=0.01, post=0.001))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 20_000  # bytes, after 5000 frames: nothing kept per frame


def test_process_sampler_is_shared_by_every_reader() -> None:
    clock = [100.0]
    sampler = ProcessSampler(min_interval_s=1.0, clock=lambda: clock[0])
    first = sampler.sample()
    assert first.rss_bytes > 10 * 2**20
    assert first.cpu_percent >= 0 and first.cpu_seconds > 0
    assert first.started_at <= time.time()
    assert first.cpu_temperature_c is None or -40 < first.cpu_temperature_c < 130
    # A second reader within the interval gets the same sample: psutil's CPU % baseline is
    # not reset under the first reader.
    assert sampler.sample() is first
    clock[0] += 1.5
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn CPU so the next sample sees it
        pass
    second = sampler.sample()
    assert second is not first
    assert second.cpu_percent > 0
    assert second.cpu_seconds > first.cpu_seconds


def test_throttled_flags(tmp_path: Path) -> None:
    assert read_throttling(tmp_path / "missing") is None
    (tmp_path / "get_throttled").write_text("50005\n")
    throttling = read_throttling(tmp_path / "get_throttled")
    assert throttling is not None
    assert throttling.word == 0x50005
    flags = throttling.flags()
    assert flags["under_voltage"] and flags["throttled"] and not flags["freq_capped"]
    assert flags["under_voltage_occurred"] and flags["throttled_occurred"]
    assert decode_throttled("junk") is None
