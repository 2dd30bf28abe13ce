"""top_k, LabelTracker (hysteresis, stable frames), PublishPolicy, payloads, JsonLinesSink."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camclassd.mqtt.payloads import classification_payload
from camclassd.mqtt.payloads import iso_ts as iso_utc
from camclassd.results import (
    Classification,
    LabelTracker,
    Prediction,
    PublishPolicy,
    ResultProcessor,
    top_k,
)
from camclassd.sinks import JsonLinesSink

LABELS = ["cat", "dog", "car", "cup"]


def top(label: str, score: float) -> tuple[Prediction, ...]:
    return (Prediction(LABELS.index(label), label, score),)


# ---- top_k ----------------------------------------------------------------------------------


def test_top_k_order_ties_and_min_score() -> None:
    probabilities = np.array([0.1, 0.4, 0.4, 0.1], dtype=np.float32)
    result = top_k(probabilities, 3, LABELS)
    assert [p.index for p in result] == [1, 2, 0]  # tie 1/2 -> lower index first
    assert [p.label for p in result] == ["dog", "car", "cat"]
    assert [p.index for p in top_k(probabilities, 3, LABELS, min_score=0.2)] == [1, 2]
    assert top_k(probabilities, 10, LABELS)[-1].index == 3


@given(
    st.lists(st.floats(0, 1, allow_nan=False, width=32), min_size=1, max_size=30), st.integers(1, 8)
)
def test_top_k_matches_a_full_sort(scores: list[float], k: int) -> None:
    labels = [str(i) for i in range(len(scores))]
    result = top_k(np.array(scores, dtype=np.float32), k, labels)
    expected = sorted(range(len(scores)), key=lambda i: (-np.float32(scores[i]), i))[:k]
    assert [p.index for p in result] == expected


# ---- LabelTracker ---------------------------------------------------------------------------


def test_new_label_needs_stable_frames_at_high() -> None:
    tracker = LabelTracker(threshold_high=0.6, threshold_low=0.3, stable_frames=3)
    assert tracker.update(top("cat", 0.9)) == (None, False)
    assert tracker.update(top("cat", 0.9)) == (None, False)
    assert tracker.update(top("cat", 0.9)) == ("cat", True)
    assert tracker.update(top("cat", 0.9)) == ("cat", False)


def test_interrupted_candidate_starts_again() -> None:
    tracker = LabelTracker(0.6, 0.3, 2)
    tracker.update(top("cat", 0.9))
    tracker.update(top("dog", 0.9))  # interrupts cat
    assert tracker.update(top("cat", 0.9)) == (None, False)
    tracker.update(top("dog", 0.5))  # below high: interrupts again
    tracker.update(top("cat", 0.9))
    assert tracker.update(top("cat", 0.9)) == ("cat", True)


def test_hysteresis_between_low_and_high_keeps_label() -> None:
    tracker = LabelTracker(0.6, 0.3, 1)
    assert tracker.update(top("cat", 0.7)) == ("cat", True)
    for score in (0.5, 0.35, 0.59, 0.3):
        assert tracker.update(top("cat", score)) == ("cat", False)
    assert tracker.update(top("cat", 0.29)) == (None, True)
    assert tracker.update(top("cat", 0.5)) == (None, False)  # needs high again


def test_label_missing_from_top_k_counts_as_zero() -> None:
    tracker = LabelTracker(0.6, 0.3, 1)
    tracker.update(top("cat", 0.8))
    assert tracker.update(top("dog", 0.5)) == (None, True)
    assert tracker.update(()) == (None, False)


def test_switch_to_another_label_needs_its_frames() -> None:
    tracker = LabelTracker(0.6, 0.3, 2)
    tracker.update(top("cat", 0.8))
    tracker.update(top("cat", 0.8))
    both = (Prediction(1, "dog", 0.62), Prediction(0, "cat", 0.35))
    assert tracker.update(both) == ("cat", False)  # cat still >= low, dog is candidate 1
    assert tracker.update(both) == ("dog", True)


def test_tracker_validates() -> None:
    with pytest.raises(ValueError):
        LabelTracker(0.3, 0.6, 1)
    with pytest.raises(ValueError):
        LabelTracker(0.6, 0.3, 0)


frames_strategy = st.lists(
    st.tuples(st.sampled_from(LABELS), st.floats(0, 1, allow_nan=False)), max_size=80
)


@settings(max_examples=200)
@given(frames_strategy, st.integers(1, 6), st.floats(0, 1), st.floats(0, 1))
def test_stable_label_never_flips_faster_than_stable_frames(
    frames: list[tuple[str, float]], stable_frames: int, a: float, b: float
) -> None:
    low, high = sorted((a, b))
    tracker = LabelTracker(high, low, stable_frames)
    last_switch: int | None = None
    previous: str | None = None
    for index, (label, score) in enumerate(frames):
        stable, changed = tracker.update(top(label, score))
        assert changed == (stable != previous)
        if stable is not None and changed:
            # Becoming a label needs stable_frames frames of it at >= high, after the last switch.
            assert all(frames[i][0] == stable for i in range(index - stable_frames + 1, index + 1))
            assert all(frames[i][1] >= high for i in range(index - stable_frames + 1, index + 1))
            if last_switch is not None:
                assert index - last_switch >= stable_frames
            last_switch = index
        if stable is not None and not changed:
            assert score >= low or label != stable  # kept only while its score holds >= low
        previous = stable


# ---- PublishPolicy --------------------------------------------------------------------------


def test_publish_every() -> None:
    policy = PublishPolicy("every")
    assert all(policy.should_publish(t * 0.001, False) for t in range(5))


def test_publish_on_change_first_always() -> None:
    policy = PublishPolicy("on_change")
    assert policy.should_publish(0.0, False)  # first result
    assert not policy.should_publish(0.1, False)
    assert policy.should_publish(0.2, True)
    assert not policy.should_publish(0.3, False)


def test_publish_max_rate() -> None:
    policy = PublishPolicy("max_rate", max_rate_hz=2.0)
    times = [0.0, 0.1, 0.3, 0.5, 0.6, 0.99, 1.0, 1.2, 1.6]
    published = [t for t in times if policy.should_publish(t, False)]
    assert published == [0.0, 0.5, 1.0, 1.6]


@given(st.lists(st.floats(0, 0.2), min_size=1, max_size=100), st.floats(0.5, 50))
def test_max_rate_never_exceeded(gaps: list[float], rate: float) -> None:
    policy = PublishPolicy("max_rate", max_rate_hz=rate)
    now, published = 0.0, []
    for gap in gaps:
        now += gap
        if policy.should_publish(now, True):
            published.append(now)
    assert published and published[0] == gaps[0]
    assert all(b - a >= 1 / rate - 1e-12 for a, b in itertools.pairwise(published))


# ---- payloads and the stdout sink -----------------------------------------------------------


def make_result() -> Classification:
    wall = datetime(2026, 11, 24, 10, 15, 3, 123456, tzinfo=UTC).timestamp()
    return Classification(
        camera="front",
        seq=1842,
        wall_time=wall,
        model="efficientnet_lite0_uint8",
        top=(Prediction(281, "tabby", 0.712345), Prediction(282, "tiger cat", 0.12)),
        stable_label="tabby",
        changed=False,
        latency_ms={"capture_to_publish": 14.23456, "inference": 11.8},
    )


def test_iso_utc_milliseconds() -> None:
    assert iso_utc(make_result().wall_time) == "2026-11-24T10:15:03.123Z"


def test_classification_payload_matches_design() -> None:
    payload = classification_payload(make_result(), "pi-door")
    assert list(payload) == [
        "ts", "device", "camera", "seq", "model", "top", "stable_label", "latency_ms"
    ]  # fmt: skip
    assert payload["top"][0] == {"label": "tabby", "index": 281, "score": 0.7123}
    assert payload["latency_ms"]["capture_to_publish"] == 14.235
    assert "device" not in classification_payload(make_result(), None)


def test_json_lines_sink_one_object_per_line() -> None:
    stream = io.StringIO()
    sink = JsonLinesSink(stream)
    sink.publish(make_result())
    sink.publish(make_result())
    sink.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["ts"] == "2026-11-24T10:15:03.123Z"
    assert record["camera"] == "front" and record["seq"] == 1842
    assert record["stable_label"] == "tabby"
    assert not stream.closed  # the caller owns the stream


class ReaderGone(io.StringIO):
    """A stream whose reader has gone away, like stdout piped into `head`."""

    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_json_lines_sink_stops_quietly_when_the_reader_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = JsonLinesSink(ReaderGone())
    for _ in range(3):
        sink.publish(make_result())  # no exception reaches the pipeline
    sink.close()
    assert caplog.text.count("no longer printed") == 1


def test_result_processor_chains_top_k_tracker_and_policy() -> None:
    processor = ResultProcessor(
        LABELS,
        top=2,
        min_score=0.0,
        tracker=LabelTracker(0.6, 0.4, 2),
        policy=PublishPolicy("on_change"),
    )
    dog = np.array([0.1, 0.8, 0.05, 0.05], dtype=np.float32)
    cat = np.array([0.7, 0.2, 0.05, 0.05], dtype=np.float32)

    def feed(row: np.ndarray, seq: int) -> tuple[Classification, bool]:
        return processor.process(
            row, camera="c", seq=seq, wall_time=0.0, model="m", now=float(seq), latency_ms={}
        )

    first, published = feed(dog, 1)
    assert (
        published
        and first.stable_label is None
        and [p.label for p in first.top]
        == [
            "dog",
            "cat",
        ]
    )
    assert processor.label_pending  # dog seen once, needs two in a row
    second, published = feed(dog, 2)
    assert published and second.changed and second.stable_label == "dog"
    assert not processor.label_pending
    third, published = feed(dog, 3)
    assert not published and not third.changed  # on_change: nothing new
    fourth, published = feed(cat, 4)
    assert fourth.stable_label is None and fourth.changed and published  # dog fell below low
    assert processor.label_pending and processor.last is fourth
