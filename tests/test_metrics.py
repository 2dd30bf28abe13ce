"""Metrics: counters, ring-buffer percentiles against numpy, the snapshot layout, process stats."""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from camclassd.frame import Frame
from camclassd.metrics import (
    STAGES,
    Metrics,
    Window,
    decode_throttled,
    process_stats,
    rate,
    throttled_flags,
)

TENSOR = np.zeros((1, 1, 3), dtype=np.uint8)


def frame(camera: str, t0: float, *, pre: float, queue: float, infer: float, post: float) -> Frame:
    f = Frame(camera, 1, TENSOR, time.time(), t0)
    f.t_preprocessed = t0 + pre
    f.t_dequeued = f.t_preprocessed + queue
    f.t_inferred = f.t_dequeued + infer
    f.t_published = f.t_inferred + post
    return f


def test_window_keeps_the_last_values() -> None:
    window = Window(4)
    for value in range(10):
        window.add(float(value))
    assert window.count == 10
    assert sorted(window.values()) == [6.0, 7.0, 8.0, 9.0]
    assert window.newest() == 9.0


def test_percentiles_match_numpy_over_the_window() -> None:
    rng = np.random.default_rng(7)
    inference = rng.gamma(4.0, 0.003, size=1500)  # seconds
    metrics = Metrics(window=1000)
    t = 100.0
    for value in inference:
        metrics.classified(frame("a", t, pre=0.001, queue=0.0005, infer=float(value), post=0.0002))
        t += 0.1
    stats = metrics.snapshot()["latency_ms"]["inference"]
    recent = inference[-1000:] * 1000.0
    assert stats["count"] == 1500
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert stats[key] == pytest.approx(np.percentile(recent, q), abs=1e-3)
    assert stats["max"] == pytest.approx(recent.max(), abs=1e-3)
    total = metrics.snapshot()["latency_ms"]["capture_to_publish"]
    expected_total = (recent / 1000.0 + 0.0017) * 1000.0
    assert total["p50"] == pytest.approx(np.percentile(expected_total, 50), abs=1e-3)


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
    metrics.captured("back")
    metrics.gated("back")
    snap = metrics.snapshot()
    assert set(snap) == {"uptime_s", "fps", "frames", "dropped", "cameras", "latency_ms"}
    assert snap["frames"] == {
        "captured": 5, "classified": 3, "published": 3, "dropped": 1, "gated": 1, "errors": 2,
        "reconnects": 1,
    }  # fmt: skip
    assert snap["dropped"] == {"queue_full": 1}
    assert snap["cameras"]["front"] == {
        "captured": 4, "classified": 3, "dropped": 1, "gated": 0, "errors": 0, "reconnects": 0,
        "fps": snap["cameras"]["front"]["fps"], "gate_open_ratio": 1.0,
    }  # fmt: skip
    assert snap["cameras"]["back"]["errors"] == 1 and snap["cameras"]["back"]["reconnects"] == 1
    # The one frame "back" captured was gated: nothing got through its gate.
    assert snap["cameras"]["back"]["gated"] == 1 and snap["cameras"]["back"]["gate_open_ratio"] == 0
    assert snap["cameras"]["front"]["fps"] == pytest.approx(10.0, rel=0.05)
    assert metrics.fps() == pytest.approx(snap["fps"], rel=0.05)  # the cheap reader agrees
    assert set(snap["latency_ms"]) == set(STAGES)
    assert set(snap["latency_ms"]["queue"]) == {"p50", "p90", "p99", "max", "count"}


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
    assert snap["frames"]["captured"] == 8000
    assert snap["cameras"]["cam"]["dropped"] == 8000 == snap["dropped"]["queue_full"]


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


def test_process_stats() -> None:
    metrics = Metrics()
    stats = metrics.process_stats()
    assert set(stats) == {"cpu_percent", "rss_mb", "cpu_temperature_c", "throttled"}
    assert stats["rss_mb"] > 10
    assert stats["cpu_percent"] >= 0
    assert stats["cpu_temperature_c"] is None or -40 < stats["cpu_temperature_c"] < 130
    assert process_stats()["rss_mb"] > 10


def test_throttled_flags(tmp_path: Path) -> None:
    assert throttled_flags(tmp_path / "missing") is None
    (tmp_path / "get_throttled").write_text("50005\n")
    flags = throttled_flags(tmp_path / "get_throttled")
    assert flags is not None
    assert flags["raw"] == "0x50005"
    assert flags["under_voltage"] and flags["throttled"] and not flags["freq_capped"]
    assert flags["under_voltage_occurred"] and flags["throttled_occurred"]
    assert decode_throttled("junk") is None
