"""Home Assistant discovery: pure payloads against the schemas in docs/schemas/ (the keys HA's
MQTT platforms accept), then through the broker. scripts/test-homeassistant.sh checks the same
payloads against a real Home Assistant."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from camclassd import __version__
from camclassd.config import Config
from camclassd.mqtt.client import MqttService
from camclassd.mqtt.discovery import (
    MIGRATE_PAYLOAD,
    Features,
    components,
    device_config,
    discovery_configs,
    handover_filter,
    handover_messages,
    is_handover_candidate,
    reload_changes,
    removed_topics,
)
from camclassd.mqtt.ha_entities import MAX_ENUM_LABELS
from camclassd.mqtt.payloads import (
    classification_payload,
    encode,
    event_payload,
    metrics_payload,
    status_payload,
)
from tests.broker import Mosquitto
from tests.conftest import LABELS
from tests.mqtt_helpers import Subscriber
from tests.test_mqtt_client import (
    make_config,
    make_result,
    sample_metrics,
    schema,
    validate,
    wait_until,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
PLATFORMS = ("sensor", "binary_sensor", "image", "event", "button", "switch")
LEGACY_IDS = ("fps", "inference_p50", "front_label", "front_score", "front_latency")
DEVICE_IDS = (
    "fps",
    "inference_p50",
    "frames_dropped",
    "cpu_temperature",
    "throttled",
    "reload",
    "pause",
)
CAMERA_IDS = ("label", "score", "latency", "snapshot", "label_changed", "take_snapshot")


def platform_schema(platform: str) -> str:
    return f"ha-discovery-{platform.replace('_', '-')}"


def with_ha(config: Config, **keys: Any) -> Config:
    return config.model_copy(update={"homeassistant": config.homeassistant.model_copy(update=keys)})


def test_the_device_form_is_one_config_with_every_component() -> None:
    config = make_config(1883, device="pi-door")
    configs = discovery_configs(config, "1.2.3")
    assert list(configs) == ["homeassistant/device/pi-door/config"]
    payload = configs["homeassistant/device/pi-door/config"]
    validate(payload, "ha-discovery-device")
    assert payload["origin"] == {"name": "camclassd", "sw_version": "1.2.3"}
    assert payload["availability_topic"] == "camclassd/pi-door/availability"
    expected = set(DEVICE_IDS) | {f"{c}_{k}" for c in ("front", "back") for k in CAMERA_IDS}
    assert set(payload["components"]) == expected
    for cid, component in payload["components"].items():
        assert component["unique_id"] == f"camclassd_pi-door_{cid}"
        assert component["platform"] in PLATFORMS
        validate(component, platform_schema(component["platform"]))
        assert "device" not in component and "availability_topic" not in component  # shared


def test_the_components_form_keeps_todays_topics_and_unique_ids() -> None:
    config = with_ha(
        make_config(1883, device="pi-door", cameras=("front",)), discovery="components"
    )
    configs = discovery_configs(config, "1.0")
    for cid in LEGACY_IDS:  # what camclassd published before the device form
        payload = configs[f"homeassistant/sensor/pi-door/{cid}/config"]
        assert payload["unique_id"] == f"camclassd_pi-door_{cid}"
    for topic, payload in configs.items():
        platform, node, cid = topic.split("/")[1:4]
        assert node == "pi-door" and payload["unique_id"] == f"camclassd_pi-door_{cid}"
        validate(payload, platform_schema(platform))
        assert "platform" not in payload
        assert payload["device"] == device_config(config, "1.0")["device"]  # one HA device


def test_both_forms_give_the_same_discovery_ids() -> None:
    """HA's discovery id is (platform, 'node object'): equal in both forms, which is what lets
    `migrate_discovery` hand an entity over without a new entity id."""
    config = make_config(1883, device="pi-door")
    device = device_config(config, "1.0")["components"]
    from_device = {(c["platform"], f"pi-door {cid}") for cid, c in device.items()}
    per_component = discovery_configs(with_ha(config, discovery="components"), "1.0")
    from_topics = {(t.split("/")[1], f"{t.split('/')[2]} {t.split('/')[3]}") for t in per_component}
    assert from_device == from_topics


def test_sensor_details() -> None:
    config = make_config(1883, device="pi-door", qos_results=0)
    by_id = components(config, Features())
    label = by_id["front_label"]
    assert label["state_topic"] == "camclassd/pi-door/front/classification"
    assert label["json_attributes_topic"] == label["state_topic"]
    assert label["qos"] == 0
    assert "device_class" not in label and "options" not in label  # no labels known: text
    assert "unit_of_measurement" not in label and "state_class" not in label
    score = by_id["front_score"]
    assert score["unit_of_measurement"] == "%" and score["state_class"] == "measurement"
    latency = by_id["front_latency"]
    assert latency["device_class"] == "duration" and latency["entity_category"] == "diagnostic"
    for cid in ("fps", "inference_p50", "frames_dropped", "cpu_temperature", "throttled"):
        assert by_id[cid]["state_topic"] == "camclassd/pi-door/metrics"
        assert by_id[cid]["expire_after"] == 30  # 3 x metrics interval (10 s), at least 30 s
    for cid in ("inference_p50", "frames_dropped", "cpu_temperature", "throttled"):
        assert by_id[cid]["entity_category"] == "diagnostic"
    assert "expire_after" not in label  # publish = on_change may be quiet for hours
    image = by_id["front_snapshot"]
    assert image["image_topic"] == "camclassd/pi-door/front/snapshot"
    assert image["content_type"] == "image/jpeg"
    button = by_id["front_take_snapshot"]
    assert button["command_topic"] == "camclassd/pi-door/cmd/snapshot"
    assert json.loads(button["payload_press"]) == {"camera": "front"}
    assert by_id["reload"]["command_topic"] == "camclassd/pi-door/cmd/reload"
    pause = by_id["pause"]
    assert pause["command_topic"] == "camclassd/pi-door/cmd/pause"
    assert json.loads(pause["payload_on"]) == {"paused": True}
    assert json.loads(pause["payload_off"]) == {"paused": False}
    assert (pause["state_topic"], pause["state_on"], pause["state_off"]) == (
        "camclassd/pi-door/status",
        "paused",
        "running",
    )
    event = by_id["front_label_changed"]
    assert event["state_topic"] == "camclassd/pi-door/front/event"
    assert event["event_types"] == ["changed"]
    device = device_config(config, "1.0")["device"]
    assert device == {
        "identifiers": ["camclassd_pi-door"],
        "name": "Test device",
        "manufacturer": "camclassd",
        "model": "camclassd camera classifier",
        "sw_version": "1.0",
    }


def test_few_labels_make_an_enum_sensor_and_typed_events() -> None:
    config = make_config(1883, device="pi-door", cameras=("front",))
    few = components(config, Features.of(labels={"front": ["cat", "dog", "cat"]}))
    assert few["front_label"]["device_class"] == "enum"
    assert few["front_label"]["options"] == ["cat", "dog", "none"]
    assert few["front_label_changed"]["event_types"] == ["cat", "dog", "none"]
    validate(few["front_label"], "ha-discovery-sensor")
    many = [f"c{i}" for i in range(MAX_ENUM_LABELS + 1)]
    too_many = components(config, Features.of(labels={"front": many}))
    assert "device_class" not in too_many["front_label"]
    assert too_many["front_label_changed"]["event_types"] == ["changed"]
    enough = components(config, Features.of(labels={"front": many[:MAX_ENUM_LABELS]}))
    assert len(enough["front_label"]["options"]) == MAX_ENUM_LABELS + 1


def test_each_camera_gets_the_options_and_event_types_of_its_own_model() -> None:
    """A door camera on a two-state model beside one on the 1000 ImageNet labels: the door's
    sensor is an enum of its labels, the other stays plain text."""
    config = make_config(1883, device="pi-door", cameras=("door", "yard"))
    imagenet = [line.strip() for line in LABELS.read_text().splitlines()]
    assert len(imagenet) == 1000
    features = Features.of(labels={"door": ["open", "closed"], "yard": imagenet})
    assert features.labels_for("door") == ("open", "closed")
    assert features.labels_for("gone") == ()
    by_id = components(config, features)
    assert by_id["door_label"]["device_class"] == "enum"
    assert by_id["door_label"]["options"] == ["open", "closed", "none"]
    assert by_id["door_label_changed"]["event_types"] == ["open", "closed", "none"]
    assert "device_class" not in by_id["yard_label"] and "options" not in by_id["yard_label"]
    assert by_id["yard_label_changed"]["event_types"] == ["changed"]
    for cid in ("door_label", "yard_label"):
        validate(by_id[cid], "ha-discovery-sensor")
    # A camera the features do not know (no labels yet) is plain too.
    unknown = components(config, Features.of(labels={"door": ["open", "closed"]}))
    assert "options" not in unknown["yard_label"]


def test_a_reload_onto_another_model_for_one_camera_changes_only_its_components() -> None:
    config = make_config(1883, device="pi-door", cameras=("door", "yard"))
    before = Features.of(labels={"door": ["cat", "dog"], "yard": ["cat", "dog"]})
    after = Features.of(labels={"door": ["open", "closed"], "yard": ("cat", "dog")})
    assert before != after
    assert after == Features.of(labels={"door": ("open", "closed"), "yard": ["cat", "dog"]})
    assert hash(after) == hash(Features.of(labels={"door": ["open", "closed"]}))  # hashable
    changes = reload_changes(config, config, before, after)
    assert not changes.clear and not changes.handover and not changes.removed
    old, new = components(config, before), components(config, after)
    assert {cid for cid in new if new[cid] != old[cid]} == {"door_label", "door_label_changed"}
    assert new["door_label"]["options"] == ["open", "closed", "none"]


def test_the_gate_sensor_only_for_gated_cameras() -> None:
    config = make_config(1883, device="pi-door", cameras=("front", "back"))
    assert not any(c.endswith("scene_changing") for c in components(config, Features()))
    gated = components(config, Features.of(gate_cameras=["back"]))
    assert "back_scene_changing" in gated and "front_scene_changing" not in gated
    sensor = gated["back_scene_changing"]
    assert sensor["platform"] == "binary_sensor" and sensor["state_topic"].endswith("/metrics")
    validate(sensor, "ha-discovery-binary-sensor")


def test_event_payload() -> None:
    result = make_result("front", 7)
    result.wall_time = 1795515303.123
    payload = event_payload(result, "coffee mug", ["changed"])
    validate(payload, "event")
    assert payload == {
        "event_type": "changed",
        "label": "tabby",
        "previous": "coffee mug",
        "camera": "front",
        "seq": 7,
        "ts": "2026-11-24T10:15:03.123Z",
    }
    assert event_payload(result, None, ["tabby", "none"])["event_type"] == "tabby"
    result.stable_label = None
    assert event_payload(result, "tabby", ["tabby", "none"])["event_type"] == "none"
    validate(event_payload(result, None, ["changed"]), "event")


def test_templates_render_against_real_payloads() -> None:
    """The Jinja templates HA will run, rendered with jinja2 when it is installed."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    config = make_config(1883, device="pi-door")
    by_id = components(config, Features.of(gate_cameras=["front"]))
    result = classification_payload(make_result("front", 1), "pi-door")
    metrics = metrics_payload(sample_metrics(), "pi-door", 1.7e9)

    def render(cid: str, value: object, key: str = "value_template") -> str:
        return str(env.from_string(by_id[cid][key]).render(value_json=value))

    assert render("front_label", result) == "tabby"
    attributes = json.loads(render("front_label", result, "json_attributes_template"))
    assert attributes["top"][1]["label"] == "tiger cat"
    assert render("front_score", result) == "71.0"
    assert render("front_latency", result) == "14.2"
    assert render("fps", metrics) == "9.8"
    assert render("inference_p50", metrics) == "11.8"
    assert render("frames_dropped", metrics) == str(metrics["frames"]["dropped"])
    assert render("front_label", {**result, "top": []}) == "none"
    for temperature, shown in ((52.1, "52.1"), (None, "None")):  # "None": HA's unknown
        process = {**metrics["process"], "cpu_temperature_c": temperature}
        assert render("cpu_temperature", {**metrics, "process": process}) == shown
    for throttled, shown in (
        (None, "None"),
        ({"throttled": False}, "OFF"),
        ({"throttled": True}, "ON"),
    ):
        process = {**metrics["process"], "throttled": throttled}
        assert render("throttled", {**metrics, "process": process}) == shown
    for cameras, shown in (
        ({"front": {"scene_changing": True}}, "ON"),
        ({"front": {"scene_changing": False}}, "OFF"),
        ({}, "None"),
    ):
        assert render("front_scene_changing", {**metrics, "cameras": cameras}) == shown
    status = status_payload({"state": "paused"}, "pi-door", 1.7e9)
    assert render("pause", status) == "paused"


