"""The real daemon in a subprocess against a real mosquitto, with the real model and photos."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from tests.broker import Mosquitto
from tests.conftest import GOLDEN, SAMPLES, run_cli
from tests.daemon_helpers import REPO, Message, collector, daemon, write_config

SCHEMAS = REPO / "docs" / "schemas"

CONFIG = """
[device]
id = "{device}"

[cameras.front]
type = "images"
path = "{images}"
fps = {fps}
loop = {loop}

[model]
path = "@MODELS@/efficientnet_lite0_uint8.tflite"
labels = "@MODELS@/imagenet_labels.txt"
num_threads = 1

[pipeline]
stable_frames = 1

[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_s = {reconnect_min}
reconnect_max_s = 1.0
buffer_size = {buffer_size}

[homeassistant]
enabled = false

[metrics]
interval_s = 0.5
"""


def make_config(
    tmp_path: Path,
    port: int,
    *,
    fps: float = 10.0,
    loop: bool = True,
    images: str = f"{SAMPLES}/*.jpg",
    buffer_size: int = 1000,
    reconnect_min: float = 0.2,
    name: str = "camclassd.toml",
) -> tuple[Path, str]:
    device = f"t{uuid.uuid4().hex[:8]}"
    text = CONFIG.format(
        device=device,
        images=images,
        fps=fps,
        loop=str(loop).lower(),
        port=port,
        buffer_size=buffer_size,
        reconnect_min=reconnect_min,
    )
    return write_config(tmp_path / name, text), device


def schema(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def test_results_over_mqtt_match_the_golden_photos_and_every_message_validates(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config, device = make_config(tmp_path, broker.port, loop=False)
    with (
        collector(broker.host, broker.port, [f"camclassd/{device}/#"]) as sub,
        daemon(config) as proc,
    ):
        assert proc.wait(timeout=30) == 0, proc.log()
        sub.wait_for(lambda ms: any(m.payload == b"offline" for m in ms), timeout=5)
    results = sorted((m.json() for m in sub.on("/front/classification")), key=lambda p: p["seq"])
    golden = [GOLDEN[name] for name in sorted(GOLDEN)]  # the images source reads in path order
    first = results[0]["seq"]
    assert [r["seq"] for r in results] == list(range(first, first + len(golden)))
    for payload, allowed in zip(results, golden, strict=True):
        assert payload["top"][0]["label"] in allowed, payload
        assert len(payload["top"]) == 3
    classification = schema("classification")
    for payload in results:
        jsonschema.validate(payload, classification)
    metrics = [m.json() for m in sub.on("/metrics")]
    assert metrics, "no metrics published"
    for payload in metrics:
        jsonschema.validate(payload, schema("metrics"))
    for message in sub.on("/status"):
        jsonschema.validate(message.json(), schema("status"))


def test_availability_online_then_offline_on_sigterm(tmp_path: Path, broker: Mosquitto) -> None:
    config, device = make_config(tmp_path, broker.port)
    topic = f"camclassd/{device}/availability"
    with daemon(config) as proc:
        with collector(broker.host, broker.port, [f"camclassd/{device}/#"]) as sub:
            sub.wait_count("/front/classification", 2)
        # A subscriber that arrives later still learns the state: it is retained.
        with collector(broker.host, broker.port, [topic]) as late:
            (first,) = late.wait_count("/availability", 1)
            assert first.payload == b"online" and first.retain
            proc.signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, proc.log()
            late.wait_for(lambda ms: ms[-1].payload == b"offline", timeout=5)
    with collector(broker.host, broker.port, [topic]) as after:
        (retained,) = after.wait_count("/availability", 1)
        assert retained.payload == b"offline" and retained.retain


def test_last_will_says_offline_after_sigkill(tmp_path: Path, broker: Mosquitto) -> None:
    config, device = make_config(tmp_path, broker.port)
    with (
        collector(broker.host, broker.port, [f"camclassd/{device}/availability"]) as sub,
        daemon(config) as proc,
    ):
        sub.wait_for(lambda ms: any(m.payload == b"online" for m in ms))
        proc.signal(signal.SIGKILL)
        proc.wait()
        sub.wait_for(lambda ms: ms[-1].payload == b"offline", timeout=10)


def test_broker_outage_is_survived_and_buffered_results_arrive_in_order(
    tmp_path: Path,
) -> None:
    server = Mosquitto(tmp_path / "broker")
    server.start()
    config, device = make_config(tmp_path, server.port, fps=20, buffer_size=5, reconnect_min=1.0)
    try:
        with (
            daemon(config) as proc,
            collector(server.host, server.port, [f"camclassd/{device}/#"]) as sub,
        ):
            sub.wait_count("/front/classification", 5)
            server.stop()
            time.sleep(2.0)  # ~40 results at 20 fps; the buffer keeps the newest 5
            assert proc.alive()
            outage_started = max(m.json()["seq"] for m in sub.on("/front/classification"))
            server.start()
            sub.wait_for(
                lambda ms: any(
                    m.topic.endswith("/metrics") and m.json()["mqtt"]["dropped"] > 0 for m in ms
                ),
                timeout=15,
            )
            sub.wait_for(
                lambda ms: sum(m.topic.endswith("/classification") for m in ms) >= 20, timeout=15
            )
            assert proc.alive(), proc.log()
            seqs = [m.json()["seq"] for m in sub.on("/front/classification")]
            after = [s for s in seqs if s > outage_started]
            assert after == sorted(after), "results after the outage arrived out of order"
            missing = set(range(outage_started + 1, after[-1])) - set(after)
            dropped = max(m.json()["mqtt"]["dropped"] for m in sub.on("/metrics"))
            assert dropped > 0
            assert len(missing) == dropped, (sorted(missing), dropped)
    finally:
        server.stop()


# ---- systemd notify, watchdog, reload, stop --------------------------------------------------


class NotifySocket:
    """A unix datagram socket the test owns, as systemd's NOTIFY_SOCKET would be."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []

    def drain_until(self, predicate: str, timeout: float = 15.0) -> list[str]:
        """Receive until a message contains `predicate`; returns everything received so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate in text for _, text in self.received):
                break
            self.collect(0.2)
        else:
            raise AssertionError(f"no {predicate!r} in {[t for _, t in self.received][-10:]}")
        return [text for _, text in self.received]

    def collect(self, seconds: float) -> list[str]:
        end = time.monotonic() + seconds
        fresh: list[str] = []
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            text = data.decode()
            self.received.append((time.monotonic(), text))
            fresh.append(text)
        return fresh

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


OFFLINE_CONFIG = """
[device]
id = "notify"

[cameras.{camera}]
type = "images"
path = "{images}"
fps = 10.0

[model]
path = "@MODELS@/{model}.tflite"
labels = "@MODELS@/imagenet_labels.txt"
num_threads = 1

[pipeline]
stall_timeout_s = 2.0

[mqtt]
enabled = false
"""


def offline_config(
    path: Path, images: Path, *, camera: str = "front", model: str = "efficientnet_lite0_uint8"
) -> Path:
    return write_config(
        path, OFFLINE_CONFIG.format(camera=camera, images=f"{images}/*.jpg", model=model)
    )


def copy_samples(target: Path) -> Path:
    target.mkdir()
    for photo in SAMPLES.glob("*.jpg"):
        shutil.copy(photo, target / photo.name)
    return target


def test_sd_notify_ready_status_watchdog_stall_reload_and_stop(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    images = copy_samples(tmp_path / "images")
    config = offline_config(tmp_path / "camclassd.toml", images)
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}
    started = time.monotonic()
    with daemon(config, env=env) as proc:
        notify_socket.drain_until("READY=1")
        ready_after = time.monotonic() - started
        messages = notify_socket.drain_until("WATCHDOG=1")
        assert any(
            m.startswith("STATUS=") and "fps" in m for m in messages + notify_socket.collect(1.0)
        )
        pings = [m for m in notify_socket.collect(2.0) if "WATCHDOG=1" in m]
        assert len(pings) >= 3, "the watchdog must be pinged while frames are classified"

        # The camera stalls: its images vanish, every reopen fails. Pings must stop.
        for photo in images.iterdir():
            photo.unlink()
        notify_socket.collect(3.0)  # pipeline.stall_timeout_s, plus a tick
        late = [m for m in notify_socket.collect(2.0) if "WATCHDOG=1" in m]
        assert late == [], "watchdog pings went on while no frame was classified"
        assert proc.alive()

        # Frames return; SIGHUP reloads; SIGTERM stops with exit 0.
        copy_samples_into(images)
        proc.signal(signal.SIGHUP)
        notify_socket.drain_until("RELOADING=1")
        texts = notify_socket.drain_until("WATCHDOG=1")
        reload_index = max(i for i, t in enumerate(texts) if "RELOADING=1" in t)
        assert any("READY=1" in t for t in texts[reload_index:])
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.log()
        notify_socket.collect(0.3)
        assert any("STOPPING=1" in t for _, t in notify_socket.received)
    assert ready_after < 10


def copy_samples_into(target: Path) -> None:
    for photo in SAMPLES.glob("*.jpg"):
        shutil.copy(photo, target / photo.name)


def test_reload_applies_a_new_camera_and_model_and_rejects_a_broken_config(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config, device = make_config(tmp_path, broker.port)
    with (
        collector(broker.host, broker.port, [f"camclassd/{device}/#"]) as sub,
        daemon(config) as proc,
    ):
        sub.wait_count("/front/classification", 2)
        # A broken file: rejected, the daemon keeps classifying with the old config.
        good_text = config.read_text()
        config.write_text(good_text.replace("[pipeline]", "[pipeline]\nqueue_sise = 3"))
        proc.signal(signal.SIGHUP)
        time.sleep(1.0)
        before = len(sub.on("/front/classification"))
        sub.wait_count("/front/classification", before + 3)
        seqs = [m.json()["seq"] for m in sub.on("/front/classification")]
        assert seqs == sorted(set(seqs)), "sequence numbers went back on a rejected reload"
        assert proc.alive()
        assert "queue_sise" in proc.log()

        # A good reload: the sequence numbers carry on.
        proc.signal(signal.SIGHUP)
        time.sleep(1.0)
        sub.wait_count("/front/classification", len(sub.on("/front/classification")) + 3)
        seqs = [m.json()["seq"] for m in sub.on("/front/classification")]
        assert seqs == sorted(set(seqs)), "sequence numbers restarted on reload"

        # Another camera and another model: both take effect without a restart.
        new_text = good_text.replace("[cameras.front]", "[cameras.back]").replace(
            "efficientnet_lite0_uint8", "efficientnet_lite0_float32"
        )
        config.write_text(new_text)
        proc.signal(signal.SIGHUP)
        back = sub.wait_count("/back/classification", 2, timeout=20)
        assert back[-1].json()["model"] == "efficientnet_lite0_float32"
        status = [m.json() for m in sub.on("/status")]
        assert status[-1]["cameras"] == ["back"]
        assert proc.alive()
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_reload_with_new_connection_settings_starts_a_new_mqtt_session(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """A changed prefix (a session setting) on an MQTT reload: the reply comes back, the old
    topics say offline, the new ones come online and get results; the sequence numbers carry
    on."""
    config, device = make_config(tmp_path, broker.port)
    with (
        collector(broker.host, broker.port, [f"camclassd/{device}/#", f"moved/{device}/#"]) as sub,
        daemon(config) as proc,
    ):
        sub.wait_count(f"camclassd/{device}/front/classification", 2)
        config.write_text(
            config.read_text().replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nprefix = "moved"')
        )
        # Over MQTT: the reply still comes back on the old session, which then goes offline.
        sub.client.publish(f"camclassd/{device}/cmd/reload", b'{"id": "move"}', qos=1)
        (reply,) = sub.wait_count(f"camclassd/{device}/cmd/reload/reply", 1)
        assert reply.json()["ok"] is True and reply.json()["id"] == "move", reply.json()
        moved = sub.wait_count(f"moved/{device}/front/classification", 2)
        availability = [(m.topic.split("/")[0], m.payload) for m in sub.on("/availability")]
        # Both sessions use one client id: the new one connects only after the old one said
        # offline, or the broker would take the old one over (and drop what it was sending).
        offline = availability.index(("camclassd", b"offline"))
        assert availability.index(("moved", b"online")) > offline, availability
        old = [m.json()["seq"] for m in sub.on(f"camclassd/{device}/front/classification")]
        assert moved[0].json()["seq"] > max(old)
        assert "a new session for mqtt.prefix" in proc.log()
        assert "lost the connection" not in proc.log(), proc.log()
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_bad_config_exits_78_and_missing_model_exits_69(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nqueue_size = 'many'\n")
    result = run_cli("run", "--config", str(bad))
    assert result.returncode == 78
    assert "pipeline.queue_size" in result.stderr
    assert "Traceback" not in result.stderr

    no_model = offline_config(tmp_path / "nomodel.toml", SAMPLES, model="does_not_exist")
    result = run_cli("run", "--config", str(no_model))
    assert result.returncode == 69, result.stderr
    assert "does_not_exist" in result.stderr
    assert "Traceback" not in result.stderr


def _messages_text(messages: list[Message]) -> str:
    return "\n".join(f"{m.topic} {m.payload[:80]!r}" for m in messages)


def test_commands_against_the_running_daemon(tmp_path: Path, broker: Mosquitto) -> None:
    """Every command through the broker to the real daemon; bad ones change nothing."""
    config, device = make_config(tmp_path, broker.port)
    base = f"camclassd/{device}"
    reply_schema = schema("command-reply")
    with collector(broker.host, broker.port, [f"{base}/#"]) as sub, daemon(config) as proc:
        sub.wait_count("/front/classification", 2)

        def command(name: str, body: bytes = b"{}") -> dict[str, object]:
            before = len(sub.on(f"/cmd/{name}/reply"))
            sub.client.publish(f"{base}/cmd/{name}", body, qos=1)
            reply = sub.wait_count(f"/cmd/{name}/reply", before + 1)[-1].json()
            jsonschema.validate(reply, reply_schema)
            return dict(reply)

        paused = command("pause", b'{"id": 7}')
        assert paused["ok"] is True and paused["id"] == 7
        time.sleep(0.5)  # a frame already in flight may still land
        count = len(sub.on("/front/classification"))
        time.sleep(1.0)
        assert len(sub.on("/front/classification")) == count, "classified while paused"
        assert command("status")["result"]["state"] == "paused"  # type: ignore[index]

        # Malformed, unknown, wrong-typed and oversize commands: error replies, still paused.
        for name, body in [
            ("resume", b"{not json"),
            ("resume", b"[1, 2]"),
            ("resume", b'{"bogus": 1}'),
            ("snapshot", b'{"camera": 5}'),
            ("snapshot", b'{"camera": "nope"}'),
            ("resume", b'{"id": "' + b"x" * 5000 + b'"}'),
            ("explode", b"{}"),
        ]:
            reply = command(name, body)
            assert reply["ok"] is False and reply["error"], (name, body, reply)
        assert command("status")["result"]["state"] == "paused"  # type: ignore[index]
        assert proc.alive()

        assert command("resume")["ok"] is True
        sub.wait_count("/front/classification", count + 2)
        assert command("snapshot", b'{"camera": "front"}')["ok"] is True
        (jpeg,) = sub.wait_count("/front/snapshot", 1)[:1]
        assert jpeg.payload[:3] == b"\xff\xd8\xff"  # a JPEG
        # A dashboard that subscribes later gets the last snapshot from the broker.
        with collector(broker.host, broker.port, [f"{base}/front/snapshot"]) as late:
            (kept,) = late.wait_count("/front/snapshot", 1, timeout=5)
        assert kept.retain and kept.payload == jpeg.payload
        reloaded = command("reload")
        assert reloaded["ok"] is True, reloaded
        sub.wait_count("/front/classification", len(sub.on("/front/classification")) + 2)
        assert proc.alive()


def test_a_burst_of_reload_commands_keeps_the_daemon_running(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """Reloads from MQTT once raced the main loop, which then stopped the daemon with exit 0."""
    config, device = make_config(tmp_path, broker.port, fps=20)
    base = f"camclassd/{device}"
    with collector(broker.host, broker.port, [f"{base}/#"]) as sub, daemon(config) as proc:
        sub.wait_count("/front/classification", 2)
        for index in range(6):
            sub.client.publish(f"{base}/cmd/reload", json.dumps({"id": index}), qos=1)
            time.sleep(0.05 * (index % 3))
        replies = sub.wait_count("/cmd/reload/reply", 6, timeout=30)
        assert {r.json()["id"] for r in replies} == set(range(6))
        assert all(r.json()["ok"] or "already" in r.json()["error"] for r in replies), [
            r.json() for r in replies
        ]
        count = len(sub.on("/front/classification"))
        sub.wait_count("/front/classification", count + 5)
        assert proc.alive(), proc.log()

        # Turning MQTT off is not something a reload can do: rejected, still publishing.
        config.write_text(config.read_text().replace("[mqtt]", "[mqtt]\nenabled = false"))
        sub.client.publish(f"{base}/cmd/reload", b"{}", qos=1)
        reply = sub.wait_count("/cmd/reload/reply", 7)[-1].json()
        assert reply["ok"] is False and "restart" in reply["error"]
        count = len(sub.on("/front/classification"))
        sub.wait_count("/front/classification", count + 3)
        assert proc.alive()


def test_a_reload_keeps_a_paused_daemon_paused(tmp_path: Path, broker: Mosquitto) -> None:
    config, device = make_config(tmp_path, broker.port, fps=20)
    base = f"camclassd/{device}"
    with collector(broker.host, broker.port, [f"{base}/#"]) as sub, daemon(config) as proc:
        sub.wait_count("/front/classification", 2)
        sub.client.publish(f"{base}/cmd/pause", b"{}", qos=1)
        sub.wait_count("/cmd/pause/reply", 1)
        time.sleep(0.3)  # a frame already in flight may still land
        count = len(sub.on("/front/classification"))
        sub.client.publish(f"{base}/cmd/reload", b"{}", qos=1)
        (reply,) = sub.wait_count("/cmd/reload/reply", 1)
        assert reply.json()["ok"] is True, reply.json()
        assert reply.json()["result"]["state"] == "paused"
        time.sleep(1.0)
        assert len(sub.on("/front/classification")) == count, "classified while paused"
        assert proc.alive()


def test_reload_after_the_daemon_stopped_is_refused_at_once(tmp_path: Path) -> None:
    """In-process: a command (a reload) that reaches the door during or after shutdown is
    refused at once instead of waiting for a main thread that is gone."""
    from camclassd.commands import Command, Request  # noqa: PLC0415
    from camclassd.daemon import Daemon  # noqa: PLC0415 (the module loads the runtime)

    config = offline_config(tmp_path / "camclassd.toml", SAMPLES)
    stopped = Daemon(config)
    assert stopped.run(max_frames=2) == 0
    replies: list[dict[str, object]] = []
    started = time.monotonic()
    stopped.inbox.submit(Request(Command("reload", "late"), replies.append))
    assert replies == [
        {"ok": False, "command": "reload", "id": "late", "error": "the daemon is stopping"}
    ]
    assert time.monotonic() - started < 1.0
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL, "signal handlers not restored"
