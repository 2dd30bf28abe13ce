"""Store and forward: results go out at once while the session is ready, into the bounded
`Store` while it is not, and the store is flushed in order after the next SUBACK.

Ordering across a reconnect: QoS >= 1 messages paho accepted but the broker never acknowledged
stay in paho's own queue and paho re-sends them on the next CONNACK (client-side, whatever the
session flag). Those are older than anything in the store, so the store is flushed only after
the SUBACK of the subscribe sent on connect, which the broker sends after the CONNACK that
made paho re-send.
"""

from __future__ import annotations

import logging
import threading

from paho.mqtt.enums import MQTTErrorCode

from camclassd.mqtt.session import Session
from camclassd.mqtt.store import Pending, Store

log = logging.getLogger("camclassd.mqtt.client")


class Outbox:
    """Thread-safe: results come from the fan-out thread, flushes from paho's thread."""

    def __init__(self, session: Session, capacity: int) -> None:
        self._session = session
        # Held around publish calls so that a stored result can never be overtaken.
        self._lock = threading.Lock()
        self._store = Store(capacity)
        self._ready = False  # connected and the store flushed: results may go straight out

    def send(self, item: Pending) -> None:
        with self._lock:
            if self._ready:
                rc = self._session.publish(item.topic, item.payload, item.qos, item.retain).rc
                # QoS >= 1 refused for no connection stays in paho's queue and is re-sent on
                # reconnect; only QoS 0 is lost, so only that goes to the store.
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
                    rc == MQTTErrorCode.MQTT_ERR_NO_CONN and item.qos > 0
                ):
                    return
            self._store.put(item)

    def flush(self) -> None:
        """Deliver the store in order, then let new results go straight out."""
        with self._lock:
            flushed = 0
            while (item := self._store.pop()) is not None:
                rc = self._session.publish(item.topic, item.payload, item.qos, item.retain).rc
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

    def not_ready(self) -> None:
        """The connection dropped: keep results from now on. No lock (see Session)."""
        self._ready = False

    def resize(self, capacity: int) -> None:
        with self._lock:
            self._store.resize(capacity)

    @property
    def capacity(self) -> int:
        return self._store.capacity

    def counters(self) -> tuple[int, int, int]:
        """(buffered, dropped, delivered_after_reconnect)."""
        with self._lock:
            store = self._store
            return len(store), store.dropped, store.delivered_after_reconnect
