"""The MQTT service: a session, an outbox, a publisher, a discovery announcer and a command
dispatcher, put together once.

Each part has one job (see their modules); this class only wires what one connection event
means for each of them:
- connected: availability `online`, the kept status, subscribe (commands, HA's birth topic),
  discovery;
- SUBACK of that subscribe: flush the outbox;
- disconnected: results go to the outbox's store;
- a message: discovery's (HA's birth, the sync marker, a config to hand over) -> the
  announcer; a command -> the dispatcher -> the command inbox.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from camclassd import secrets
from camclassd.commands import Request
from camclassd.config import Config, MQTTConfig
from camclassd.errors import ConfigError
from camclassd.mqtt.announcer import Announcer
from camclassd.mqtt.dispatch import Dispatcher
from camclassd.mqtt.ha_entities import Features
from camclassd.mqtt.outbox import Outbox
from camclassd.mqtt.payloads import MQTT_LINK_COUNTERS, MQTT_LINK_GAUGES, mqtt_counters
from camclassd.mqtt.publisher import Publisher
from camclassd.mqtt.session import QOS_CONTROL, Session, describe_reason
from camclassd.mqtt.topics import Topics
from camclassd.results import Classification
from camclassd.secrets import SecretsError
from camclassd.snapshots import Snapshot

if TYPE_CHECKING:
    from camclassd.metrics import Metrics, MetricsSnapshot

log = logging.getLogger(__name__)

__all__ = ["MqttService", "describe_reason", "read_password", "tls_context"]


def read_password(config: MQTTConfig) -> str | None:
    """`password_file`, else the systemd credential 'mqtt_password', else None (one reader
    for every command: `camclassd.secrets`)."""
    return secrets.read_password(config.password_file)


def tls_context(mc: MQTTConfig) -> ssl.SSLContext | None:
    """The client TLS context from mqtt.tls (when not loaded with the config, as in tests)."""
    tls = mc.tls
    if not tls.enabled:
        return None
    try:
        return secrets.tls_context(tls.ca_file, tls.cert_file, tls.key_file)
    except SecretsError as error:
        raise ConfigError(f"mqtt.tls: cannot load the certificates or key: {error}") from None


class MqttService:
    """Everything camclassd does over one MQTT connection. Also a `Sink` for the fan-out.

    Thread-safe: `publish`/`snapshot` come from the fan-out thread, status and metrics from
    the main thread, the paho callbacks run in paho's network thread. Commands are handed to
    `submit` (the daemon's command inbox) and answered from wherever that runs them.
    """

    def __init__(
        self,
        config: Config,
        submit: Callable[[Request], None],
        *,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self.device = config.device.resolved_id
        self.topics = Topics(config.mqtt.prefix, self.device)
        mc = config.mqtt
        self.client_id = mc.client_id or f"camclassd-{self.device}"
        self._subscribe_mid: int | None = None
        self._session = Session(
            mc,
            client_id=self.client_id,
            will_topic=self.topics.availability,
            password=password,
            tls_context=tls if tls is not None else tls_context(mc),
            on_connected=self._connected,
            on_subscribed=self._subscribed,
            on_message=self._message,
            on_disconnected=self._disconnected,
            buffer_size=lambda: self._outbox.capacity,
        )
        self._outbox = Outbox(self._session, mc.buffer_size)
        self._publisher = Publisher(self._session, self._outbox, self.topics, self._mqtt)
        self._announcer = Announcer(self._session, self.topics, config)
        self._dispatcher = Dispatcher(
            self._session, self.topics, submit, lambda: self._mqtt().max_command_bytes
        )

    def _mqtt(self) -> MQTTConfig:
        return self._config.mqtt

    # ---- state ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._session.connected

    @property
    def state(self) -> str:
        return self._session.state

    def counters(self) -> dict[str, Any]:
        buffered, dropped, delivered = self._outbox.counters()
        return mqtt_counters(
            buffered=buffered,
            dropped=dropped,
            delivered_after_reconnect=delivered,
            reconnects=self._session.reconnects,
            connected=self._session.connected,
        )

    # ---- use -----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; never blocks on or raises for an absent broker."""
        self._session.start()

    def publish(self, result: Classification) -> None:
        self._publisher.publish(result)

    def snapshot(self, snapshot: Snapshot) -> None:
        self._publisher.snapshot(snapshot)

    def publish_status(self, status: Mapping[str, Any]) -> None:
        self._publisher.publish_status(status)

    def publish_metrics(self, snapshot: MetricsSnapshot) -> None:
        self._publisher.publish_metrics(snapshot)

    def report(self, metrics: Metrics) -> None:
        """The link's counters into the metrics model (an `on_collect` hook: read at each
        snapshot, so the MQTT payload and Prometheus show the same values)."""
        counters = self.counters()
        for key in MQTT_LINK_GAUGES:
            metrics.set_gauge(f"mqtt_{key}", float(counters[key]))
        for key in MQTT_LINK_COUNTERS:
            metrics.set_counter(f"mqtt_{key}", int(counters[key]))

    def set_features(self, features: Features) -> None:
        """What the running pipeline offers (each camera's model labels, the gated cameras),
        for discovery and the label events; set before `start`."""
        self._announcer.features = features
        self._publisher.features = features

    def apply_config(self, config: Config, features: Features | None = None) -> None:
        """A reloaded config whose session settings are unchanged (see camclassd.reload)."""
        old, self._config = self._config, config
        self._outbox.resize(config.mqtt.buffer_size)
        if features is not None:
            self._publisher.features = features
        self._announcer.update(config, features)  # HA deletes removed entities first
        self._publisher.clear_retained(old, config)

    def retire(self, successor: Config) -> None:
        """A new session replaces this one (call before `stop`): what the successor's config
        no longer keeps is cleared under this session's topics. Lost if the broker is
        unreachable now: this session will not connect again."""
        self._publisher.clear_retained(self._config, successor)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish `offline` (retained), disconnect, stop the network thread."""
        session = self._session
        if session.stopping:
            return
        session.stopping = True
        if not session.started:
            return
        if session.connected:
            info = session.publish(self.topics.availability, "offline", QOS_CONTROL, True)
            with contextlib.suppress(RuntimeError, ValueError):  # the connection just dropped
                info.wait_for_publish(timeout)
        left = self._outbox.counters()[0]
        if left:
            log.warning("MQTT: %d results kept while disconnected were not delivered", left)
        session.stop()

    def close(self) -> None:
        """As a sink: the service outlives pipelines; `stop` ends it."""

    # ---- connection events (paho's thread) -----------------------------------------------

    def _connected(self) -> None:
        self._publisher.announce_online()
        subscriptions = [(self.topics.command_filter, QOS_CONTROL)]
        # Home Assistant's birth topic, retained configs of the other discovery form, and our
        # sync marker (the broker delivers it after those).
        subscriptions += [(topic, QOS_CONTROL) for topic in self._announcer.subscriptions()]
        rc, mid = self._session.client.subscribe(subscriptions)
        self._subscribe_mid = mid
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # e.g. the connection dropped meanwhile
            log.warning("MQTT subscribe failed: %s", mqtt.error_string(rc))
        self._announcer.on_connected()

    def _subscribed(self, mid: int) -> None:
        if mid == self._subscribe_mid:
            self._outbox.flush()

    def _disconnected(self) -> None:
        self._outbox.not_ready()

    def _message(self, message: mqtt.MQTTMessage) -> None:
        try:
            payload = bytes(message.payload)
            if self._announcer.handle(message.topic, payload, bool(message.retain)):
                return
            self._dispatcher.handle(message)
        except Exception:  # never let a payload kill the network thread
            log.exception("MQTT: could not handle a message")
