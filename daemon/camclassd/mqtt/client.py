"""The MQTT service: one paho-mqtt 2 session for the life of the daemon.

Connects in the background (`connect_async` + `loop_start`), so the daemon starts and classifies
while the broker is down; reconnects with backoff; keeps results in a bounded store while it
cannot publish and delivers them in order on reconnect.

Ordering across a reconnect: QoS >= 1 messages paho accepted but the broker never acknowledged
stay in paho's own queue and paho re-sends them on the next CONNACK (client-side, whatever the
session flag). Those are older than anything in our store, so the store is flushed only after
the SUBACK of the subscribe sent in on_connect, which the broker sends after the CONNACK that
made paho re-send. The session itself is clean (clean_start / clean_session): a command
published while the daemon was away must not run hours later.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any, ParamSpec, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from camclassd import __version__
from camclassd.config import Config, MQTTConfig
from camclassd.errors import ConfigError
from camclassd.mqtt.commands import CommandHandler, CommandTarget
from camclassd.mqtt.discovery import (
    Features,
    discovery_configs,
    enabled_cameras,
    handover_filter,
    handover_messages,
    is_handover_candidate,
    reload_changes,
)
from camclassd.mqtt.ha_entities import event_types
from camclassd.mqtt.payloads import (
    classification_payload,
    encode,
    event_payload,
    metrics_payload,
    mqtt_counters,
    snapshot_jpeg,
    status_payload,
)
from camclassd.mqtt.store import Pending, Store
from camclassd.mqtt.topics import Topics
from camclassd.results import Classification

log = logging.getLogger(__name__)
P = ParamSpec("P")

CREDENTIAL_NAME = "mqtt_password"
QOS_CONTROL = 1  # availability, status, discovery, replies: small and must arrive
QOS_SNAPSHOT = 0  # big and only the newest matters
# Connection settings a reload cannot change without a new session (and new topics).
SESSION_FIELDS = (
    "host",
    "port",
    "protocol",
    "client_id",
    "keepalive_s",
    "prefix",
    "username",
    "password_file",
    "tls",
)
# CONNACK reason codes worth a hint (MQTT 5 numbering; paho maps 3.1.1 codes onto them).
REFUSAL_HINTS = MappingProxyType(
    {
        132: "set mqtt.protocol = '3.1.1' for this broker",
        133: "check mqtt.client_id",
        134: "check mqtt.username and the password file",
        135: "check mqtt.username and the password file",
        138: "the broker banned this client",
    }
)


def read_password(config: MQTTConfig) -> str | None:
    """`password_file`, else `$CREDENTIALS_DIRECTORY/mqtt_password` (systemd LoadCredential=),
    else None. The password never passes through the TOML nor a log line."""
    if config.password_file is not None:
        path, what = config.password_file.expanduser(), "mqtt.password_file"
    else:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory or not (Path(directory) / CREDENTIAL_NAME).exists():
            return None
        path, what = Path(directory) / CREDENTIAL_NAME, f"the systemd credential {CREDENTIAL_NAME}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"{what}: cannot read {path}: {error.strerror or error}; the file must be readable "
            "by the service user"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {path} is not UTF-8 text") from None
    password = text.rstrip("\r\n")  # editors add a final newline; keep any other whitespace
    if not password:
        raise ConfigError(f"{what}: {path} is empty")
    return password


def describe_reason(reason: ReasonCode) -> str:
    """e.g. 'Not authorized (reason code 135): check mqtt.username and the password file'."""
    text = f"{reason.getName()} (reason code {reason.value})"
    hint = REFUSAL_HINTS.get(reason.value)
    return f"{text}: {hint}" if hint else text


class _Client(mqtt.Client):
    """paho calls on_connect_fail without the cause; keep it, because "unreachable" and "the
    broker's certificate did not verify" need different fixes."""

    last_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as error:
            self.last_error = error
            raise


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Turn Nagle's algorithm off: paho does not. With it on, a result published right after
    another message (the metrics) waited for the broker's delayed ACK: measured here, up to
    40 ms at a subscriber, against 0.8 ms without."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _guarded(callback: Callable[P, None]) -> Callable[P, None]:
    """paho re-raises a callback's exception in its network thread, which ends the thread and
    with it every reconnect: log it instead."""

    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            callback(*args, **kwargs)
        except Exception:
            log.exception("MQTT: error in %s", getattr(callback, "__name__", "a callback"))

    return run