def test_reload_changes_in_the_device_form_are_removal_stubs() -> None:
    old = make_config(1883, device="pi-door", cameras=("front", "back"))
    new = make_config(1883, device="pi-door", cameras=("front",))
    changes = reload_changes(old, new)
    assert not changes.clear and not changes.handover
    assert dict(changes.removed) == {
        "back_label": "sensor",
        "back_score": "sensor",
        "back_latency": "sensor",
        "back_snapshot": "image",
        "back_label_changed": "event",
        "back_take_snapshot": "button",
    }
    payload = device_config(new, "1.0", Features(), changes.removed)
    validate(payload, "ha-discovery-device")
    assert payload["components"]["back_snapshot"] == {"platform": "image"}
    # A camera that comes back is a full component again, not a stub.
    back = device_config(old, "1.0", Features(), changes.removed)
    assert back["components"]["back_snapshot"]["unique_id"] == "camclassd_pi-door_back_snapshot"
    gate_off = reload_changes(old, old, Features.of(gate_cameras=["back"]), Features())
    assert dict(gate_off.removed) == {"back_scene_changing": "binary_sensor"}


def test_reload_changes_in_the_components_form_and_across_forms() -> None:
    old = with_ha(
        make_config(1883, device="pi-door", cameras=("front", "back")), discovery="components"
    )
    new = with_ha(make_config(1883, device="pi-door", cameras=("front",)), discovery="components")
    cleared = removed_topics(old, new)
    assert len(cleared) == len(CAMERA_IDS)
    assert "homeassistant/image/pi-door/back_snapshot/config" in cleared
    assert removed_topics(old, old) == []
    assert len(removed_topics(old, with_ha(old, enabled=False))) == len(DEVICE_IDS) + 2 * len(
        CAMERA_IDS
    )
    to_device = reload_changes(old, with_ha(old, discovery="device"))
    assert set(to_device.handover) == set(discovery_configs(old, ""))
    assert not to_device.clear
    to_components = reload_changes(with_ha(old, discovery="device"), old)
    assert to_components.handover == ("homeassistant/device/pi-door/config",)
    off = reload_changes(with_ha(old, discovery="device"), with_ha(old, enabled=False))
    assert off.clear == ("homeassistant/device/pi-door/config",)


