"""The Home Assistant entities of one daemon: pure builders of each component's config.

Each builder returns component id -> config with its `platform`, full key names (not HA's
abbreviations), no device/origin/availability (discovery.py adds those, shared in the device
config or copied into each per-component config). Component ids double as the object ids of
the per-component topics, and the unique ids are `camclassd_{device}_{component id}`: both
are today's for the five sensors camclassd has always published, so HA keeps their entity ids
and history.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from camclassd.config import Config
from camclassd.mqtt.topics import Topics

# Metrics arrive every interval_s; a sensor not updated for this many intervals is shown as
# unavailable (catches a hung daemon whose TCP session stays up, so no last will fires).
METRICS_EXPIRE_INTERVALS = 3
MIN_EXPIRE_AFTER_S = 30
# Above this many labels an enum sensor and the event's type list would be unwieldy in HA's
# UI (ImageNet has 1000): the label sensor is plain text and the event type is "changed".
MAX_ENUM_LABELS = 64
NO_LABEL = "none"  # the label sensor's state and the event type while nothing is confident
CHANGED = "changed"
QOS_CONTROL = 1
SNAPSHOT_CONTENT_TYPE = "image/jpeg"
PAUSE_ON = json.dumps({"paused": True})
PAUSE_OFF = json.dumps({"paused": False})


@dataclass(frozen=True, slots=True)
class Features:
    """What the daemon offers beyond the config: each camera's model labels (its enum options
    and event types when there are few) and the cameras whose scene gate is on.

    Labels are per camera because a camera may run a model of its own (a two-state door model
    beside the shared 1000-label one). A camera not in `labels` has none known: a plain label
    sensor and "changed" events."""

    # camera -> its model's labels. Not hashed (a mapping has no hash); equality compares it,
    # which is what a reload's discovery diff needs.
    labels: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    gate_cameras: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls,
        labels: Mapping[str, Sequence[str]] = MappingProxyType({}),
        gate_cameras: Collection[str] = (),
    ) -> Features:
        """`labels`: camera -> its model's labels (copied, read-only)."""
        per_camera = MappingProxyType({camera: tuple(names) for camera, names in labels.items()})
        return cls(per_camera, frozenset(gate_cameras))

    def labels_for(self, camera: str) -> tuple[str, ...]:
        """The labels of the camera's model; () when not known."""
        return self.labels.get(camera, ())


def enabled_cameras(config: Config) -> list[str]:
    return [name for name, camera in config.cameras.items() if camera.enabled]


def enum_labels(labels: Sequence[str]) -> list[str] | None:
    """The label sensor's options (labels, then "none"), or None when there are too many
    (or none known) for an enum."""
    if not labels or len(labels) > MAX_ENUM_LABELS:
        return None
    options = list(dict.fromkeys(label for label in labels if label))
    if NO_LABEL not in options:
        options.append(NO_LABEL)
    return options


def event_types(labels: Sequence[str]) -> list[str]:
    """The event entity's types: the new stable label when the labels are few, else one
    "changed" type (the label is then an attribute)."""
    return enum_labels(labels) or [CHANGED]


def expire_after(config: Config) -> int:
    return max(MIN_EXPIRE_AFTER_S, round(METRICS_EXPIRE_INTERVALS * config.metrics.interval_s))


def _topics(config: Config) -> Topics:
    return Topics(config.mqtt.prefix, config.device.resolved_id)


def _uid(config: Config, component: str) -> str:
    return f"camclassd_{config.device.resolved_id}_{component}"


