"""Home Assistant discovery: when to send the retained configs (the configs themselves are
built by the pure functions in `mqtt.discovery`).

Sent on every connect and whenever Home Assistant's birth message says `online`; on a reload
the configs of what went away are cleared first (an empty retained message deletes an entity).
"""

from __future__ import annotations

import logging
import threading

from camclassd import __version__
from camclassd.config import Config
from camclassd.mqtt.discovery import discovery_configs, removed_topics
from camclassd.mqtt.payloads import encode
from camclassd.mqtt.session import QOS_CONTROL, Session

log = logging.getLogger("camclassd.mqtt.client")


class Announcer:
    def __init__(self, session: Session, config: Config) -> None:
        self._session = session
        self._config = config
        self._lock = threading.Lock()
        self._removals: set[str] = set()  # discovery topics to clear (cameras removed)

    @property
    def birth_topic(self) -> str | None:
        ha = self._config.homeassistant
        return ha.status_topic if ha.enabled else None

    def on_birth(self, payload: bytes) -> None:
        if payload.strip() == b"online":
            log.info("Home Assistant is online: re-sending discovery")
            self.announce()

    def announce(self) -> None:
        """Clear what was removed, then send every config (retained)."""
        with self._lock:
            topics, self._removals = sorted(self._removals), set()
            config = self._config
        for topic in topics:
            self._session.send(topic, b"", QOS_CONTROL, retain=True)
        if not config.homeassistant.enabled:
            return
        for topic, payload in discovery_configs(config, __version__).items():
            self._session.send(topic, encode(payload), QOS_CONTROL, retain=True)

    def update(self, config: Config) -> None:
        """A reloaded config: what it removed is cleared at the next announce."""
        with self._lock:
            old, self._config = self._config, config
            self._removals.update(removed_topics(old, config))
        old_birth = old.homeassistant.status_topic if old.homeassistant.enabled else None
        if self._session.connected:
            if old_birth != self.birth_topic:
                if old_birth is not None:
                    self._session.client.unsubscribe(old_birth)
                if self.birth_topic is not None:
                    self._session.client.subscribe(self.birth_topic, QOS_CONTROL)
            self.announce()
