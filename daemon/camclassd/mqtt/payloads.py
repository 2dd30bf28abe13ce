"""Pure builders of every JSON payload camclassd publishes (schemas in docs/schemas/).

No I/O here: each function maps values to a JSON-ready dict, so the payloads can be tested and
validated against their schema without a broker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from camclassd.results import Classification, Prediction

if TYPE_CHECKING:  # the renderer reads attributes only: no numpy/psutil import for `watch`
    from camclassd.metrics import MetricsSnapshot, Percentiles
    from camclassd.procstats import ProcessStats

# The MQTT link's values in the metrics model (named "mqtt_" + key), as the payload's "mqtt".
MQTT_LINK_GAUGES = ("buffered", "connected")
MQTT_LINK_COUNTERS = ("dropped", "delivered_after_reconnect", "reconnects")
# The per-camera keys of the payload: "published" is counted per camera but not shown there.
CAMERA_PAYLOAD_SKIPS = frozenset({"published"})


def iso_ts(wall_time: float) -> str:
    """UTC ISO 8601 with milliseconds and a `Z`, e.g. `2026-11-24T10:15:03.123Z`."""
    stamp = datetime.fromtimestamp(wall_time, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def classification_payload(result: Classification, device: str | None) -> dict[str, Any]:
    """One classified frame, for MQTT and the stdout sink alike (no `device` key when None),
    strictly JSON-safe: a NaN latency becomes null instead of failing to encode."""
    payload: dict[str, Any] = {"ts": iso_ts(result.wall_time)}
    if device is not None:
        payload["device"] = device
    payload.update(
        camera=result.camera,
        seq=result.seq,
        model=result.model,
        top=[{"label": p.label, "index": p.index, "score": round(p.score, 4)} for p in result.top],
        stable_label=result.stable_label,
        latency_ms={stage: round(ms, 3) for stage, ms in result.latency_ms.items()},
    )
    safe: dict[str, Any] = json_safe(payload)
    return safe


def event_payload(
    result: Classification, previous: str | None, event_types: Sequence[str]
) -> dict[str, Any]:
    """The stable label changed (`{camera}/event`, for HA's event entity): `event_type` is
    the new label when it is one of `event_types` (few labels), else "changed"; no label
    (nothing confident) is "none"."""
    label = result.stable_label
    shown = label if label is not None else "none"
    return {
        "event_type": shown if shown in event_types else "changed",
        "label": label,
        "previous": previous,
        "camera": result.camera,
        "seq": result.seq,
        "ts": iso_ts(result.wall_time),
    }


def mqtt_counters(
    *, buffered: int, dropped: int, delivered_after_reconnect: int, reconnects: int, connected: bool
) -> dict[str, Any]:
    return {
        "buffered": buffered,
        "dropped": dropped,
        "delivered_after_reconnect": delivered_after_reconnect,
        "reconnects": reconnects,
        "connected": connected,
    }


def metrics_payload(snapshot: MetricsSnapshot, device: str, wall_time: float) -> dict[str, Any]:
    """The metrics message (docs/schemas/metrics.schema.json): the one rendering of a
    `MetricsSnapshot` for MQTT, with the time and the device."""
    payload: dict[str, Any] = {
        "ts": iso_ts(wall_time),
        "device": device,
        "uptime_s": round(snapshot.uptime_s, 3),
        "fps": round(snapshot.fps, 3),
        "frames": snapshot.frames(),
        "dropped": snapshot.dropped(),
        "cameras": {
            name: {
                **{k: v for k, v in camera.counters.items() if k not in CAMERA_PAYLOAD_SKIPS},
                **{k: round(v, 3) for k, v in camera.gauges.items()},
                "fps": round(camera.fps, 3),
                "gate_open_ratio": gate_open_ratio(camera.counters),
            }
            for name, camera in snapshot.cameras.items()
        },
        "latency_ms": {stage: percentiles_ms(p) for stage, p in snapshot.latency.items()},
    }
    if snapshot.process is not None:
        payload["process"] = process_payload(snapshot.process)
    payload["mqtt"] = mqtt_counters(
        buffered=int(snapshot.gauges.get("mqtt_buffered", 0)),
        dropped=snapshot.counters.get("mqtt_dropped", 0),
        delivered_after_reconnect=snapshot.counters.get("mqtt_delivered_after_reconnect", 0),
        reconnects=snapshot.counters.get("mqtt_reconnects", 0),
        connected=bool(snapshot.gauges.get("mqtt_connected", 0)),
    )
    rendered: dict[str, Any] = json_safe(payload)
    return rendered


def gate_open_ratio(counts: Mapping[str, int]) -> float | None:
    """The share of captured frames the camera's stage let through, since start; None before
    any."""
    captured = counts.get("captured", 0)
    if captured <= 0:
        return None
    return round(max(0, captured - counts.get("gated", 0)) / captured, 4)


def percentiles_ms(p: Percentiles) -> dict[str, float | int]:
    """A stage's percentiles in milliseconds, as the payload has them (3 decimals)."""
    return {
        "p50": round(p.p50_s * 1000.0, 3),
        "p90": round(p.p90_s * 1000.0, 3),
        "p99": round(p.p99_s * 1000.0, 3),
        "max": round(p.max_s * 1000.0, 3),
        "count": p.count,
    }


def process_payload(stats: ProcessStats) -> dict[str, Any]:
    throttled = stats.throttled
    return {
        "cpu_percent": round(stats.cpu_percent, 1),
        "rss_mb": round(stats.rss_bytes / 2**20, 1),
        "cpu_temperature_c": stats.cpu_temperature_c,
        "throttled": None
        if throttled is None
        else {"raw": f"0x{throttled.word:x}", **throttled.flags()},
    }


def status_payload(status: Mapping[str, Any], device: str, wall_time: float) -> dict[str, Any]:
    """The retained status: what `CommandTarget.status()` returns, with the time and device."""
    payload: dict[str, Any] = {"ts": iso_ts(wall_time), "device": device}
    payload.update(json_safe(dict(status)))
    return payload


def reply_payload(
    command: str,
    *,
    ok: bool,
    request_id: str | int | None = None,
    error: str | None = None,
    result: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A command reply: `ok`, the command, the request's `id` echoed (null if none)."""
    payload: dict[str, Any] = {"ok": ok, "command": command, "id": request_id}
    if error is not None:
        payload["error"] = error
    if result is not None:
        payload["result"] = json_safe(dict(result))
    return payload


def json_safe(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN/inf -> null, tuples -> lists, other
    objects -> str (a payload must never fail to encode)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; strict (no NaN), because consumers such as HA templates choke."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def snapshot_jpeg(
    image: Any, top: Sequence[Prediction], caption: str = "", quality: int = 85
) -> bytes:
    """The frame (RGB uint8) as a JPEG with the top-3 written on it, top-left."""
    import cv2  # noqa: PLC0415 (OpenCV is heavy; only snapshots need it here)
    import numpy as np  # noqa: PLC0415

    frame = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    height = frame.shape[0]
    scale = max(0.4, height / 720)
    line_h = int(28 * scale)
    lines = [caption] if caption else []
    lines += [f"{p.label} {p.score:.0%}" for p in top[:3]]
    if lines:
        width = max(
            cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, 2)[0][0] for t in lines
        )
        cv2.rectangle(frame, (0, 0), (width + 16, line_h * len(lines) + 10), (0, 0, 0), -1)
    for row, text in enumerate(lines):
        origin = (8, line_h * (row + 1))
        cv2.putText(
            frame,
            text,
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7 * scale,
            (255, 255, 255),
            2,
            cv2.LINE_AA,
        )
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buffer)
