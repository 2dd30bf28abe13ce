"""MqttService against a real mosquitto: publishing, availability, outages, auth, TLS.

The helpers at the top (Subscriber, RecordingTarget, make_config, make_result, validate) are
shared by the other MQTT test modules.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from camclassd.config import Config
from camclassd.errors import ConfigError
from camclassd.frame import Frame
from camclassd.metrics import Metrics, MetricsSnapshot
from camclassd.mqtt.client import MqttService, read_password
from camclassd.mqtt.session import reconnect_delay
from camclassd.results import Classification, Prediction
from tests.broker import KEEP_USER, Mosquitto, free_port
from tests.mqtt_helpers import RecordingTarget, Subscriber

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def validate(payload: Any, name: str) -> None:
    jsonschema.Draft202012Validator(
        schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(payload)


def unique_device() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def make_config(
    port: int,
    *,
    device: str | None = None,
    cameras: tuple[str, ...] = ("front", "back"),
    host: str = "127.0.0.1",
    **mqtt_overrides: Any,
) -> Config:
    mqtt_section: dict[str, Any] = {
        "host": host,
        "port": port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "keepalive_s": 5,
    }
    mqtt_section.update(mqtt_overrides)
    ha = mqtt_section.pop("homeassistant", {})
    return Config.model_validate(
        {
            "device": {"id": device or unique_device(), "name": "Test device"},
            "cameras": {name: {"type": "synthetic"} for name in cameras},
            "mqtt": mqtt_section,
            "homeassistant": ha,
        }
    )


TOP3 = (
    Prediction(281, "tabby", 0.71),
    Prediction(282, "tiger cat", 0.12),
    Prediction(285, "Egyptian cat", 0.05),
)


def make_result(camera: str = "front", seq: int = 0) -> Classification:
    return Classification(
        camera=camera,
        seq=seq,
        wall_time=time.time(),
        model="efficientnet_lite0_uint8",
        top=TOP3,
        stable_label="tabby",
        changed=seq == 0,
        latency_ms={"capture_to_publish": 14.2, "queue": 0.4, "preprocess": 0.9, "inference": 11.8},
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def topic_is(topic: str) -> Callable[[mqtt.MQTTMessage], bool]:
    return lambda message: message.topic == topic


# ---- read_password --------------------------------------------------------------------------


def test_read_password_from_file_strips_only_the_newline(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(" s3cret \n")
    config = make_config(1883, password_file=str(path))
    assert read_password(config.mqtt) == " s3cret "


def test_read_password_from_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt_password").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_password(make_config(1883).mqtt) == "from-systemd"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "nothing-here"))
    assert read_password(make_config(1883).mqtt) is None


def test_read_password_none_without_file_or_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert read_password(make_config(1883).mqtt) is None


def test_read_password_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=r"mqtt.password_file: cannot read .*missing"):
        read_password(make_config(1883, password_file=str(missing)).mqtt)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_password(make_config(1883, password_file=str(empty)).mqtt)


# ---- publishing and availability --------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_results_arrive_schema_valid_in_order(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
    protocol: str,
) -> None:
    config = make_config(broker.port, protocol=protocol)
    device = config.device.resolved_id
    sub = subscribers(broker.port, [f"camclassd/{device}/#"])
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    assert service.state == "connected"
    assert service.client_id == f"camclassd-{device}"
    for seq in range(20):
        service.publish(make_result("front" if seq % 2 else "back", seq))
    got = sub.collect(lambda m: m.topic.endswith("/classification"), 20)
    payloads = [json.loads(m.payload) for m in got]
    for message, payload in zip(got, payloads, strict=True):
        validate(payload, "classification")
        assert message.topic == f"camclassd/{device}/{payload['camera']}/classification"
        assert message.qos == 1 and not message.retain
    assert [p["seq"] for p in payloads] == list(range(20))
    assert payloads[0]["top"][0] == {"label": "tabby", "index": 281, "score": 0.71}


def test_publish_to_receive_latency(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Publish -> receive through the broker at QoS 1 (figures printed for the report)."""
    config = make_config(broker.port)
    device = config.device.resolved_id
    sub = subscribers(broker.port, [f"camclassd/{device}/front/classification"])
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    sent: dict[int, float] = {}
    for seq in range(300):
        sent[seq] = time.perf_counter()
        service.publish(make_result("front", seq))
        time.sleep(0.002)  # a realistic stream, not one burst
    assert wait_until(lambda: len(sub.received) >= 300)
    latencies = sorted((t - sent[json.loads(m.payload)["seq"]]) * 1000 for t, m in sub.received)
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * len(latencies)) - 1]
    with capsys.disabled():
        print(f"\n[figures] publish->receive QoS1 p50 {p50:.2f} ms, p99 {p99:.2f} ms (n=300)")
    assert p50 < 50