def test_handover_candidates_are_our_configs_of_the_other_form() -> None:
    device_form = make_config(1883, device="pi-door", cameras=("front",))
    components_form = with_ha(device_form, discovery="components")
    assert handover_filter(device_form) == "homeassistant/+/pi-door/+/config"
    assert handover_filter(components_form) == "homeassistant/device/pi-door/config"
    for topic, payload in discovery_configs(components_form, "0.1").items():
        assert is_handover_candidate(device_form, topic, encode(payload))
        assert not is_handover_candidate(components_form, topic, encode(payload))
    ((topic, payload),) = discovery_configs(device_form, "0.1").items()
    assert is_handover_candidate(components_form, topic, encode(payload))
    assert not is_handover_candidate(device_form, topic, encode(payload))
    sensor_topic = "homeassistant/sensor/pi-door/fps/config"
    other = {"unique_id": "x", "device": {"identifiers": ["someone_else"]}}
    abbreviated = {"uniq_id": "x", "dev": {"ids": "camclassd_pi-door"}}
    assert not is_handover_candidate(device_form, sensor_topic, json.dumps(other).encode())
    assert is_handover_candidate(device_form, sensor_topic, json.dumps(abbreviated).encode())
    for junk in (b"", MIGRATE_PAYLOAD, b"{", b"[1]"):
        assert not is_handover_candidate(device_form, sensor_topic, junk)
    assert handover_messages(device_form, "0.1", sensor_topic) == [
        (sensor_topic, b'{"migrate_discovery": true}', False),
        (sensor_topic, b"", True),
    ]
    # The device topic is left with a config without components, not emptied (see the
    # docstring), and that is no candidate for another hand-over.
    migrate, (_, left, retain) = handover_messages(components_form, "0.1", topic)
    assert migrate == (topic, MIGRATE_PAYLOAD, False) and retain
    validate(json.loads(left), "ha-discovery-device")
    assert json.loads(left)["components"] == {}
    assert not is_handover_candidate(components_form, topic, left)


