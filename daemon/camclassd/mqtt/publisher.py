"""What the daemon says over MQTT: results (through the outbox), snapshots, status, metrics.

A `Sink` for the pipeline's fan-out thread, plus the status and metrics the main thread
publishes. Payloads come from the pure builders in `mqtt.payloads`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from camclassd.config import Config, MQTTConfig
from camclassd.mqtt.ha_entities import Features, enabled_cameras, event_types
from camclassd.mqtt.outbox import Outbox
from camclassd.mqtt.payloads import (
    classification_payload,
    encode,
    event_payload,
    metrics_payload,
    snapshot_jpeg,
    status_payload,
)
from camclassd.mqtt.session import QOS_CONTROL, Session
from camclassd.mqtt.store import Pending
from camclassd.mqtt.topics import Topics
from camclassd.results import Classification
from camclassd.snapshots import Snapshot

if TYPE_CHECKING:
    from camclassd.metrics import MetricsSnapshot

log = logging.getLogger("camclassd.mqtt.client")

QOS_SNAPSHOT = 0  # big and only the newest matters


class Publisher:
    def __init__(
        self,
        session: Session,
        outbox: Outbox,
        topics: Topics,
        settings: Callable[[], MQTTConfig],
    ) -> None:
        self._session = session
        self._outbox = outbox
        self._topics = topics
        self._settings = settings  # the live mqtt settings (a reload may change QoS or retain)
        self._status: bytes | None = None  # kept: re-published on every connect
        self.features = Features()  # each camera's model labels: its events' types
        self._previous_label: dict[str, str | None] = {}  # per camera, for label events

    # ---- Sink (fan-out thread) -----------------------------------------------------------

    def publish(self, result: Classification) -> None:
        """A classification result (stored while disconnected)."""
        mc = self._settings()
        payload = encode(classification_payload(result, self._topics.device))
        topic = self._topics.classification(result.camera)
        self._outbox.send(Pending(topic, payload, mc.qos_results, mc.retain_results))
        if result.changed:
            self._publish_event(result)

    def _publish_event(self, result: Classification) -> None:
        """The stable label changed (HA's event entity). Not stored while disconnected: an
        automation must not fire hours late."""
        previous = self._previous_label.get(result.camera)
        self._previous_label[result.camera] = result.stable_label
        if not self._session.connected:
            return
        types = event_types(self.features.labels_for(result.camera))  # its own model's
        payload = event_payload(result, previous, types)
        topic = self._topics.event(result.camera)
        self._session.send(topic, encode(payload), self._settings().qos_results)

    def snapshot(self, snapshot: Snapshot) -> None:
        """The JPEG with the top-3 drawn on it; not stored while disconnected."""
        if not self._session.connected:
            return
        caption = f"{self._topics.device}/{snapshot.camera} #{snapshot.seq}"
        jpeg = snapshot_jpeg(snapshot.image, snapshot.top, caption)
        retain = self._settings().retain_snapshots
        self._session.send(self._topics.snapshot(snapshot.camera), jpeg, QOS_SNAPSHOT, retain)

    def close(self) -> None:
        """The session belongs to the MQTT service."""

    # ---- reloads (main thread) -----------------------------------------------------------

    def clear_retained(self, old: Config, new: Config) -> None:
        """Empty retained messages where the broker should keep nothing any more (see
        `stale_retained`). Through the outbox, in order: a clear comes after any result still
        waiting to go out on its topic, also across a reconnect."""
        for topic in sorted(stale_retained(old, new, self._topics)):
            self._outbox.send(Pending(topic, b"", QOS_CONTROL, True))

    # ---- status and metrics (main thread) ------------------------------------------------

    def publish_status(self, status: Mapping[str, Any]) -> None:
        """Retained; kept and re-published on every connect."""
        data = encode(status_payload(status, self._topics.device, time.time()))
        self._status = data
        if self._session.connected:
            self._session.send(self._topics.status, data, QOS_CONTROL, retain=True)

    def publish_metrics(self, snapshot: MetricsSnapshot) -> None:
        """Metrics are not stored while disconnected: the next interval's are newer."""
        if not self._session.connected:
            return
        payload = metrics_payload(snapshot, self._topics.device, time.time())
        self._session.send(self._topics.metrics, encode(payload), self._settings().qos_metrics)

    def announce_online(self) -> None:
        """On every connect: availability, then the kept status."""
        self._session.send(self._topics.availability, b"online", QOS_CONTROL, retain=True)
        if self._status is not None:
            self._session.send(self._topics.status, self._status, QOS_CONTROL, retain=True)


def stale_retained(old: Config, new: Config, topics: Topics) -> set[str]:
    """The retained snapshot and result topics (under `topics`) that `old` left on the broker
    and `new` no longer keeps: those of cameras it no longer runs, and all of them when it
    turns that retention off."""
    running = set(enabled_cameras(new))
    stale: set[str] = set()
    for name in enabled_cameras(old):
        gone = name not in running
        if old.mqtt.retain_snapshots and (gone or not new.mqtt.retain_snapshots):
            stale.add(topics.snapshot(name))
        if old.mqtt.retain_results and (gone or not new.mqtt.retain_results):
            stale.add(topics.classification(name))
    return stale