def test_availability_online_retained_then_offline_on_stop(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port)
    device = config.device.resolved_id
    early = subscribers(broker.port, [f"camclassd/{device}/status"])
    service = service_factory(config)
    service.publish_status(RecordingTarget().status())
    assert wait_until(lambda: service.connected)
    early.wait_for(topic_is(f"camclassd/{device}/status"))  # it reached the broker
    # A subscriber arriving later still sees the retained online and status.
    late = subscribers(
        broker.port, [f"camclassd/{device}/availability", f"camclassd/{device}/status"]
    )
    online = late.wait_for(topic_is(f"camclassd/{device}/availability"))
    assert online.payload == b"online" and online.retain
    status = late.wait_for(topic_is(f"camclassd/{device}/status"))
    assert status.retain
    validate(json.loads(status.payload), "status")
    service.stop()
    assert service.state == "disconnected (stopped)"
    offline = late.wait_for(topic_is(f"camclassd/{device}/availability"))
    assert offline.payload == b"offline"
    after = subscribers(broker.port, [f"camclassd/{device}/availability"])
    assert after.wait_for(topic_is(f"camclassd/{device}/availability")).payload == b"offline"


def test_last_will_offline_when_the_connection_dies(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port)
    device = config.device.resolved_id
    topic = f"camclassd/{device}/availability"
    sub = subscribers(broker.port, [topic])
    service = service_factory(config)
    assert sub.wait_for(topic_is(topic)).payload == b"online"
    # Simulate a process that died: the TCP connection ends without a DISCONNECT packet.
    sock = service._session.client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    will = sub.wait_for(topic_is(topic))
    assert will.payload == b"offline"
    # ... and the service reconnects by itself and says online again.
    assert sub.wait_for(topic_is(topic)).payload == b"online"
    assert wait_until(lambda: service.counters()["reconnects"] == 1)


def test_nagle_is_off_on_the_connection(
    broker: Mosquitto, service_factory: Callable[..., MqttService]
) -> None:
    """With Nagle on, a result published right after the metrics waited up to 40 ms for the
    broker's delayed ACK (scripts/measure_service.py showed it as a p99 of 35-42 ms)."""
    service = service_factory(make_config(broker.port))
    assert wait_until(lambda: service.connected)
    sock = service._session.client.socket()
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_metrics_and_status_payloads_through_the_broker(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port)
    device = config.device.resolved_id
    sub = subscribers(broker.port, [f"camclassd/{device}/metrics", f"camclassd/{device}/status"])
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    service.publish_metrics(sample_metrics(service))
    message = sub.wait_for(topic_is(f"camclassd/{device}/metrics"))
    payload = json.loads(message.payload)
    validate(payload, "metrics")
    assert payload["mqtt"] == {
        "buffered": 0,
        "dropped": 0,
        "delivered_after_reconnect": 0,
        "reconnects": 0,
        "connected": True,
    }
    assert message.qos == 0 and not message.retain
    service.publish_status(RecordingTarget().status())
    status = sub.wait_for(topic_is(f"camclassd/{device}/status"))
    validate(json.loads(status.payload), "status")


def sample_metrics(link: MqttService | None = None) -> MetricsSnapshot:
    """A snapshot of a real Metrics (one camera, 118 frames classified at 9.8 fps); with
    `link`, its counters read at the snapshot as the daemon does."""
    metrics = Metrics(window=50, cameras=["front"])
    if link is not None:
        metrics.on_collect(link.report)
    every = 1 / 9.8  # s: 9.8 fps
    t = time.monotonic() - 120 * every
    for seq in range(120):
        metrics.captured("front")
        if seq < 2:
            metrics.dropped("front", "queue_full")
            continue
        frame = Frame("front", seq, np.zeros((1, 1, 3), np.uint8), time.time(), t + seq * every)
        frame.t_preprocessed = frame.t_captured + 0.0009
        frame.t_dequeued = frame.t_preprocessed + 0.0004
        frame.t_inferred = frame.t_dequeued + 0.0118
        frame.t_published = frame.t_inferred + 0.0011
        metrics.classified(frame)
        metrics.published("front")
    return metrics.snapshot()


