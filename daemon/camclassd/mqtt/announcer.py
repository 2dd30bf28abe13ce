"""Home Assistant discovery: when to send the retained configs (the configs themselves are
built by the pure functions in `mqtt.discovery`).

On every connect the announcer first hands over, to the configured discovery form (device or
per-component), whatever retained configs of the other form the broker still holds for this
device (HA's `migrate_discovery` procedure keeps the entity ids), and only then publishes the
configured form: a `{prefix}/{device}/discovery/sync` marker, published after subscribing,
arrives after those retained configs and triggers it. Discovery is sent again whenever Home
Assistant's birth message says `online`; on a reload what went away is cleared first.
"""

from __future__ import annotations

import logging
import threading

from camclassd import __version__
from camclassd.config import Config
from camclassd.mqtt.discovery import (
    discovery_configs,
    handover_filter,
    handover_messages,
    is_handover_candidate,
    reload_changes,
)
from camclassd.mqtt.ha_entities import Features
from camclassd.mqtt.payloads import encode
from camclassd.mqtt.session import QOS_CONTROL, Session
from camclassd.mqtt.topics import Topics

log = logging.getLogger("camclassd.mqtt.client")


class Announcer:
    def __init__(self, session: Session, topics: Topics, config: Config) -> None:
        self._session = session
        self._topics = topics
        self._config = config
        self._lock = threading.Lock()
        self.features = Features()  # cameras' labels, the gated cameras: from the daemon
        self._removals: set[str] = set()  # discovery topics to clear (cameras removed)
        self._removed_components: dict[str, str] = {}  # device-form removal stubs
        self._handovers: set[str] = set()  # other-form topics to hand over on reload

    # ---- what to subscribe to, and what arrives there ------------------------------------

    def subscriptions(self) -> list[str]:
        ha = self._config.homeassistant
        if not ha.enabled:
            return []
        return [ha.status_topic, handover_filter(self._config), self._topics.discovery_sync]

    def handle(self, topic: str, payload: bytes, retained: bool) -> bool:
        """Take a message meant for discovery (True), else leave it (False)."""
        ha = self._config.homeassistant
        if not ha.enabled:
            return False
        if topic == ha.status_topic:
            if payload.strip() == b"online":
                log.info("Home Assistant is online: re-sending discovery")
                self.publish()
            return True
        if topic == self._topics.discovery_sync:
            self.publish()
            return True
        if retained and is_handover_candidate(self._config, topic, payload):
            log.info(
                "Home Assistant discovery: handing %s over to the %r form", topic, ha.discovery
            )
            self._send_handover(topic)
            return True
        return False

    # ---- sending -------------------------------------------------------------------------

    def on_connected(self) -> None:
        """Clear what was removed, hand over what is pending, then ask for the sync marker:
        the configured form goes out when it comes back (after the retained configs)."""
        self._send_removals()
        if self._config.homeassistant.enabled:
            self._send_handovers()
            self._session.send(self._topics.discovery_sync, b"", QOS_CONTROL)

    def publish(self) -> None:
        """Every config of the configured form (retained)."""
        with self._lock:
            config, features = self._config, self.features
            removed = dict(self._removed_components)
        if not config.homeassistant.enabled:
            return
        for topic, payload in discovery_configs(config, __version__, features, removed).items():
            self._session.send(topic, encode(payload), QOS_CONTROL, retain=True)

    def update(self, config: Config, features: Features | None = None) -> None:
        """A reloaded config (and the new pipeline's features): what went away is cleared or
        handed over, then the new configs go out."""
        new_features = self.features if features is None else features
        changes = reload_changes(self._config, config, self.features, new_features)
        with self._lock:
            old, self._config, self.features = self._config, config, new_features
            self._removals.update(changes.clear)
            self._handovers.update(changes.handover)
            self._removed_components.update(changes.removed)
        if not self._session.connected:
            return  # the next connect sends the removals and the new discovery
        self._send_removals()
        self._send_handovers()
        self.publish()
        # Only the birth topic is followed on a reload. The other-form filter is not: on it
        # the broker would deliver the retained config just handed over, and handing it over
        # again after the new configs went out makes HA log "conflicting discovery"; what a
        # reload hands over comes from `reload_changes`, the next connect re-subscribes all.
        old_birth = old.homeassistant.status_topic if old.homeassistant.enabled else None
        new_birth = config.homeassistant.status_topic if config.homeassistant.enabled else None
        if old_birth != new_birth:
            if old_birth is not None:
                self._session.client.unsubscribe(old_birth)
            if new_birth is not None:
                self._session.client.subscribe(new_birth, QOS_CONTROL)

    def _send_removals(self) -> None:
        """Empty retained configs make HA delete the entities of removed cameras."""
        with self._lock:
            topics, self._removals = sorted(self._removals), set()
        for topic in topics:
            self._session.send(topic, b"", QOS_CONTROL, retain=True)

    def _send_handovers(self) -> None:
        with self._lock:
            topics, self._handovers = sorted(self._handovers), set()
        for topic in topics:
            self._send_handover(topic)

    def _send_handover(self, topic: str) -> None:
        for name, payload, retain in handover_messages(self._config, __version__, topic):
            self._session.send(name, payload, QOS_CONTROL, retain=retain)