class MqttService:
    """Publishes results, metrics, status, availability and HA discovery; answers commands.

    Also a `Sink` (publish/close). Thread-safe: `publish` is called from pipeline threads, the
    paho callbacks run in paho's network thread.
    """

    def __init__(
        self, config: Config, target: CommandTarget, *, password: str | None = None
    ) -> None:
        self._config = config
        self._target = target
        self.device = config.device.resolved_id
        self.topics = Topics(config.mqtt.prefix, self.device)
        mc = config.mqtt
        self.client_id = mc.client_id or f"camclassd-{self.device}"
        self._v5 = mc.protocol == "5"

        # Guards the store, _ready and the snapshot book-keeping; held around publish calls so
        # that a buffered result can never be overtaken by a newer one.
        self._lock = threading.Lock()
        self._store = Store(mc.buffer_size)
        self._ready = False  # connected and the store flushed: results may go straight out
        self._subscribe_mid: int | None = None
        self._status: bytes | None = None
        self._reconnects = 0
        self._ever_connected = False
        self._last_cause = ""
        self._refused = False
        self._stopping = False
        self._started = False
        self._removals: set[str] = set()  # discovery topics to clear (cameras removed)
        self._snapshot_wanted: set[str] = set()  # cameras a `snapshot` command asked for
        self._snapshot_last: dict[str, float] = {}
        self._snapshot_asked: dict[str, float] = {}
        # ---- HA discovery (issue 11): state the announcer keeps -------------------------
        self.features = Features()  # the model's labels, gated cameras: set by the daemon
        self._removed_components: dict[str, str] = {}  # device-form removal stubs
        self._handovers: set[str] = set()  # other-form topics to hand over on reload
        self._previous_label: dict[str, str | None] = {}  # per camera, for label events
        # ---- end HA discovery state -----------------------------------------------------

        self.connected = False
        self.state = "connecting"
        self.commands = CommandHandler(
            target, max_bytes=mc.max_command_bytes, on_snapshot=self._snapshot_requested
        )
        self._client = self._make_client(mc, password)

    # ---- set-up ----------------------------------------------------------------------------

    def _make_client(self, mc: MQTTConfig, password: str | None) -> _Client:
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._v5 else True,
            reconnect_on_failure=True,
        )
        # paho logs "Client is not connected" at ERROR on every retry during an outage; our
        # own callbacks say what matters, so its chatter goes to debug.
        paho_log = logging.getLogger("camclassd.mqtt.paho")
        client.on_log = lambda _c, _u, _level, text: paho_log.debug("%s", text)
        # paho annotates these as int but only ever sleeps on them: fractions work.
        client.reconnect_delay_set(cast(int, mc.reconnect_min_s), cast(int, mc.reconnect_max_s))
        client.will_set(self.topics.availability, "offline", qos=QOS_CONTROL, retain=True)
        if mc.username:
            client.username_pw_set(mc.username, password)
        elif password is not None:
            log.warning(
                "an MQTT password was found but mqtt.username is empty: connecting anonymously"
            )
        if mc.tls.enabled:
            self._set_tls(client, mc)
        client.on_socket_open = _guarded(_no_delay)
        client.on_connect = _guarded(self._on_connect)
        client.on_connect_fail = _guarded(self._on_connect_fail)
        client.on_disconnect = _guarded(self._on_disconnect)
        client.on_subscribe = _guarded(self._on_subscribe)
        client.on_message = _guarded(self._on_message)
        return client

    @staticmethod
    def _set_tls(client: mqtt.Client, mc: MQTTConfig) -> None:
        tls = mc.tls
        try:
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ssl.SSLError, ValueError) as error:
            raise ConfigError(f"mqtt.tls: cannot load the certificates or key: {error}") from None
        if tls.insecure:
            log.warning("mqtt.tls.insecure = true: the broker's host name is not verified")
            client.tls_insecure_set(True)

    def start(self) -> None:
        """Connect in the background; never blocks on or raises for an absent broker."""
        if self._started:
            return
        self._started = True
        mc = self._config.mqtt
        kwargs: dict[str, Any] = {"clean_start": True} if self._v5 else {}
        self._client.connect_async(mc.host, mc.port, mc.keepalive_s, **kwargs)
        self._client.loop_start()
        log.info(
            "MQTT: connecting to %s:%d as %s (MQTT %s%s)",
            mc.host,
            mc.port,
            self.client_id,
            mc.protocol,
            ", TLS" if mc.tls.enabled else "",
        )

    # ---- Sink and publishing -------------------------------------------------------------

    def publish(self, result: Classification) -> None:
        """A classification result (stored while disconnected), plus a snapshot when due."""
        mc = self._config.mqtt
        try:
            payload = encode(classification_payload(result, self.device))
            item = Pending(
                self.topics.classification(result.camera),
                payload,
                mc.qos_results,
                mc.retain_results,
            )
            self._send_or_store(item)
            if result.changed:  # HA discovery (issue 11): the label-changed event
                self._publish_event(result)
            self._snapshot(result)
        except Exception:  # a sink must never take the pipeline down
            log.exception("could not publish the result of camera %r", result.camera)

    def _send_or_store(self, item: Pending) -> None:
        with self._lock:
            if self._ready:
                rc = self._client.publish(item.topic, item.payload, item.qos, item.retain).rc
                # QoS >= 1 refused for no connection stays in paho's queue and is re-sent on
                # reconnect; only QoS 0 is lost, so only that goes to the store.
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
                    rc == MQTTErrorCode.MQTT_ERR_NO_CONN and item.qos > 0
                ):
                    return
            self._store.put(item)

    def _flush(self) -> None:
        """Deliver the store in order, then let new results go straight out."""
        with self._lock:
            flushed = 0
            while (item := self._store.pop()) is not None:
                rc = self._client.publish(item.topic, item.payload, item.qos, item.retain).rc
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not (
                    rc == MQTTErrorCode.MQTT_ERR_NO_CONN and item.qos > 0
                ):
                    self._store.put_back(item)
                    break
                flushed += 1
            else:
                self._ready = True
            self._store.delivered_after_reconnect += flushed
        if flushed:
            log.info("MQTT: delivered %d results kept while disconnected", flushed)

    def publish_metrics(self, snapshot: dict[str, Any]) -> None:
        """Metrics are not stored while disconnected: the next interval's are newer."""
        payload = metrics_payload(snapshot, self.device, self.counters(), time.time())
        if self.connected:
            self._publish(self.topics.metrics, encode(payload), self._config.mqtt.qos_metrics)

    def publish_status(self, status: dict[str, Any]) -> None:
        """Retained; kept and re-published on every connect."""
        data = encode(status_payload(status, self.device, time.time()))
        self._status = data
        if self.connected:
            self._publish(self.topics.status, data, QOS_CONTROL, retain=True)

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return mqtt_counters(
                buffered=len(self._store),
                dropped=self._store.dropped,
                delivered_after_reconnect=self._store.delivered_after_reconnect,
                reconnects=self._reconnects,
                connected=self.connected,
            )

    def _publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    # ---- snapshots --------------------------------------------------------------------------

    def _snapshot_requested(self, camera: str | None) -> None:
        with self._lock:
            known = enabled_cameras(self._config)
            # Unknown names are refused by the target; never let them pile up here.
            self._snapshot_wanted.update(known if camera is None else {camera} & set(known))

    def _snapshot(self, result: Classification) -> None:
        """Publish the frame when a command asked for it or the interval is due.

        The pipeline attaches a frame only when asked (`target.snapshot`), so for the interval
        snapshots this service asks, at most once per interval per camera.
        """
        camera: str = result.camera
        interval = self._config.mqtt.snapshot_interval_s
        now = time.monotonic()
        with self._lock:
            due = interval > 0 and now - self._snapshot_last.get(camera, -math.inf) >= interval
            wanted = camera in self._snapshot_wanted
            if result.image is None:
                ask = due and now - self._snapshot_asked.get(camera, -math.inf) >= interval
                if ask:
                    self._snapshot_asked[camera] = now
            elif wanted or due:
                ask = False
                self._snapshot_wanted.discard(camera)
                self._snapshot_last[camera] = now
            else:
                return
        if result.image is None:
            if ask:
                self._target.snapshot(camera)
            return
        caption = f"{self.device}/{camera} #{result.seq}"
        jpeg = snapshot_jpeg(result.image, result.top, caption)
        if self.connected:
            self._publish(self.topics.snapshot(camera), jpeg, QOS_SNAPSHOT)

    # ---- reload and stop ----------------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Take a reloaded config; the session stays up. Connection settings (host, port,
        credentials, TLS, client id, prefix, device id) need a restart: they are kept."""
        old = self._config
        changed = [
            name for name in SESSION_FIELDS if getattr(old.mqtt, name) != getattr(config.mqtt, name)
        ]
        if old.device.resolved_id != config.device.resolved_id:
            changed.append("device.id")
        if changed:
            log.warning("MQTT settings %s take effect after a restart", ", ".join(changed))
        session = {name: getattr(old.mqtt, name) for name in SESSION_FIELDS}
        new = config.model_copy(
            update={"device": old.device, "mqtt": config.mqtt.model_copy(update=session)}
        )
        with self._lock:
            self._config = new
            self._store.resize(new.mqtt.buffer_size)
            self.commands.max_bytes = new.mqtt.max_command_bytes
        changes = reload_changes(old, new, self.features)  # HA discovery (issue 11)
        with self._lock:
            self._removals.update(changes.clear)
            self._handovers.update(changes.handover)
            self._removed_components.update(changes.removed)
        if not self.connected:
            return  # on_connect sends the removals and the new discovery
        self._send_removals()
        self._send_handovers()  # HA discovery (issue 11)
        if old.homeassistant.status_topic != new.homeassistant.status_topic:
            self._client.unsubscribe(old.homeassistant.status_topic)
            self._client.subscribe(new.homeassistant.status_topic, QOS_CONTROL)
        self._publish_discovery()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish `offline` (retained), disconnect, stop the network thread."""
        if self._stopping:
            return
        self._stopping = True
        deadline = time.monotonic() + timeout
        self.commands.join(timeout / 2)
        if not self._started:
            return
        if self.connected:
            info = self._client.publish(self.topics.availability, "offline", QOS_CONTROL, True)
            with contextlib.suppress(RuntimeError, ValueError):  # the connection just dropped
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = len(self._store)
        if left:
            log.warning("MQTT: %d results kept while disconnected were not delivered", left)
        self._client.disconnect()
        self._client.loop_stop()
        self.connected = False
        self.state = "disconnected (stopped)"

    def close(self) -> None:
        self.stop()

    # ---- paho callbacks (network thread) --------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        mc = self._config.mqtt
        if reason.is_failure:
            self._refused = True
            self.state = f"disconnected (refused: {reason.getName()})"
            log.error(
                "MQTT broker %s:%d refused the connection: %s; retrying with backoff",
                mc.host,
                mc.port,
                describe_reason(reason),
            )
            return
        if self._ever_connected:
            self._reconnects += 1
        self._ever_connected = True
        self._refused = False
        self._last_cause = ""
        self.connected = True
        self.state = "connected"
        log.info("MQTT: connected to %s:%d", mc.host, mc.port)
        self._publish(self.topics.availability, b"online", QOS_CONTROL, retain=True)
        if self._status is not None:
            self._publish(self.topics.status, self._status, QOS_CONTROL, retain=True)
        subscriptions = [(self.topics.command_filter, QOS_CONTROL)]
        ha = self._config.homeassistant
        if ha.enabled:
            subscriptions.append((ha.status_topic, QOS_CONTROL))
            # HA discovery (issue 11): retained configs of the other form come first (they
            # are handed over as they arrive), then our own sync message, which the broker
            # delivers after them: only then is the configured form published.
            subscriptions.append((handover_filter(self._config), QOS_CONTROL))
            subscriptions.append((self.topics.discovery_sync, QOS_CONTROL))
        rc, mid = client.subscribe(subscriptions)
        self._subscribe_mid = mid
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # e.g. the connection dropped meanwhile
            log.warning("MQTT subscribe failed: %s", mqtt.error_string(rc))
        self._send_removals()
        if ha.enabled:
            self._send_handovers()
            self._publish(self.topics.discovery_sync, b"", QOS_CONTROL)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.error("MQTT broker refused a subscription: %s", describe_reason(reason))
        if mid == self._subscribe_mid:
            self._flush()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        mc = self._config.mqtt
        self.connected = False
        error = self._client.last_error
        cause = (error.strerror or str(error)) if error is not None else "unknown error"
        if not self._refused:
            self.state = f"disconnected (broker unreachable: {cause})"
        if self._last_cause != cause:  # once per outage, and when the cause changes
            self._last_cause = cause
            log.warning(
                "MQTT broker %s:%d unreachable (%s); retrying every %g-%g s, keeping up to %d "
                "results",
                mc.host,
                mc.port,
                cause,
                mc.reconnect_min_s,
                mc.reconnect_max_s,
                mc.buffer_size,
            )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # No self._lock here: paho may call this while holding its _out_message_mutex (a failed
        # write inside CONNACK handling), and a pipeline thread holding self._lock may be
        # waiting for that mutex in publish(). A plain bool store is atomic; publish() copes
        # with a connection that dropped after it looked.
        self._ready = False
        was_connected = self.connected
        self.connected = False
        if self._stopping:
            self.state = "disconnected (stopped)"
            return
        if was_connected:
            self.state = f"disconnected ({reason.getName()})"
            log.warning(
                "MQTT: lost the connection (%s); reconnecting, keeping up to %d results",
                reason.getName(),
                self._config.mqtt.buffer_size,
            )

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._handle_message(message)
        except Exception:  # never let a payload kill the network thread
            log.exception("MQTT: could not handle a message")

    def _handle_message(self, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        ha = self._config.homeassistant
        if ha.enabled and topic == ha.status_topic:
            if message.payload.strip() == b"online":
                log.info("Home Assistant is online: re-sending discovery")
                self._publish_discovery()
            return
        # ---- HA discovery (issue 11): hand-over, then the configured form ----------------
        if ha.enabled and topic == self.topics.discovery_sync:
            self._publish_discovery()
            return
        if message.retain and is_handover_candidate(self._config, topic, bytes(message.payload)):
            log.info(
                "Home Assistant discovery: handing %s over to the %r form", topic, ha.discovery
            )
            self._send_handover(topic)
            return
        # ---- end HA discovery --------------------------------------------------------------
        name = self.topics.command_name(topic)
        if name is None:
            return
        if message.retain:
            # Delivered from the broker's store on subscribe: an old command would run again
            # on every reconnect. Commands are live only.
            log.warning("ignoring a retained MQTT command on %s", topic)
            return
        properties = message.properties
        response_topic: str | None = getattr(properties, "ResponseTopic", None)
        correlation: bytes | None = getattr(properties, "CorrelationData", None)

        def respond(payload: dict[str, Any]) -> None:
            self._reply(name, payload, response_topic, correlation)

        self.commands.handle(name, bytes(message.payload), respond)

    def _reply(
        self,
        name: str,
        payload: dict[str, Any],
        response_topic: str | None,
        correlation: bytes | None,
    ) -> None:
        topic = self.topics.reply(name)
        if response_topic and not any(c in response_topic for c in "+#\0"):
            topic = response_topic
        properties = None
        if self._v5 and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        self._publish(topic, encode(payload), QOS_CONTROL, properties=properties)

    def _send_removals(self) -> None:
        """Empty retained configs make HA delete the entities of removed cameras."""
        with self._lock:
            topics, self._removals = sorted(self._removals), set()
        for topic in topics:
            self._publish(topic, b"", QOS_CONTROL, retain=True)

    # ---- HA discovery (issue 11) -------------------------------------------------------------

    def _publish_discovery(self) -> None:
        with self._lock:
            removed = dict(self._removed_components)
        configs = discovery_configs(self._config, __version__, self.features, removed)
        for topic, payload in configs.items():
            self._publish(topic, encode(payload), QOS_CONTROL, retain=True)

    def _send_handovers(self) -> None:
        with self._lock:
            topics, self._handovers = sorted(self._handovers), set()
        for topic in topics:
            self._send_handover(topic)

    def _send_handover(self, topic: str) -> None:
        for name, payload, retain in handover_messages(self._config, __version__, topic):
            self._publish(name, payload, QOS_CONTROL, retain=retain)

    def _publish_event(self, result: Classification) -> None:
        """Not stored while disconnected: an automation must not fire hours late."""
        with self._lock:
            previous = self._previous_label.get(result.camera)
            self._previous_label[result.camera] = result.stable_label
        if not self.connected:
            return
        payload = event_payload(result, previous, event_types(self.features.labels))
        self._publish(
            self.topics.event(result.camera), encode(payload), self._config.mqtt.qos_results
        )