def camera_components(config: Config, camera: str, features: Features) -> dict[str, dict[str, Any]]:
    """Per camera: label, score, latency (sensors), snapshot (image), label changed (event),
    take snapshot (button), and scene changing (binary sensor) when its gate is on.

    No `expire_after` on the classification sensors: with publish = 'on_change' a camera may
    rightly stay quiet for hours.
    """
    topics = _topics(config)
    state = topics.classification(camera)
    qos = config.mqtt.qos_results
    label: dict[str, Any] = {
        "platform": "sensor",
        "unique_id": _uid(config, f"{camera}_label"),
        "name": f"{camera} label",
        "state_topic": state,
        "qos": qos,
        "value_template": "{{ value_json.top[0].label if value_json.top else 'none' }}",
        "json_attributes_topic": state,
        "json_attributes_template": (
            "{{ {'top': value_json.top, 'stable_label': value_json.stable_label, "
            "'seq': value_json.seq, 'model': value_json.model} | tojson }}"
        ),
        "icon": "mdi:eye",
    }
    labels = features.labels_for(camera)  # its own model's: cameras may differ
    options = enum_labels(labels)
    if options is not None:
        label["device_class"] = "enum"
        label["options"] = options
    components: dict[str, dict[str, Any]] = {
        f"{camera}_label": label,
        f"{camera}_score": {
            "platform": "sensor",
            "unique_id": _uid(config, f"{camera}_score"),
            "name": f"{camera} score",
            "state_topic": state,
            "qos": qos,
            "value_template": (
                "{{ (value_json.top[0].score * 100) | round(1) if value_json.top else 0 }}"
            ),
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "icon": "mdi:percent",
        },
        f"{camera}_latency": {
            "platform": "sensor",
            "unique_id": _uid(config, f"{camera}_latency"),
            "name": f"{camera} latency",
            "state_topic": state,
            "qos": qos,
            "value_template": "{{ value_json.latency_ms.capture_to_publish }}",
            "unit_of_measurement": "ms",
            "device_class": "duration",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "entity_category": "diagnostic",
        },
        f"{camera}_snapshot": {
            "platform": "image",
            "unique_id": _uid(config, f"{camera}_snapshot"),
            "name": f"{camera} snapshot",
            "image_topic": topics.snapshot(camera),
            "content_type": SNAPSHOT_CONTENT_TYPE,
            "qos": 0,
        },
        f"{camera}_label_changed": {
            "platform": "event",
            "unique_id": _uid(config, f"{camera}_label_changed"),
            "name": f"{camera} label changed",
            "state_topic": topics.event(camera),
            "qos": qos,
            "event_types": event_types(labels),
            "icon": "mdi:swap-horizontal",
        },
        f"{camera}_take_snapshot": {
            "platform": "button",
            "unique_id": _uid(config, f"{camera}_take_snapshot"),
            "name": f"{camera} take snapshot",
            "command_topic": topics.command("snapshot"),
            "payload_press": json.dumps({"camera": camera}),
            "qos": QOS_CONTROL,
            "icon": "mdi:camera",
        },
    }
    if camera in features.gate_cameras:
        # Assumes the metrics carry `cameras.{camera}.scene_changing` (a bool) when the gate
        # is on; .get() keeps HA's template free of undefined-variable warnings otherwise.
        components[f"{camera}_scene_changing"] = {
            "platform": "binary_sensor",
            "unique_id": _uid(config, f"{camera}_scene_changing"),
            "name": f"{camera} scene changing",
            "state_topic": topics.metrics,
            "qos": config.mqtt.qos_metrics,
            "value_template": (
                "{% set c = value_json.get('cameras', {}).get("
                + json.dumps(camera)
                + ", {}) %}{{ 'None' if c.get('scene_changing') is none "
                "else ('ON' if c.get('scene_changing') else 'OFF') }}"
            ),
            "device_class": "motion",
            "expire_after": expire_after(config),
        }
    return components


def device_components(config: Config) -> dict[str, dict[str, Any]]:
    """Per device: fps, inference p50, frames dropped, CPU temperature (sensors), throttled
    (binary sensor), reload (button), pause (switch)."""
    topics = _topics(config)
    metrics = topics.metrics
    qos = config.mqtt.qos_metrics
    expire = expire_after(config)

    def metric(component: str, **keys: Any) -> dict[str, Any]:
        return {
            "platform": "sensor",
            "unique_id": _uid(config, component),
            "state_topic": metrics,
            "qos": qos,
            "state_class": "measurement",
            "expire_after": expire,
            **keys,
        }

    return {
        "fps": metric(
            "fps",
            name="fps",
            value_template="{{ value_json.fps }}",
            unit_of_measurement="fps",
            suggested_display_precision=1,
            icon="mdi:speedometer",
        ),
        "inference_p50": metric(
            "inference_p50",
            name="inference latency p50",
            value_template="{{ value_json.latency_ms.inference.p50 }}",
            unit_of_measurement="ms",
            device_class="duration",
            suggested_display_precision=1,
            entity_category="diagnostic",
        ),
        "frames_dropped": metric(
            "frames_dropped",
            name="frames dropped",
            value_template="{{ value_json.frames.dropped }}",
            state_class="total_increasing",  # a counter since start: resets on restart
            entity_category="diagnostic",
            icon="mdi:image-off",
        ),
        "cpu_temperature": metric(
            "cpu_temperature",
            name="CPU temperature",
            # "None" is HA's MQTT word for unknown: no sensor off a Pi-like board.
            value_template="{{ value_json.process.cpu_temperature_c }}",
            unit_of_measurement="°C",
            device_class="temperature",
            suggested_display_precision=1,
            entity_category="diagnostic",
        ),
        "throttled": {
            "platform": "binary_sensor",
            "unique_id": _uid(config, "throttled"),
            "name": "throttled",
            "state_topic": metrics,
            "qos": qos,
            "value_template": (
                "{% set t = value_json.process.throttled %}"
                "{{ 'None' if t is none else ('ON' if t.get('under_voltage') or "
                "t.get('freq_capped') or t.get('throttled') or t.get('soft_temp_limit') "
                "else 'OFF') }}"
            ),
            "device_class": "problem",
            "expire_after": expire,
            "entity_category": "diagnostic",
        },
        "reload": {
            "platform": "button",
            "unique_id": _uid(config, "reload"),
            "name": "reload config",
            "command_topic": topics.command("reload"),
            "payload_press": "{}",
            "qos": QOS_CONTROL,
            "entity_category": "config",
            "icon": "mdi:reload",
        },
        "pause": {
            "platform": "switch",
            "unique_id": _uid(config, "pause"),
            "name": "paused",
            "command_topic": topics.command("pause"),
            "payload_on": PAUSE_ON,
            "payload_off": PAUSE_OFF,
            "state_topic": topics.status,
            "value_template": "{{ value_json.state }}",
            "state_on": "paused",
            "state_off": "running",
            "qos": QOS_CONTROL,
            "icon": "mdi:pause",
        },
    }


def components(config: Config, features: Features) -> dict[str, dict[str, Any]]:
    """Every component of the daemon: component id -> config (with `platform`)."""
    found = device_components(config)
    for camera in enabled_cameras(config):
        found.update(camera_components(config, camera, features))
    return found
