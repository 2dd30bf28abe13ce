"""Home Assistant MQTT discovery: pure functions from the config to retained sensor configs.

Full key names (not HA's abbreviations) throughout, so the payloads read like HA's docs and
match docs/schemas/ha-discovery-sensor.schema.json, which lists the keys HA's MQTT sensor
schema accepts.
"""

from __future__ import annotations

from typing import Any

from camclassd.config import Config
from camclassd.mqtt.topics import Topics, discovery_topic

CAMERA_OBJECTS = ("label", "score", "latency")
DEVICE_OBJECTS = ("fps", "inference_p50")
# Metrics arrive every interval_s; a sensor not updated for this many intervals is shown as
# unavailable (catches a hung daemon whose TCP session stays up, so no last will fires).
METRICS_EXPIRE_INTERVALS = 3
MIN_EXPIRE_AFTER_S = 30


def enabled_cameras(config: Config) -> list[str]:
    return [name for name, camera in config.cameras.items() if camera.enabled]


def device_block(config: Config, version: str) -> dict[str, Any]:
    device = config.device.resolved_id
    return {
        "identifiers": [f"camclassd_{device}"],
        "name": config.device.name or device,
        "manufacturer": "camclassd",
        "model": "camclassd camera classifier",
        "sw_version": version,
    }


def _common(config: Config, version: str, object_id: str) -> dict[str, Any]:
    device = config.device.resolved_id
    return {
        "unique_id": f"camclassd_{device}_{object_id}",
        "availability_topic": Topics(config.mqtt.prefix, device).availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device_block(config, version),
        "origin": {"name": "camclassd", "sw_version": version},
    }


def camera_sensors(config: Config, camera: str, version: str) -> dict[str, dict[str, Any]]:
    """object id -> config for one camera: top label (top-3 as attributes), score, latency.

    No `expire_after` here: with publish = 'on_change' a camera may rightly stay quiet for hours.
    """
    topic = Topics(config.mqtt.prefix, config.device.resolved_id).classification(camera)
    qos = config.mqtt.qos_results
    return {
        f"{camera}_label": {
            **_common(config, version, f"{camera}_label"),
            "name": f"{camera} label",
            "state_topic": topic,
            "qos": qos,
            "value_template": "{{ value_json.top[0].label if value_json.top else 'none' }}",
            "json_attributes_topic": topic,
            "json_attributes_template": (
                "{{ {'top': value_json.top, 'stable_label': value_json.stable_label, "
                "'seq': value_json.seq, 'model': value_json.model} | tojson }}"
            ),
            "icon": "mdi:eye",
        },
        f"{camera}_score": {
            **_common(config, version, f"{camera}_score"),
            "name": f"{camera} score",
            "state_topic": topic,
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
            **_common(config, version, f"{camera}_latency"),
            "name": f"{camera} latency",
            "state_topic": topic,
            "qos": qos,
            "value_template": "{{ value_json.latency_ms.capture_to_publish }}",
            "unit_of_measurement": "ms",
            "device_class": "duration",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "entity_category": "diagnostic",
        },
    }


def device_sensors(config: Config, version: str) -> dict[str, dict[str, Any]]:
    """object id -> config for the device-wide sensors read from the metrics topic."""
    topic = Topics(config.mqtt.prefix, config.device.resolved_id).metrics
    expire = max(MIN_EXPIRE_AFTER_S, round(METRICS_EXPIRE_INTERVALS * config.metrics.interval_s))
    return {
        "fps": {
            **_common(config, version, "fps"),
            "name": "fps",
            "state_topic": topic,
            "qos": config.mqtt.qos_metrics,
            "value_template": "{{ value_json.fps }}",
            "unit_of_measurement": "fps",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "expire_after": expire,
            "icon": "mdi:speedometer",
        },
        "inference_p50": {
            **_common(config, version, "inference_p50"),
            "name": "inference latency p50",
            "state_topic": topic,
            "qos": config.mqtt.qos_metrics,
            "value_template": "{{ value_json.latency_ms.inference.p50 }}",
            "unit_of_measurement": "ms",
            "device_class": "duration",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "expire_after": expire,
            "entity_category": "diagnostic",
        },
    }


def discovery_configs(config: Config, version: str) -> dict[str, dict[str, Any]]:
    """Every retained discovery message: topic -> payload."""
    device = config.device.resolved_id
    prefix = config.homeassistant.discovery_prefix
    sensors = device_sensors(config, version)
    for camera in enabled_cameras(config):
        sensors.update(camera_sensors(config, camera, version))
    return {discovery_topic(prefix, device, oid): payload for oid, payload in sensors.items()}


def camera_topics(config: Config, camera: str) -> list[str]:
    prefix = config.homeassistant.discovery_prefix
    device = config.device.resolved_id
    return [discovery_topic(prefix, device, f"{camera}_{kind}") for kind in CAMERA_OBJECTS]


def removed_topics(old: Config, new: Config) -> list[str]:
    """Discovery topics to clear (empty retained payload) when going from `old` to `new`:
    cameras removed or disabled, and everything if the device id or discovery prefix moved
    or discovery was turned off."""
    old_topics = set(discovery_configs(old, "")) if old.homeassistant.enabled else set()
    new_topics = set(discovery_configs(new, "")) if new.homeassistant.enabled else set()
    return sorted(old_topics - new_topics)
