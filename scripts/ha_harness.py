"""The processes ha_check.py drives: a mosquitto, a fresh Home Assistant (onboarded over REST,
MQTT added through the config flow), the real daemon; and a subscriber that records everything.

Runs with Home Assistant's venv python (paho-mqtt and aiohttp come from there).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
DEVICE = "ha-test"
PREFIX = "camclassd"
HA_CONFIG = """\
homeassistant:
  name: camclassd test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
  language: en
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
auth:
onboarding:
config:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""
DAEMON_CONFIG = """\
[device]
id = "{device}"
name = "HA test"

[cameras.{camera}]
type = "images"
path = "{repo}/samples/*.jpg"
fps = 1.0

[model]
path = "{repo}/models/efficientnet_lite0_uint8.tflite"
labels = "{repo}/models/imagenet_labels.txt"
num_threads = 1

[pipeline]
threshold_high = 0.2
threshold_low = 0.1
stable_frames = 1

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
prefix = "{prefix}"
snapshot_interval_s = 600.0

[homeassistant]
discovery = "{discovery}"

[metrics]
interval_s = 2.0
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, KeyError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.items.append(what)


class Mosquitto:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.port = free_port()
        config = workdir / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._up, 10, "mosquitto")

    def _up(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Broker:
    """Everything published on the test broker, and a client to publish with."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ha-check")
        self.client.on_connect = lambda c, *_: c.subscribe("#", 1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise AssertionError("the checker could not subscribe to the broker")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), msg.topic, bytes(msg.payload), msg.retain))

    def since(self, start: float, topic: str | None = None) -> list[tuple[float, str, bytes, bool]]:
        with self.lock:
            return [m for m in self.messages if m[0] >= start and (topic is None or m[1] == topic)]

    def retained(self, pattern: str, timeout: float = 1.0) -> dict[str, bytes]:
        """What the broker holds retained on `pattern` now (a fresh subscription)."""
        found: dict[str, bytes] = {}
        done = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_: c.subscribe(pattern, 1)
        client.on_message = lambda _c, _u, m: found.__setitem__(m.topic, bytes(m.payload))
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        done.wait(timeout)
        client.loop_stop()
        client.disconnect()
        return found


def inside_root(path: Path, root: Path | None) -> Path:
    """`path` as a process chrooted into `root` sees it."""
    return Path("/") / path.relative_to(root) if root is not None else path


class HomeAssistant:
    def __init__(self, hass: list[str], config_dir: Path, root: Path | None = None) -> None:
        self.hass = hass  # the command, e.g. ["chroot", ROOT, "/opt/.../bin/hass"]
        self.config_dir = config_dir
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0  # each start logs to its own file: HA rotates its default one away
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "configuration.yaml").write_text(HA_CONFIG.format(port=self.port))

    def start(self) -> float:
        t0 = time.monotonic()
        self.starts += 1
        log = self.config_dir / f"ha-run{self.starts}.log"
        inside = inside_root(self.config_dir, self.root)
        command = [*self.hass, "-c", str(inside), "--skip-pip", "--log-no-color"]
        self.process = subprocess.Popen(
            [*command, "--log-file", str(inside_root(log, self.root))],
            stdout=subprocess.DEVNULL,
            stderr=open(self.config_dir / "stderr.log", "ab"),  # noqa: SIM115
        )
        wait_until(self._api_up, 180, "Home Assistant's HTTP API", every=0.5)
        return time.monotonic() - t0

    def _api_up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"Home Assistant exited with {self.process.returncode}")
        try:
            with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def request(self, method: str, path: str, body: Any = None, *, form: bool = False) -> Any:
        data = None
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            if response.headers.get_content_type() == "application/json":
                return json.loads(raw)
            return raw

    def onboard(self) -> None:
        client_id = f"{self.url}/"
        user = self.request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": client_id,
                "name": "Test",
                "username": "test",
                "password": "test-password-1",
                "language": "en",
            },
        )
        token = self.request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id},
            form=True,
        )
        self.token = token["access_token"]

    def add_mqtt(self, broker_port: int) -> None:
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("step_id") != "broker":
            raise AssertionError(f"MQTT config flow: expected the broker step, got {flow}")
        result = self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"broker": "127.0.0.1", "port": broker_port},
        )
        if result.get("type") != "create_entry":
            raise AssertionError(f"MQTT config flow did not create an entry: {result}")

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.request("GET", "/api/states")}

    def service(self, domain: str, name: str, entity_id: str) -> None:
        self.request("POST", f"/api/services/{domain}/{name}", {"entity_id": entity_id})

    def ws(self, *commands: dict[str, Any]) -> list[Any]:
        """Websocket commands, answered in order (`result` of each)."""

        async def run() -> list[Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(f"{self.url}/api/websocket") as ws,
            ):
                await ws.receive_json()  # auth_required
                await ws.send_json({"type": "auth", "access_token": self.token})
                answer = await ws.receive_json()
                if answer.get("type") != "auth_ok":
                    raise AssertionError(f"websocket auth failed: {answer}")
                results = []
                for number, command in enumerate(commands, 1):
                    await ws.send_json({"id": number, **command})
                    while True:
                        reply = await ws.receive_json()
                        if reply.get("id") == number and reply.get("type") == "result":
                            break
                    if not reply.get("success"):
                        raise AssertionError(f"websocket {command}: {reply}")
                    results.append(reply.get("result"))
                return results

        return asyncio.run(run())

    def entities(self) -> list[dict[str, Any]]:
        """The entity registry entries of the MQTT integration."""
        (entries,) = self.ws({"type": "config/entity_registry/list"})
        return [e for e in entries if e.get("platform") == "mqtt"]

    def log_text(self) -> str:
        """HA's log of every start so far."""
        logs = sorted(self.config_dir.glob("ha-run*.log"))
        return "".join(path.read_text(errors="replace") for path in logs)


class Daemon:
    def __init__(self, camclassd: str, workdir: Path, mqtt_port: int) -> None:
        self.camclassd = camclassd
        self.config = workdir / "camclassd.toml"
        self.log = workdir / "camclassd.log"
        self.mqtt_port = mqtt_port
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, camera: str, discovery: str) -> None:
        self.config.write_text(
            DAEMON_CONFIG.format(
                device=DEVICE,
                camera=camera,
                repo=REPO,
                mqtt_port=self.mqtt_port,
                prefix=PREFIX,
                discovery=discovery,
            )
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.camclassd, "run", "--config", str(self.config), "--log-level", "info"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115
        )

    def send(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(30)
        self.process = None
