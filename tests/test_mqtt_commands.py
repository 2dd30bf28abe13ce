"""Commands: the pure parser (fuzzed), the handler in-process, then the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from camclassd.commands import (
    COMMANDS,
    Command,
    CommandError,
    error_reply,
    execute,
    parse_command,
)
from camclassd.mqtt.client import MqttService
from camclassd.snapshots import Snapshot, SnapshotPolicy
from tests.broker import Mosquitto
from tests.mqtt_helpers import RecordingTarget, Subscriber
from tests.test_mqtt_client import (
    make_config,
    make_result,
    topic_is,
    validate,
    wait_until,
)

MAX = 4096


# ---- the pure parser --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pause", "resume", "status", "reload", "snapshot"])
@pytest.mark.parametrize("body", [b"", b"  \n", b"{}", b'{"id": "r1"}', b'{"id": 42}'])
def test_valid_commands_parse(name: str, body: bytes) -> None:
    parsed = parse_command(name, body, MAX)
    assert isinstance(parsed, Command) and parsed.name == name and parsed.camera is None
    assert parsed.request_id == (json.loads(body).get("id") if body.strip() else None)


def test_snapshot_takes_a_camera() -> None:
    front = parse_command("snapshot", b'{"camera": "front"}', MAX)
    assert isinstance(front, Command) and (front.camera, front.request_id) == ("front", None)
    every = parse_command("snapshot", b'{"camera": null, "id": 1}', MAX)
    assert isinstance(every, Command) and (every.camera, every.request_id) == (None, 1)


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("pause", b"{", "not valid JSON"),
        ("pause", b"\xff\xfe", "not UTF-8"),
        ("pause", b"[1, 2]", "must be a JSON object, got list"),
        ("pause", b'"pause"', "must be a JSON object, got str"),
        ("pause", b"null", "must be a JSON object, got NoneType"),
        ("explode", b"{}", "unknown command 'explode'"),
        ("pause", b'{"camera": "front"}', "unknown key(s) 'camera' for 'pause'"),
        ("snapshot", b'{"camera": 3}', "'camera' must be a camera name"),
        ("snapshot", b'{"camera": "../x"}', "'camera' must be a camera name"),
        ("status", b'{"id": true}', "'id' must be a string or an integer"),
        ("status", b'{"id": 1.5}', "'id' must be a string or an integer"),
        ("status", b'{"id": 9007199254740993}', "'id' must be within"),
        ("status", b'{"id": "' + b"x" * 200 + b'"}', "at most 128 characters"),
        ("status", b"[" * 3000 + b"]" * 3000, "too large"),
        ("status", b"[" * 2000 + b"]" * 2000, "nested too deeply"),
        ("status", b" " * (MAX + 1), "too large"),
    ],
)
def test_bad_commands_are_errors(name: str, body: bytes, message: str) -> None:
    parsed = parse_command(name, body, MAX)
    assert isinstance(parsed, CommandError)
    assert message in parsed.message


def test_error_keeps_a_valid_id_for_the_reply() -> None:
    parsed = parse_command("pause", b'{"id": "abc", "bogus": 1}', MAX)
    assert isinstance(parsed, CommandError) and parsed.request_id == "abc"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
names = st.sampled_from(["pause", "resume", "status", "reload", "snapshot"]) | st.text(max_size=20)


@settings(max_examples=2000, deadline=None)
@given(name=names, body=st.binary(max_size=300))
def test_parser_never_raises_on_any_bytes(name: str, body: bytes) -> None:
    parsed = parse_command(name, body, 256)
    assert isinstance(parsed, Command | CommandError)


@settings(max_examples=2000, deadline=None)
@given(
    name=names,
    data=json_values
    | st.dictionaries(st.sampled_from(["id", "camera", "paused", "x"]), json_values),
)
def test_parser_never_raises_on_any_json(name: str, data: Any) -> None:
    body = json.dumps(data).encode()
    parsed = parse_command(name, body, MAX)
    assert isinstance(parsed, Command | CommandError)
    if isinstance(parsed, Command):
        assert isinstance(data, dict) and set(data) <= {"id", "camera", "paused"}


# ---- the command table in-process ---------------------------------------------------------------


def run_command(target: RecordingTarget, name: str, body: bytes) -> dict[str, Any]:
    """What a transport and the main thread do with one request: parse, then execute."""
    parsed = parse_command(name, body, MAX)
    reply = error_reply(parsed) if isinstance(parsed, CommandError) else execute(parsed, target)
    validate(reply, "command-reply")
    return reply


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=names,
    body=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(["id", "camera", "paused", "x"]), json_values).map(
        lambda v: json.dumps(v).encode()
    ),
)
def test_every_request_gets_one_reply_and_bad_input_changes_nothing(name: str, body: bytes) -> None:
    target = RecordingTarget()
    try:
        reply = run_command(target, name, body)
    finally:
        target.close()
    parsed = parse_command(name, body, MAX)
    if isinstance(parsed, CommandError):
        assert reply["ok"] is False and reply["error"]
        assert target.calls == [] and target.paused is False
    assert reply["command"] == name


@pytest.mark.parametrize("value", ["1", "0", "null", '"yes"'])
def test_pause_flag_must_be_a_boolean(value: str) -> None:
    parsed = parse_command("pause", f'{{"paused": {value}}}'.encode(), MAX)
    assert isinstance(parsed, CommandError) and "'paused' must be true or false" in parsed.message


def test_a_target_that_raises_gets_an_error_reply() -> None:
    class Broken(RecordingTarget):
        def set_paused(self, paused: bool) -> None:
            raise RuntimeError("camera on fire")

        def status(self) -> dict[str, Any]:
            raise KeyError("status")

    target = Broken()
    reply = run_command(target, "pause", b'{"id": 1}')
    assert reply == {
        "ok": False,
        "command": "pause",
        "id": 1,
        "error": "RuntimeError: camera on fire",
    }
    assert run_command(target, "status", b"")["ok"] is False
    target.close()


def test_unknown_camera_is_an_error_reply() -> None:
    target = RecordingTarget()
    reply = run_command(target, "snapshot", b'{"camera": "nope"}')
    assert reply["ok"] is False and "unknown camera 'nope'" in reply["error"]
    assert target.snapshots == []
    target.close()


def test_pause_takes_paused_false_to_resume_for_a_switch() -> None:
    """One command topic for Home Assistant's switch: {"paused": true|false}."""
    target = RecordingTarget()
    assert run_command(target, "pause", b'{"paused": true}')["result"]["state"] == "paused"
    assert run_command(target, "pause", b'{"paused": false}')["result"]["state"] == "running"
    bad = run_command(target, "pause", b'{"paused": "yes"}')
    assert bad["ok"] is False and "'paused' must be true or false" in bad["error"]
    assert target.calls == ["pause", "resume"]
    target.close()