def test_start_never_blocks_while_the_broker_is_down(
    service_factory: Callable[..., MqttService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="camclassd.mqtt")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    service = service_factory(make_config(port, buffer_size=3))
    for seq in range(5):
        service.publish(make_result("front", seq))
    service.publish_metrics(sample_metrics())  # skipped, not stored
    assert time.monotonic() - started < 0.5
    assert not service.connected
    assert wait_until(lambda: "unreachable" in service.state)
    assert service.state == "disconnected (broker unreachable: Connection refused)"
    assert service.counters()["buffered"] == 3
    assert service.counters()["dropped"] == 2
    assert "unreachable" in caplog.text
    stop_started = time.monotonic()
    service.stop()
    assert time.monotonic() - stop_started < 2.0


# ---- store and forward --------------------------------------------------------------------


def _outage(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
    *,
    buffer_size: int,
    during: int,
    qos: int,
) -> tuple[list[int], dict[str, Any], float]:
    """Publish 5 results, stop the broker, publish `during` more, start it, publish 5 more.

    Returns the seqs received, the service counters and the reconnect time in seconds.
    """
    # The service retries every 1 s, the subscriber every 0.05-0.1 s (it resubscribes on
    # connect), so the subscriber is back before the service flushes its store to it: a flush
    # to nobody would be lost, results are not retained.
    config = make_config(
        broker.port,
        buffer_size=buffer_size,
        qos_results=qos,
        reconnect_min_s=1.0,
        reconnect_max_s=1.0,
    )
    device = config.device.resolved_id
    topic = f"camclassd/{device}/front/classification"
    service = service_factory(config)
    sub = subscribers(broker.port, [topic])
    sub.client.reconnect_delay_set(0.05, 0.1)  # type: ignore[arg-type]
    assert wait_until(lambda: service.connected)
    seq = 0
    for _ in range(5):
        service.publish(make_result("front", seq))
        seq += 1
    assert len(sub.collect(topic_is(topic), 5)) == 5
    # Results published before the first SUBACK also go through the store: count from here.
    before = service.counters()["delivered_after_reconnect"]
    broker.stop()
    assert wait_until(lambda: not service.connected)
    for _ in range(during):
        service.publish(make_result("front", seq))
        seq += 1
        time.sleep(0.01)
    time.sleep(max(0.0, 2.0 - during * 0.01))  # an outage of about 2 s
    broker.start()
    restarted = time.monotonic()
    assert wait_until(lambda: service.connected, timeout=10)
    reconnect_s = time.monotonic() - restarted
    # Results published now would queue behind the store, which is flushed after the SUBACK.
    assert wait_until(lambda: service.counters()["buffered"] == 0, timeout=5)
    for _ in range(5):
        service.publish(make_result("front", seq))
        seq += 1
    expected = min(during, buffer_size) + 5  # kept while down, then the 5 published after

    # At QoS 1 a result of the first five whose PUBACK was still in flight when the broker
    # stopped is sent again on reconnect (at-least-once): count only those that came later.
    def later(message: mqtt.MQTTMessage) -> bool:
        return topic_is(topic)(message) and json.loads(message.payload)["seq"] >= 5

    got = sub.collect(later, expected, timeout=5)
    seqs = [json.loads(m.payload)["seq"] for m in got]
    for message in got:
        validate(json.loads(message.payload), "classification")
    counters = service.counters()
    counters["delivered_after_reconnect"] -= before
    return seqs, counters, reconnect_s


@pytest.mark.parametrize("qos", [1, 0])
def test_outage_drops_beyond_the_buffer_and_keeps_order(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
    capsys: pytest.CaptureFixture[str],
    qos: int,
) -> None:
    seqs, counters, reconnect_s = _outage(
        broker, service_factory, subscribers, buffer_size=5, during=40, qos=qos
    )
    # The newest 5 of the 40 (seq 40..44) are kept, then the 5 published after the return.
    assert seqs == list(range(40, 45)) + list(range(45, 50))
    assert counters["dropped"] == 35
    assert counters["delivered_after_reconnect"] == 5
    assert counters["buffered"] == 0
    assert counters["reconnects"] == 1 and counters["connected"] is True
    with capsys.disabled():
        print(
            f"\n[figures] outage QoS{qos}: 40 published while down, buffer 5: delivered 5 "
            f"after reconnect, dropped {counters['dropped']}; reconnect {reconnect_s * 1000:.0f}"
            " ms after the broker returned (retry every 1 s)"
        )


def test_outage_within_the_bound_loses_nothing(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    seqs, counters, _ = _outage(
        broker, service_factory, subscribers, buffer_size=100, during=30, qos=1
    )
    assert seqs == list(range(5, 40))
    assert counters["dropped"] == 0
    assert counters["delivered_after_reconnect"] == 30


def test_qos1_results_in_flight_when_the_connection_dies_are_resent_in_order(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    """The race the store cannot see: results paho accepted (the connection looked fine) but
    the broker never acknowledged. paho keeps QoS 1 messages until PUBACK and re-sends them
    after the reconnect; the store (newer results) is flushed only after that."""
    # A fixed 1.5 s backoff lets the new subscriber be in place before the service returns.
    config = make_config(broker.port, buffer_size=100, reconnect_min_s=1.5, reconnect_max_s=1.5)
    topic = f"camclassd/{config.device.resolved_id}/front/classification"
    service = service_factory(config)
    first = subscribers(broker.port, [topic])
    assert wait_until(lambda: service.connected and service.counters()["buffered"] == 0)
    for seq in range(5):
        service.publish(make_result("front", seq))
    assert len(first.collect(topic_is(topic), 5)) == 5
    before = service.counters()["delivered_after_reconnect"]
    process = broker.process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)  # the broker hangs: sends succeed, no PUBACK comes
    try:
        for seq in range(5, 15):
            service.publish(make_result("front", seq))
        time.sleep(0.2)
        assert service.connected  # nothing noticed yet: these sit in paho's in-flight queue
    finally:
        process.kill()  # the connection now dies without the broker having read them
        process.wait()
        broker.process = None
    assert wait_until(lambda: not service.connected)
    for seq in range(15, 20):
        service.publish(make_result("front", seq))  # known to be disconnected: the store
    broker.start()
    sub = subscribers(broker.port, [topic])
    got = sub.collect(topic_is(topic), 15, timeout=8)
    assert [json.loads(m.payload)["seq"] for m in got] == list(range(5, 20))
    counters = service.counters()
    assert counters["delivered_after_reconnect"] - before == 5
    assert counters["dropped"] == 0


def test_metrics_report_the_store_after_an_outage(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    config = make_config(broker.port, buffer_size=2)
    device = config.device.resolved_id
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    broker.stop()
    assert wait_until(lambda: not service.connected)
    for seq in range(6):
        service.publish(make_result("front", seq))
    assert service.counters() == {
        "buffered": 2,
        "dropped": 4,
        "delivered_after_reconnect": 0,
        "reconnects": 0,
        "connected": False,
    }
    broker.start()
    sub = subscribers(broker.port, [f"camclassd/{device}/metrics"])
    assert wait_until(lambda: service.counters()["delivered_after_reconnect"] == 2, timeout=10)
    service.publish_metrics(sample_metrics(service))
    payload = json.loads(sub.wait_for(topic_is(f"camclassd/{device}/metrics")).payload)
    validate(payload, "metrics")
    assert payload["mqtt"] == {
        "buffered": 0,
        "dropped": 4,
        "delivered_after_reconnect": 2,
        "reconnects": 1,
        "connected": True,
    }


# ---- auth and TLS ----------------------------------------------------------------------------


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), "cam", "right-password"],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o600)
    port = free_port()
    server = Mosquitto(
        tmp_path / "auth",
        port=port,
        extra_config=(
            f"{KEEP_USER}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}"
        ),
    )
    server.start()
    yield server
    server.stop()