def test_the_entity_table_in_docs_matches_the_code() -> None:
    """docs/mqtt.md's entity table: one row per component, `{camera}` for the camera name."""
    text = (DOCS / "mqtt.md").read_text()
    section = text.split("<!-- entities -->")[1].split("<!-- /entities -->")[0]
    rows = re.findall(r"^\| `([^`]+)` \| (\w+) \| ([^|]+) \|", section, re.MULTILINE)
    documented = {(cid, platform, name.strip()) for cid, platform, name in rows}
    config = make_config(1883, device="pi-door", cameras=("CAM",))
    built = {
        (cid.replace("CAM", "{camera}"), c["platform"], c["name"].replace("CAM", "{camera}"))
        for cid, c in components(config, Features.of(gate_cameras=["CAM"])).items()
    }
    assert documented == built


def test_discovery_on_connect_resent_on_ha_birth_and_stubs_on_reload(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port, cameras=("front", "back"))
    device = config.device.resolved_id
    topic = f"homeassistant/device/{device}/config"
    sub = subscribers(broker.port, [topic])
    service = service_factory(config)
    (first,) = sub.collect(lambda m: m.topic == topic, 1)
    payload = json.loads(first.payload)
    validate(payload, "ha-discovery-device")
    assert payload["device"]["sw_version"] == __version__

    late = subscribers(broker.port, [topic])  # HA starting after us: retained
    (retained,) = late.collect(lambda m: m.topic == topic, 1)
    assert retained.retain

    sub.publish("homeassistant/status", "online")  # HA's birth message: again
    assert len(sub.collect(lambda m: m.topic == topic, 1)) == 1

    service.apply_config(make_config(broker.port, device=device, cameras=("front",)))
    (update,) = sub.collect(lambda m: m.topic == topic, 1)
    stubs = json.loads(update.payload)["components"]
    assert stubs["back_label"] == {"platform": "sensor"}
    assert "unique_id" in stubs["front_label"]
    assert wait_until(lambda: service.connected)  # the session stayed up


