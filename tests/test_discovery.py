"""Home Assistant discovery: pure payloads against HA's sensor keys, then through the broker."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from camclassd import __version__
from camclassd.mqtt.client import MqttService
from camclassd.mqtt.discovery import discovery_configs, removed_topics
from camclassd.mqtt.payloads import classification_payload, metrics_payload
from tests.broker import Mosquitto
from tests.mqtt_helpers import Subscriber
from tests.test_mqtt_client import (
    make_config,
    make_result,
    sample_metrics,
    schema,
    validate,
    wait_until,
)


def test_payloads_have_only_keys_ha_accepts_with_the_right_types() -> None:
    config = make_config(1883, device="pi-door")
    configs = discovery_configs(config, "1.2.3")
    assert len(configs) == 2 + 3 * 2  # fps, inference p50 + label/score/latency per camera
    accepted = set(schema("ha-discovery-sensor")["properties"])
    for topic, payload in configs.items():
        validate(payload, "ha-discovery-sensor")
        assert set(payload) <= accepted
        object_id = payload["unique_id"].removeprefix("camclassd_pi-door_")
        assert topic == f"homeassistant/sensor/pi-door/{object_id}/config"
        assert payload["availability_topic"] == "camclassd/pi-door/availability"
        assert payload["device"] == configs[next(iter(configs))]["device"]  # one HA device
        for key in ("value_template", "json_attributes_template"):
            if key in payload:
                assert payload[key].startswith("{{") and payload[key].endswith("}}")


def test_unique_ids_are_unique_and_stable() -> None:
    config = make_config(1883, device="pi-door")
    ids = [p["unique_id"] for p in discovery_configs(config, "1.0").values()]
    assert len(set(ids)) == len(ids)
    assert ids == [p["unique_id"] for p in discovery_configs(config, "2.0").values()]
    assert "camclassd_pi-door_front_label" in ids


def test_sensor_details() -> None:
    config = make_config(1883, device="pi-door", qos_results=0)
    by_id = {p["unique_id"]: p for p in discovery_configs(config, "1.0").values()}
    label = by_id["camclassd_pi-door_front_label"]
    assert label["state_topic"] == "camclassd/pi-door/front/classification"
    assert label["json_attributes_topic"] == label["state_topic"]
    assert label["qos"] == 0
    assert "unit_of_measurement" not in label and "state_class" not in label  # text state
    score = by_id["camclassd_pi-door_front_score"]
    assert score["unit_of_measurement"] == "%" and score["state_class"] == "measurement"
    latency = by_id["camclassd_pi-door_front_latency"]
    assert latency["device_class"] == "duration" and latency["unit_of_measurement"] == "ms"
    fps = by_id["camclassd_pi-door_fps"]
    assert fps["state_topic"] == "camclassd/pi-door/metrics"
    assert fps["expire_after"] == 30  # 3 x metrics interval (10 s)
    assert "expire_after" not in label  # publish = on_change may be quiet for hours
    device = label["device"]
    assert device == {
        "identifiers": ["camclassd_pi-door"],
        "name": "Test device",
        "manufacturer": "camclassd",
        "model": "camclassd camera classifier",
        "sw_version": "1.0",
    }


def test_templates_render_against_real_payloads() -> None:
    """The Jinja templates HA will run, rendered with jinja2 when it is installed."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    config = make_config(1883, device="pi-door")
    by_id = {p["unique_id"]: p for p in discovery_configs(config, "1.0").values()}
    result = classification_payload(make_result("front", 1), "pi-door")
    metrics = metrics_payload(sample_metrics(), "pi-door", 1.7e9)

    def render(uid: str, key: str, value: object) -> str:
        return str(env.from_string(by_id[uid][key]).render(value_json=value))

    assert render("camclassd_pi-door_front_label", "value_template", result) == "tabby"
    attributes = json.loads(
        render("camclassd_pi-door_front_label", "json_attributes_template", result)
    )
    assert attributes["top"][1]["label"] == "tiger cat"
    assert render("camclassd_pi-door_front_score", "value_template", result) == "71.0"
    assert render("camclassd_pi-door_front_latency", "value_template", result) == "14.2"
    assert render("camclassd_pi-door_fps", "value_template", metrics) == "9.8"
    assert render("camclassd_pi-door_inference_p50", "value_template", metrics) == "11.8"
    empty = {**result, "top": []}
    assert render("camclassd_pi-door_front_label", "value_template", empty) == "none"