# As root, mosquitto drops to the 'mosquitto' user before reading the password file, which then
# cannot read files in pytest's private tmp dirs; as another user the option has no effect.


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_wrong_password_is_refused_logged_and_retried(
    auth_broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    caplog.set_level(logging.INFO, logger="camclassd.mqtt")
    config = make_config(
        auth_broker.port,
        username="cam",
        protocol=protocol,
        reconnect_min_s=0.1,
        reconnect_max_s=0.2,
    )
    service = service_factory(config, password="wrong-password")

    def refusals() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()
        ]

    assert wait_until(lambda: len(refusals()) >= 3, timeout=10), refusals()  # it keeps retrying
    assert not service.connected
    assert service.state.startswith("disconnected (refused")
    message = refusals()[0]
    assert "(reason code 13" in message  # 134 bad user name or password / 135 not authorized
    assert "check mqtt.username and the password file" in message
    assert "wrong-password" not in caplog.text


def test_right_password_connects(
    auth_broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    service = service_factory(
        make_config(auth_broker.port, username="cam"), password="right-password"
    )
    assert wait_until(lambda: service.connected, timeout=5), service.state
    assert "right-password" not in caplog.text


def connected_over_tls(
    port: int, ca_file: Path, service_factory: Callable[..., MqttService]
) -> MqttService:
    """A service connected to the test TLS broker as 'localhost' (the certificate's name)."""
    tls = {"enabled": True, "ca_file": str(ca_file)}
    service = service_factory(make_config(port, host="localhost", tls=tls))
    assert wait_until(lambda: service.connected, timeout=5), service.state
    return service


def test_tls_listener_with_test_made_certificates(
    tls_broker: Mosquitto,
    certificates: dict[str, Path],
    service_factory: Callable[..., MqttService],
) -> None:
    service = connected_over_tls(tls_broker.port, certificates["ca.crt"], service_factory)
    assert service.state == "connected"


def test_tls_verifies_the_host_name_unless_insecure(
    tls_broker: Mosquitto,
    certificates: dict[str, Path],
    service_factory: Callable[..., MqttService],
) -> None:
    """The certificate names only 'localhost': '127.0.0.1' fails unless insecure is asked for."""
    tls = {"enabled": True, "ca_file": str(certificates["ca.crt"])}
    strict = service_factory(make_config(tls_broker.port, host="127.0.0.1", tls=tls))
    insecure = service_factory(
        make_config(tls_broker.port, host="127.0.0.1", tls={**tls, "insecure": True})
    )
    assert wait_until(lambda: insecure.connected, timeout=5), insecure.state
    assert wait_until(lambda: "unreachable" in strict.state, timeout=5)
    time.sleep(0.5)
    assert not strict.connected
    assert "certificate verify failed" in strict.state, strict.state


def test_tls_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    config = make_config(1883, tls={"enabled": True, "ca_file": str(tmp_path / "nope.crt")})
    with pytest.raises(ConfigError, match=r"mqtt\.tls"):
        MqttService(config, RecordingTarget().submit)


# ---- reconnect backoff ----------------------------------------------------------------------


def test_reconnect_delay_doubles_to_the_cap_with_jitter() -> None:
    delays = [reconnect_delay(n, 1.0, 4.0, 0.999) for n in range(8)]
    assert delays[:3] == pytest.approx([1.0, 2.0, 4.0], rel=1e-3)
    assert max(delays) <= 4.0  # never beyond the cap, however long the outage
    assert all(reconnect_delay(n, 1.0, 4.0, draw) >= 1.0 for n in range(40) for draw in (0, 0.5))
    spread = {round(reconnect_delay(10, 1.0, 4.0, draw / 10), 2) for draw in range(10)}
    assert len(spread) == 10 and min(spread) >= 2.0  # jitter: a fleet does not move in step


def test_first_result_within_5_s_after_a_long_outage(
    broker: Mosquitto,
    service_factory: Callable[..., MqttService],
    subscribers: Callable[..., Subscriber],
) -> None:
    """With the default backoff (1 s doubling to 4 s), an outage long enough for the delay to
    reach its cap: the first result reaches a subscriber within 5 s of the broker's return."""
    # Retained: the subscriber, which can only connect once the broker is back, gets the
    # result even when the service reconnected and delivered it first.
    config = make_config(broker.port, reconnect_min_s=1.0, reconnect_max_s=4.0, retain_results=True)
    topic = f"camclassd/{config.device.resolved_id}/front/classification"
    service = service_factory(config)
    assert wait_until(lambda: service.connected)
    broker.stop()
    assert wait_until(lambda: not service.connected)
    time.sleep(8.0)  # 1 + 2 + 4: the delay has reached its cap
    service.publish(make_result("front", 7))
    broker.start()
    returned = time.monotonic()
    sub = subscribers(broker.port, [topic])
    message = sub.wait_for(topic_is(topic), timeout=10)
    waited = time.monotonic() - returned
    print(f"[figures] first result {waited:.2f} s after an 8 s outage (reconnect_max_s 4)")
    assert json.loads(message.payload)["seq"] == 7
    assert waited <= 5.0
