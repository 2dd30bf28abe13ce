"""Pure payload builders, the JSON Schemas in docs/schemas/, the store, the snapshot JPEG."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camclassd.metrics import Metrics
from camclassd.mqtt.payloads import (
    classification_payload,
    encode,
    json_safe,
    metrics_payload,
    reply_payload,
    snapshot_jpeg,
    status_payload,
)
from camclassd.mqtt.store import Pending, Store
from camclassd.mqtt.topics import Topics
from camclassd.results import Classification, Prediction
from tests.mqtt_helpers import RecordingTarget
from tests.test_mqtt_client import (
    SCHEMAS,
    TOP3,
    make_result,
    sample_metrics,
    schema,
    validate,
)

SCHEMA_NAMES = [
    "classification",
    "metrics",
    "status",
    "command-reply",
    "event",
    "ha-discovery-device",
    *(
        f"ha-discovery-{p}"
        for p in ("sensor", "binary-sensor", "image", "event", "button", "switch")
    ),
]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    loaded = schema(name)
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(loaded)


def test_every_schema_file_is_tested() -> None:
    assert sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.json")) == sorted(
        SCHEMA_NAMES
    )


def test_classification_payload_is_the_design_contract() -> None:
    result = make_result("front", 1842)
    result.wall_time = 1795515303.123
    payload = classification_payload(result, "pi-door")
    validate(payload, "classification")
    assert payload == {
        "ts": "2026-11-24T10:15:03.123Z",
        "device": "pi-door",
        "camera": "front",
        "seq": 1842,
        "model": "efficientnet_lite0_uint8",
        "top": [
            {"label": "tabby", "index": 281, "score": 0.71},
            {"label": "tiger cat", "index": 282, "score": 0.12},
            {"label": "Egyptian cat", "index": 285, "score": 0.05},
        ],
        "stable_label": "tabby",
        "latency_ms": {
            "capture_to_publish": 14.2,
            "queue": 0.4,
            "preprocess": 0.9,
            "inference": 11.8,
        },
    }


def test_classification_payload_survives_nan_numpy_and_empty_top() -> None:
    result = Classification(
        camera="front",
        seq=3,
        wall_time=1.0e9,
        model="m",
        top=(Prediction(1, "a", float(np.float32(0.5))),),
        stable_label=None,
        changed=False,
        latency_ms={"capture_to_publish": math.nan, "inference": float(np.float64(2.5))},
    )
    payload = classification_payload(result, "dev")
    validate(payload, "classification")
    assert payload["latency_ms"]["capture_to_publish"] is None
    json.loads(encode(payload))
    empty = classification_payload(
        Classification("front", 4, 1.0e9, "m", (), None, False, {}), "dev"
    )
    validate(empty, "classification")


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(min_value=0, max_value=2**40),
    top=st.lists(
        st.tuples(st.integers(0, 10_000), st.text(max_size=40), st.floats(0, 1)), max_size=5
    ),
    latency=st.dictionaries(
        st.sampled_from(["capture_to_publish", "queue", "preprocess", "inference"]),
        st.one_of(st.floats(0, 1e6), st.just(math.nan), st.just(math.inf)),
    ),
    label=st.one_of(st.none(), st.text(max_size=40)),
)
def test_classification_payload_always_encodes_and_validates(
    seq: int, top: list[tuple[int, str, float]], latency: dict[str, float], label: str | None
) -> None:
    result = Classification(
        camera="cam_1",
        seq=seq,
        wall_time=1.7e9,
        model="m",
        top=tuple(Prediction(i, lab, s) for i, lab, s in top),
        stable_label=label,
        changed=False,
        latency_ms=latency,
    )
    payload = classification_payload(result, "dev")
    validate(payload, "classification")
    assert json.loads(encode(payload)) == payload


def test_metrics_payload_validates_and_survives_numpy_and_nan() -> None:
    snapshot = sample_metrics()
    inference = dataclasses.replace(snapshot.latency["inference"], p99_s=math.nan)
    snapshot = dataclasses.replace(
        snapshot,
        fps=np.float64(9.8),  # numpy scalars from percentile maths
        latency={**snapshot.latency, "inference": inference},
    )
    payload = metrics_payload(snapshot, "pi-door", 1.7e9)
    validate(payload, "metrics")
    assert payload["fps"] == 9.8 and isinstance(payload["fps"], float)
    assert payload["latency_ms"]["inference"]["p99"] is None
    assert payload["device"] == "pi-door" and payload["ts"] == "2023-11-14T22:13:20.000Z"
    json.loads(encode(payload))


def test_metrics_payload_keys_are_the_documented_ones() -> None:
    """The MQTT rendering keeps the keys (and their order) of every earlier release."""
    payload = metrics_payload(sample_metrics(), "pi-door", 1.7e9)
    assert list(payload) == [
        "ts", "device", "uptime_s", "fps", "frames", "dropped", "cameras", "latency_ms",
        "process", "mqtt",
    ]  # fmt: skip
    # Extended, never changed: "gated" (frames a camera's gate skipped) joined the counters.
    assert payload["frames"] == {
        "captured": 120, "gated": 0, "classified": 118, "published": 118, "dropped": 2,
        "errors": 0, "reconnects": 0,
    }  # fmt: skip
    assert payload["dropped"] == {"queue_full": 2}
    front = payload["cameras"]["front"]
    assert list(front) == [
        "captured", "gated", "classified", "dropped", "errors", "reconnects", "fps",
        "gate_open_ratio",
    ]  # fmt: skip
    assert front["fps"] == 9.8 == payload["fps"]
    assert list(payload["latency_ms"]) == [
        "capture_to_publish", "queue", "preprocess", "inference", "postprocess"
    ]  # fmt: skip
    inference = payload["latency_ms"]["inference"]
    assert list(inference) == ["p50", "p90", "p99", "max", "count"]
    assert inference["count"] == 118 and inference["p50"] == pytest.approx(11.8, abs=0.01)
    assert list(payload["process"]) == ["cpu_percent", "rss_mb", "cpu_temperature_c", "throttled"]
    assert payload["mqtt"] == {
        "buffered": 0, "dropped": 0, "delivered_after_reconnect": 0, "reconnects": 0,
        "connected": False,
    }  # fmt: skip


def test_metrics_payload_shows_the_parts_added_later() -> None:
    """Counters and gauges that other parts record (a gate's, the MQTT link's) extend it."""
    metrics = Metrics(window=10, cameras=["front"], sample_process=False)
    for _ in range(28):
        metrics.captured("front")
    metrics.gated("front", 7)
    metrics.set_gauge("mqtt_buffered", 3)
    metrics.set_gauge("mqtt_connected", 1)
    metrics.set_counter("mqtt_dropped", 4)
    payload = metrics_payload(metrics.snapshot(), "pi-door", 1.7e9)
    validate(payload, "metrics")
    assert payload["frames"]["gated"] == 7 == payload["cameras"]["front"]["gated"]
    assert payload["cameras"]["front"]["gate_open_ratio"] == 0.75  # 21 of 28 let through
    assert "process" not in payload
    assert payload["mqtt"] == {
        "buffered": 3, "dropped": 4, "delivered_after_reconnect": 0, "reconnects": 0,
        "connected": True,
    }  # fmt: skip


def test_metrics_schema_rejects_a_payload_without_counters() -> None:
    payload = metrics_payload(sample_metrics(), "pi-door", 1.7e9)
    del payload["mqtt"]
    with pytest.raises(jsonschema.ValidationError):
        validate(payload, "metrics")


def test_status_payload_validates() -> None:
    payload = status_payload(RecordingTarget().status(), "pi-door", 1.7e9)
    validate(payload, "status")
    assert payload["state"] == "running" and payload["device"] == "pi-door"


@pytest.mark.parametrize(
    "payload",
    [
        reply_payload("pause", ok=True, request_id=7, result={"state": "paused"}),
        reply_payload("status", ok=True, request_id="abc", result=RecordingTarget().status()),
        reply_payload("reload", ok=False, request_id=None, error="bad config"),
        reply_payload("nope", ok=False, error="unknown command 'nope'"),
    ],
)
def test_reply_payloads_validate(payload: dict[str, Any]) -> None:
    validate(payload, "command-reply")
    assert "id" in payload


def test_reply_schema_requires_error_exactly_when_not_ok() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate({"ok": False, "command": "pause", "id": None}, "command-reply")
    with pytest.raises(jsonschema.ValidationError):
        validate({"ok": True, "command": "pause", "id": None, "error": "x"}, "command-reply")


def test_json_safe_plain_types_only() -> None:
    value = {"a": (1, np.int64(2)), "b": {np.float32(0.5)}, "c": math.inf, 3: object}
    safe = json_safe(value)
    assert safe["a"] == [1, 2] and safe["b"] == [0.5] and safe["c"] is None
    assert isinstance(safe["3"], str)
    json.dumps(safe, allow_nan=False)


def test_topics() -> None:
    topics = Topics("camclassd", "pi-door")
    assert topics.availability == "camclassd/pi-door/availability"
    assert topics.classification("front") == "camclassd/pi-door/front/classification"
    assert topics.snapshot("front") == "camclassd/pi-door/front/snapshot"
    assert topics.reply("pause") == "camclassd/pi-door/cmd/pause/reply"
    assert topics.command_name("camclassd/pi-door/cmd/pause") == "pause"
    assert topics.command_name("camclassd/pi-door/cmd/pause/reply") is None
    assert topics.command_name("camclassd/other/cmd/pause") is None


def test_store_keeps_the_newest_and_counts_drops() -> None:
    store = Store(3)
    for i in range(5):
        store.put(Pending("t", str(i).encode(), 1, False))
    assert len(store) == 3 and store.dropped == 2
    first = store.pop()
    assert first is not None and first.payload == b"2"
    store.put_back(first)
    assert [store.pop().payload for _ in range(3)] == [b"2", b"3", b"4"]  # type: ignore[union-attr]
    assert store.pop() is None
    store.put(Pending("t", b"x", 0, False))
    store.resize(0)
    assert len(store) == 0 and store.dropped == 3
    store.put(Pending("t", b"y", 0, False))
    assert len(store) == 0 and store.dropped == 4


def test_snapshot_jpeg_has_the_frame_size_and_the_text() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, :, 0] = 200  # red in RGB
    jpeg = snapshot_jpeg(image, TOP3, "pi-door/front #1")
    assert jpeg[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, 320, 3)
    # RGB went in, so the BGR decode has red in channel 2 away from the caption box...
    assert decoded[230, 300, 2] > 150 and decoded[230, 300, 0] < 60
    # ...and the caption box top-left holds white text on black.
    box = decoded[:60, :150]
    assert box.max() > 200 and np.median(box) < 50
