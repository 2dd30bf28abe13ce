"""The MQTT session: one paho-mqtt 2 client, its connection and nothing else.

Connects in the background (`connect_async` + `loop_start`), so the daemon starts and
classifies while the broker is down. Owns the last will, TLS, TCP_NODELAY, the reconnect
backoff (exponential with jitter, capped so that a returning broker is found within
`reconnect_max_s`), and callbacks that can never kill paho's network thread. What happens on a
connect or a message is the owner's business: it passes `on_connected`, `on_subscribed`
and `on_message`.

The session itself is clean (clean_start / clean_session): a command published while the daemon
was away must not run hours later.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, ParamSpec, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from camclassd.config import MQTTConfig

log = logging.getLogger("camclassd.mqtt.client")
P = ParamSpec("P")

QOS_CONTROL = 1  # availability, status, discovery, replies: small and must arrive
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
JITTER = (0.5, 1.0)  # each delay is drawn from this fraction of its exponential value


def describe_reason(reason: ReasonCode) -> str:
    """e.g. 'Not authorized (reason code 135): check mqtt.username and the password file'."""
    text = f"{reason.getName()} (reason code {reason.value})"
    hint = REFUSAL_HINTS.get(reason.value)
    return f"{text}: {hint}" if hint else text


def reconnect_delay(attempt: int, min_s: float, max_s: float, draw: float) -> float:
    """The wait before reconnect attempt `attempt` (0-based): min_s doubling to max_s, times a
    jitter fraction `draw` in [0, 1) mapped onto JITTER, never below min_s.

    Jitter keeps a fleet of devices that lost the same broker from reconnecting in lockstep;
    the cap bounds how long a returning broker waits for us.
    """
    exponential = min(max_s, min_s * 2.0 ** min(attempt, 30))
    low, high = JITTER
    return max(min_s, exponential * (low + (high - low) * draw))


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


class Session:
    """One connection to the broker for the life of an MQTT service."""

    def __init__(
        self,
        mc: MQTTConfig,
        *,
        client_id: str,
        will_topic: str,
        password: str | None,
        tls_context: ssl.SSLContext | None,
        on_connected: Callable[[], None],
        on_subscribed: Callable[[int], None],
        on_message: Callable[[mqtt.MQTTMessage], None],
        on_disconnected: Callable[[], None],
        buffer_size: Callable[[], int],
        rng: random.Random | None = None,
    ) -> None:
        self._mc = mc
        self.client_id = client_id
        self.v5 = mc.protocol == "5"
        self._on_connected = on_connected
        self._on_subscribed = on_subscribed
        self._on_message = on_message
        self._on_disconnected = on_disconnected
        self._buffer_size = buffer_size
        self._rng = rng or random.Random()
        self._attempt = 0
        self.connected = False
        self.state = "connecting"
        self.reconnects = 0
        self._ever_connected = False
        self._last_cause = ""
        self._refused = False
        self.stopping = False
        self._started = False
        self.client = self._make_client(will_topic, password, tls_context)

    def _make_client(
        self, will_topic: str, password: str | None, tls_context: ssl.SSLContext | None
    ) -> _Client:
        mc = self._mc
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self.v5 else True,
            reconnect_on_failure=True,
        )
        # paho logs "Client is not connected" at ERROR on every retry during an outage; our
        # own callbacks say what matters, so its chatter goes to debug.
        paho_log = logging.getLogger("camclassd.mqtt.paho")
        client.on_log = lambda _c, _u, _level, text: paho_log.debug("%s", text)
        self._schedule_reconnect(client)
        client.will_set(will_topic, "offline", qos=QOS_CONTROL, retain=True)
        if mc.username:
            client.username_pw_set(mc.username, password)
        elif password is not None:
            log.warning(
                "an MQTT password was found but mqtt.username is empty: connecting anonymously"
            )
        if tls_context is not None:
            client.tls_set_context(tls_context)
            if mc.tls.insecure:
                log.warning("mqtt.tls.insecure = true: the broker's host name is not verified")
                client.tls_insecure_set(True)
        client.on_socket_open = _guarded(_no_delay)
        client.on_connect = _guarded(self._connect)
        client.on_connect_fail = _guarded(self._connect_fail)
        client.on_disconnect = _guarded(self._disconnect)
        client.on_subscribe = _guarded(self._subscribe)
        client.on_message = _guarded(self._message)
        return client

    def _schedule_reconnect(self, client: mqtt.Client | None = None) -> None:
        """Set paho's next wait: it resets to `min_delay` whenever this is called, so one
        fixed value per attempt gives our own jittered exponential instead of paho's."""
        mc = self._mc
        delay = reconnect_delay(
            self._attempt, mc.reconnect_min_s, mc.reconnect_max_s, self._rng.random()
        )
        self._attempt += 1
        # paho annotates these as int but only ever sleeps on them: fractions work.
        target = client if client is not None else getattr(self, "client", None)
        if target is not None:
            target.reconnect_delay_set(cast(int, delay), cast(int, delay))

    # ---- use -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; never blocks on or raises for an absent broker."""
        if self._started:
            return
        self._started = True
        mc = self._mc
        kwargs: dict[str, Any] = {"clean_start": True} if self.v5 else {}
        self.client.connect_async(mc.host, mc.port, mc.keepalive_s, **kwargs)
        self.client.loop_start()
        log.info(
            "MQTT: connecting to %s:%d as %s (MQTT %s%s)",
            mc.host,
            mc.port,
            self.client_id,
            mc.protocol,
            ", TLS" if mc.tls.enabled else "",
        )

    @property
    def started(self) -> bool:
        return self._started

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos, retain, properties)

    def send(
        self,
        topic: str,
        payload: bytes | str,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish and log a failure other than 'not connected' (paho queues QoS >= 1)."""
        info = self.publish(topic, payload, qos, retain, properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    def stop(self) -> None:
        self.stopping = True
        if not self._started:
            return
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False
        self.state = "disconnected (stopped)"

    # ---- paho callbacks (network thread) --------------------------------------------------

    def _connect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        mc = self._mc
        if reason.is_failure:
            self._refused = True
            self.state = f"disconnected (refused: {reason.getName()})"
            log.error(
                "MQTT broker %s:%d refused the connection: %s; retrying with backoff",
                mc.host,
                mc.port,
                describe_reason(reason),
            )
            self._schedule_reconnect()
            return
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._refused = False
        self._last_cause = ""
        self._attempt = 0
        self._schedule_reconnect()
        self.state = "connected"
        log.info("MQTT: connected to %s:%d", mc.host, mc.port)
        # Announce first (availability, status: retained), then say connected: whoever waits
        # for `connected` and then subscribes gets them as retained messages, not live ones.
        self._on_connected()
        self.connected = True

    def _subscribe(
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
        self._on_subscribed(mid)

    def _connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        mc = self._mc
        self.connected = False
        self._schedule_reconnect()
        error = self.client.last_error
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
                self._buffer_size(),
            )

    def _disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # No lock here: paho may call this while holding its _out_message_mutex (a failed
        # write inside CONNACK handling), and a pipeline thread holding the outbox lock may be
        # waiting for that mutex in publish(). Plain attribute stores are atomic.
        self._on_disconnected()
        was_connected = self.connected
        self.connected = False
        if self.stopping:
            self.state = "disconnected (stopped)"
            return
        self._schedule_reconnect()
        if was_connected:
            self.state = f"disconnected ({reason.getName()})"
            log.warning(
                "MQTT: lost the connection (%s); reconnecting, keeping up to %d results",
                reason.getName(),
                self._buffer_size(),
            )

    def _message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._on_message(message)