def test_the_device_form_hands_over_per_component_configs_first(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    """Today's retained per-component configs get `migrate_discovery`, then are cleared, and
    only then comes the device config (else HA logs a conflicting discovery)."""
    config = make_config(broker.port, cameras=("front",))
    device = config.device.resolved_id
    old = with_ha(config, discovery="components")
    sub = subscribers(broker.port, [f"homeassistant/+/{device}/+/config", "homeassistant/device/#"])
    for topic, payload in discovery_configs(old, "0.1").items():
        sub.publish(topic, encode(payload), retain=True)
    legacy = set(discovery_configs(old, "0.1"))
    sub.collect(lambda m: m.topic in legacy, len(legacy))
    service_factory(config)
    device_topic = f"homeassistant/device/{device}/config"
    messages = sub.collect(lambda m: True, 2 * len(legacy) + 1, timeout=10)
    order = [(m.topic, m.payload) for m in messages]
    assert order[-1][0] == device_topic
    for topic in legacy:
        assert order.index((topic, MIGRATE_PAYLOAD)) < order.index((topic, b""))
    gone = subscribers(broker.port, [f"homeassistant/+/{device}/+/config"])
    assert not gone.collect(lambda m: bool(m.payload), 1, timeout=0.5)


def test_label_changes_are_events(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port, cameras=("front",))
    device = config.device.resolved_id
    sub = subscribers(broker.port, [f"camclassd/{device}/front/event"])
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    service.publish(make_result("front", 0))  # changed (None -> tabby)
    service.publish(make_result("front", 1))  # unchanged: no event
    changed = make_result("front", 2)
    changed.stable_label, changed.changed = "tiger cat", True
    service.publish(changed)
    events = sub.collect(lambda m: True, 2)
    payloads = [json.loads(m.payload) for m in events]
    for payload in payloads:
        validate(payload, "event")
    assert [(p["label"], p["previous"], p["seq"]) for p in payloads] == [
        ("tabby", None, 0),
        ("tiger cat", "tabby", 2),
    ]
    assert not any(m.retain for m in events)
    assert not sub.collect(lambda m: True, 1, timeout=0.3)


def test_each_cameras_events_are_typed_by_its_own_model(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    """The same label change on two cameras: typed on the one whose model has few labels,
    "changed" on the one whose model has too many (or, on reload, labels it no longer has)."""
    config = make_config(broker.port, cameras=("front", "back"))
    device = config.device.resolved_id
    sub = subscribers(broker.port, [f"camclassd/{device}/+/event"])

    def event_types() -> dict[str, str]:  # camera -> event type of the next event of each
        payloads = [json.loads(m.payload) for m in sub.collect(lambda m: True, 2)]
        return {p["camera"]: p["event_type"] for p in payloads}

    service = service_factory(config)
    many = ["tabby", *(f"c{i}" for i in range(MAX_ENUM_LABELS))]
    service.set_features(Features.of(labels={"front": ["tabby", "empty"], "back": many}))
    assert wait_until(lambda: service.connected)
    service.publish(make_result("front", 0))
    service.publish(make_result("back", 0))
    assert event_types() == {"front": "tabby", "back": "changed"}
    service.apply_config(config, Features.of(labels={"front": many, "back": ["tabby"]}))
    for camera in ("front", "back"):
        again = make_result(camera, 1)
        again.changed = True
        service.publish(again)
    assert event_types() == {"front": "changed", "back": "tabby"}


def test_every_ha_schema_is_valid() -> None:
    for name in ["ha-discovery-device", *(platform_schema(p) for p in PLATFORMS)]:
        assert schema(name)["additionalProperties"] is False