def test_every_command_in_the_table_is_documented() -> None:
    mqtt_doc = (Path(__file__).parent.parent / "docs" / "mqtt.md").read_text()
    for name, spec in COMMANDS.items():
        assert f"`{name}`" in mqtt_doc, name
        assert spec.summary


# ---- through the broker -----------------------------------------------------------------------


class CommandClient:
    """Sends commands and collects replies, with MQTT 5 response topics when asked."""

    def __init__(self, sub: Subscriber, base: str) -> None:
        self.sub = sub
        self.base = base

    def send(self, name: str, body: bytes | str = b"", **kwargs: Any) -> None:
        self.sub.publish(f"{self.base}/cmd/{name}", body, **kwargs)

    def reply(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        message = self.sub.wait_for(topic_is(f"{self.base}/cmd/{name}/reply"), timeout)
        payload: dict[str, Any] = json.loads(message.payload)
        validate(payload, "command-reply")
        return payload


def connected_service(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
    **overrides: Any,
) -> tuple[MqttService, RecordingTarget, CommandClient]:
    config = make_config(broker.port, **overrides)
    target = RecordingTarget()
    base = f"camclassd/{config.device.resolved_id}"
    sub = subscribers(broker.port, [f"{base}/cmd/+/reply", f"{base}/+/snapshot", "replies/#"])
    service = service_factory(config, target)
    # Commands work once the subscription is in place, which the flush follows.
    assert wait_until(lambda: service.connected and service._outbox._ready)
    return service, target, CommandClient(sub, base)


def test_each_command_works_and_replies(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    _, target, cmd = connected_service(broker, service_factory, subscribers)
    cmd.send("pause", '{"id": "p1"}')
    reply = cmd.reply("pause")
    assert reply["ok"] and reply["id"] == "p1" and reply["result"]["state"] == "paused"
    assert target.paused
    cmd.send("resume")  # empty body = {}
    assert cmd.reply("resume")["result"]["state"] == "running"
    cmd.send("status", '{"id": 5}')
    status = cmd.reply("status")
    assert status["id"] == 5 and status["result"]["cameras"] == ["front", "back"]
    cmd.send("snapshot", '{"camera": "front"}')
    assert cmd.reply("snapshot")["result"] == {"camera": "front"}
    cmd.send("reload")
    assert cmd.reply("reload")["ok"] is True
    target.reload_error = "mqtt.port: 0 is not allowed"
    cmd.send("reload", '{"id": "r2"}')
    failed = cmd.reply("reload")
    assert failed == {"ok": False, "command": "reload", "id": "r2", "error": target.reload_error}
    assert target.calls == ["pause", "resume", "snapshot", "reload", "reload"]


def test_snapshot_command_reaches_the_target_and_a_snapshot_goes_out_as_jpeg(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    service, target, cmd = connected_service(broker, service_factory, subscribers)
    cmd.send("snapshot", '{"camera": "front"}')
    assert cmd.reply("snapshot")["ok"]
    assert target.snapshots == ["front"]
    assert target.served_on == {"test-main"}  # through the inbox, on the serving thread
    image = np.zeros((120, 160, 3), "uint8")
    result = make_result("front", 1)
    service.snapshot(Snapshot("front", 1, result.wall_time, image, result.top))
    jpeg = cmd.sub.wait_for(topic_is(f"{cmd.base}/front/snapshot"))
    assert jpeg.payload[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(jpeg.payload, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (120, 160, 3)
    service.publish(result)  # a result alone never makes a snapshot
    assert not cmd.sub.collect(topic_is(f"{cmd.base}/front/snapshot"), 1, timeout=0.3)


def test_snapshots_are_retained_until_their_camera_is_removed(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port, cameras=("front", "back"), retain_results=True)
    device = config.device.resolved_id
    base = f"camclassd/{device}"
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    send_kept(service, ("front", "back"), results=True)
    kept = [
        f"{base}/{c}/{kind}" for c in ("front", "back") for kind in ("snapshot", "classification")
    ]
    assert wait_until(lambda: sorted(retained(broker.port, f"{base}/+/+")) == sorted(kept))

    service.apply_config(
        make_config(broker.port, device=device, cameras=("front",), retain_results=True)
    )
    # The broker forgets the removed camera's snapshot and result; the running camera's stay.
    front = [f"{base}/front/snapshot", f"{base}/front/classification"]
    assert wait_until(lambda: sorted(retained(broker.port, f"{base}/+/+")) == sorted(front))


def test_a_camera_removed_during_an_outage_is_cleared_after_its_kept_results(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    """Results kept while the broker was away go out on reconnect; the clear of a camera
    removed meanwhile goes after them, so the broker does not keep the removed one's."""
    config = make_config(broker.port, cameras=("front", "back"), retain_results=True)
    device = config.device.resolved_id
    base = f"camclassd/{device}"
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    broker.stop()
    assert wait_until(lambda: not service.connected)
    for camera in ("front", "back"):
        service.publish(make_result(camera, 1))
    service.apply_config(
        make_config(broker.port, device=device, cameras=("front",), retain_results=True)
    )
    broker.start()
    assert wait_until(lambda: service.connected, timeout=10)
    front = [f"{base}/front/classification"]
    assert wait_until(lambda: retained(broker.port, f"{base}/+/+") == front, timeout=10)


def test_turning_retention_off_clears_what_was_retained(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port, cameras=("front",), retain_results=True)
    device = config.device.resolved_id
    base = f"camclassd/{device}"
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    send_kept(service, ("front",), results=True)
    both = sorted([f"{base}/front/classification", f"{base}/front/snapshot"])
    assert wait_until(lambda: sorted(retained(broker.port, f"{base}/+/+")) == both)
    service.apply_config(make_config(broker.port, device=device, cameras=("front",)))
    # retain_results back to its default (off): the result goes; the snapshot stays kept.
    snapshot = [f"{base}/front/snapshot"]
    assert wait_until(lambda: retained(broker.port, f"{base}/+/+") == snapshot)


def test_a_session_replaced_by_a_reload_clears_the_removed_cameras_first(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    """A reload that removes a camera and changes a connection setting: the old session
    clears the camera's retained snapshot before it says offline."""
    config = make_config(broker.port, cameras=("front", "back"))
    device = config.device.resolved_id
    base = f"camclassd/{device}"
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    send_kept(service, ("front", "back"), results=False)
    kept = sorted(f"{base}/{c}/snapshot" for c in ("front", "back"))
    assert wait_until(lambda: sorted(retained(broker.port, f"{base}/+/+")) == kept)
    successor = make_config(broker.port, device=device, cameras=("front",), keepalive_s=30)
    service.retire(successor)
    service.stop()
    assert wait_until(lambda: retained(broker.port, f"{base}/+/+") == [f"{base}/front/snapshot"])


def send_kept(service: MqttService, cameras: tuple[str, ...], *, results: bool) -> None:
    """A snapshot per camera, and its result first when `results`: what the broker retains."""
    image = np.zeros((120, 160, 3), "uint8")
    for camera in cameras:
        result = make_result(camera, 1)
        if results:
            service.publish(result)
        service.snapshot(Snapshot(camera, 1, result.wall_time, image, result.top))


def retained(port: int, topic_filter: str) -> list[str]:
    """The topics the broker holds retained messages on (a fresh subscriber's first burst)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"r-{uuid.uuid4().hex[:8]}")
    found: list[str] = []
    client.on_message = lambda _c, _u, m: found.append(m.topic) if m.retain and m.payload else None
    client.connect("127.0.0.1", port)
    client.subscribe(topic_filter, 1)
    client.loop_start()
    time.sleep(0.3)
    client.loop_stop()
    client.disconnect()
    return found


def test_snapshot_policy_interval_requests_and_rearm() -> None:
    policy = SnapshotPolicy(5.0)
    assert policy.claim(100.0)  # the first frame: due
    assert not policy.claim(101.0)  # within the interval
    policy.request()
    assert policy.claim(101.5)  # a request is served by the next frame
    assert not policy.claim(102.0)
    policy.rearm()  # that frame was lost before it was classified
    assert policy.claim(102.1)
    assert not policy.claim(107.0) and policy.claim(107.2)  # 5 s after the last one
    off = SnapshotPolicy(0.0)
    assert not off.claim(1.0) and not off.claim(1e9)  # 0: only on request
    off.request()
    assert off.claim(2.0) and not off.claim(3.0)


def test_mqtt5_response_topic_and_correlation_data(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    _, _, cmd = connected_service(broker, service_factory, subscribers)
    properties = Properties(PacketTypes.PUBLISH)
    properties.ResponseTopic = "replies/node-red/42"
    properties.CorrelationData = b"\x00corr-7"
    cmd.send("status", '{"id": "x"}', properties=properties)
    message = cmd.sub.wait_for(topic_is("replies/node-red/42"))
    assert message.properties is not None
    assert message.properties.CorrelationData == b"\x00corr-7"
    payload = json.loads(message.payload)
    validate(payload, "command-reply")
    assert payload["ok"] and payload["id"] == "x"


def test_bad_payloads_through_the_broker_get_error_replies_and_change_nothing(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    service, target, cmd = connected_service(broker, service_factory, subscribers)
    bad: list[tuple[str, bytes]] = [
        ("pause", b"{"),
        ("pause", b"\xff"),
        ("pause", b"[]"),
        ("pause", b'{"x": 1}'),
        ("resume", b'{"id": {}}'),
        ("snapshot", b'{"camera": ["front"]}'),
        ("snapshot", b'{"camera": "nope"}'),
        ("reload", b'{"id": 1, "force": true}'),
        ("status", b"1"),
        ("frobnicate", b"{}"),
        ("pause", b"{" * 5000),
        ("pause", b"[" * 2000 + b"]" * 2000),
        ("status", b"\x00" * 10),
    ]
    for name, body in bad:
        cmd.send(name, body)
        reply = cmd.reply(name)
        assert reply["ok"] is False and reply["error"], (name, body)
    assert target.calls == [] and target.paused is False
    assert service.connected
    cmd.send("status")
    assert cmd.reply("status")["ok"] is True  # still answering


def test_fuzzed_payloads_through_the_broker(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    """A smaller hypothesis run end to end: every message gets exactly one reply."""
    service, target, cmd = connected_service(broker, service_factory, subscribers)
    sent: list[tuple[str, bytes]] = []

    @settings(max_examples=40, deadline=None, database=None)
    @given(
        name=st.sampled_from(["pause", "status", "snapshot", "nope"]),
        body=st.binary(max_size=64)
        | st.dictionaries(st.sampled_from(["id", "camera", "x"]), json_values).map(
            lambda v: json.dumps(v).encode()
        ),
    )
    def fuzz(name: str, body: bytes) -> None:
        if name == "pause" and isinstance(parse_command(name, body, MAX), Command):
            return  # a valid pause would change state; that case is tested above
        cmd.send(name, body)
        reply = cmd.reply(name)
        sent.append((name, body))
        assert reply["command"] == name

    fuzz()
    assert len(sent) > 20
    assert target.paused is False and "pause" not in target.calls
    assert service.connected


def test_retained_commands_are_ignored(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    device = f"t{uuid.uuid4().hex[:10]}"
    sub = subscribers(broker.port, ["unused/#"])
    sub.publish(f"camclassd/{device}/cmd/pause", b"{}", retain=True)
    try:
        _, target, _ = connected_service(broker, service_factory, subscribers, device=device)
        time.sleep(0.3)
        assert target.calls == []
    finally:
        sub.publish(f"camclassd/{device}/cmd/pause", b"", retain=True)


def test_a_slow_reload_does_not_block_the_network_thread(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    """Commands run in order on the serving thread; paho's thread only parses: a bad command
    is answered at once while a reload runs, a good one right after the reload."""
    _, target, cmd = connected_service(broker, service_factory, subscribers)
    target.reload_delay = 1.5
    cmd.send("reload", '{"id": "slow"}')
    assert target.reload_started.wait(2)
    started = time.monotonic()
    cmd.send("pause", b"not json")
    assert cmd.reply("pause")["ok"] is False
    assert time.monotonic() - started < 1.0  # not behind the reload
    cmd.send("status", '{"id": "after"}')
    assert cmd.reply("reload")["id"] == "slow"
    assert cmd.reply("status")["id"] == "after"


def test_importing_the_mqtt_package_does_not_load_paho() -> None:
    """`camclassd check-config` must not pay for paho: the package __init__ imports nothing."""
    code = "import sys, camclassd.mqtt; print('paho' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