def test_removed_topics_for_a_removed_or_disabled_camera() -> None:
    old = make_config(1883, device="pi-door", cameras=("front", "back"))
    new = make_config(1883, device="pi-door", cameras=("front",))
    assert removed_topics(old, new) == [
        f"homeassistant/sensor/pi-door/back_{kind}/config" for kind in ("label", "latency", "score")
    ]
    assert removed_topics(old, old) == []
    off = old.model_copy(
        update={"homeassistant": old.homeassistant.model_copy(update={"enabled": False})}
    )
    assert len(removed_topics(old, off)) == 8


def test_discovery_on_connect_resent_on_ha_birth_and_removed_on_reload(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port, cameras=("front", "back"))
    device = config.device.resolved_id
    prefix = f"homeassistant/sensor/{device}/"
    sub = subscribers(broker.port, [f"homeassistant/sensor/{device}/#"])
    service = service_factory(config)
    first = sub.collect(lambda m: m.topic.startswith(prefix), 8)
    assert len(first) == 8
    for message in first:
        validate(json.loads(message.payload), "ha-discovery-sensor")
    assert json.loads(first[0].payload)["device"]["sw_version"] == __version__

    # A late subscriber (HA starting after us) gets them retained.
    late = subscribers(broker.port, [f"homeassistant/sensor/{device}/#"])
    retained = late.collect(lambda m: m.topic.startswith(prefix), 8)
    assert len(retained) == 8 and all(m.retain for m in retained)

    # HA's birth message: everything again.
    sub.publish("homeassistant/status", "online")
    assert len(sub.collect(lambda m: m.topic.startswith(prefix), 8)) == 8
    sub.publish("homeassistant/status", "offline")  # ignored

    # Reload without 'back': its three configs are cleared with empty retained payloads.
    service.apply_config(make_config(broker.port, device=device, cameras=("front",)))
    cleared = sub.collect(lambda m: m.topic.startswith(prefix) and m.payload == b"", 3)
    assert sorted(m.topic for m in cleared) == [
        f"{prefix}back_{kind}/config" for kind in ("label", "latency", "score")
    ]
    assert wait_until(lambda: service.connected)  # the session stayed up
    gone = subscribers(broker.port, [f"homeassistant/sensor/{device}/#"])
    assert len(gone.collect(lambda m: m.topic.startswith(prefix), 5)) == 5
    assert not gone.collect(lambda m: m.topic.startswith(prefix), 1, timeout=0.3)


def test_cameras_removed_while_disconnected_are_cleared_on_reconnect(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port, cameras=("front", "back"))
    device = config.device.resolved_id
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    broker.stop()
    assert wait_until(lambda: not service.connected)
    service.apply_config(make_config(broker.port, device=device, cameras=("front",)))
    broker.start()
    sub = subscribers(broker.port, [f"homeassistant/sensor/{device}/#"])
    assert wait_until(lambda: service.connected, timeout=10)
    messages = sub.collect(lambda m: m.topic.endswith("/config"), 8, timeout=2)
    configs = sorted(m.topic.split("/")[3] for m in messages if m.payload)
    assert configs == ["fps", "front_label", "front_latency", "front_score", "inference_p50"]
    cleared = sorted(m.topic.split("/")[3] for m in messages if not m.payload)
    assert cleared == ["back_label", "back_latency", "back_score"]
