"""Commands in over MQTT: `{prefix}/{device}/cmd/{name}` -> the command inbox, replies out.

Runs on paho's network thread and does only quick work: a bad command is answered at once, a
good one goes through the one door (`CommandInbox`) to the daemon's main thread, whose reply
comes back through `respond` (to `cmd/{name}/reply`, or the MQTT 5 response topic with the
correlation data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from camclassd.commands import (
    NAME_SHOWN,
    CommandError,
    Request,
    answer,
    error_reply,
    parse_command,
)
from camclassd.mqtt.payloads import encode
from camclassd.mqtt.session import QOS_CONTROL, Session
from camclassd.mqtt.topics import Topics

log = logging.getLogger("camclassd.mqtt.client")


class Dispatcher:
    def __init__(
        self,
        session: Session,
        topics: Topics,
        submit: Callable[[Request], None],
        max_bytes: Callable[[], int],
    ) -> None:
        self._session = session
        self._topics = topics
        self._submit = submit
        self._max_bytes = max_bytes

    def handle(self, message: mqtt.MQTTMessage) -> bool:
        """Take a message if it is a command (True), else leave it (False). Never raises."""
        name = self._topics.command_name(message.topic)
        if name is None:
            return False
        if message.retain:
            # Delivered from the broker's store on subscribe: an old command would run again
            # on every reconnect. Commands are live only.
            log.warning("ignoring a retained MQTT command on %s", message.topic)
            return True
        properties = message.properties
        response_topic: str | None = getattr(properties, "ResponseTopic", None)
        correlation: bytes | None = getattr(properties, "CorrelationData", None)

        def respond(payload: dict[str, Any]) -> None:
            self._reply(name, payload, response_topic, correlation)

        try:
            parsed = parse_command(name, bytes(message.payload), self._max_bytes())
        except Exception as error:  # the last line of defence: paho's thread must not die
            log.exception("MQTT command %r could not be parsed", name[:NAME_SHOWN])
            answer(respond, {"ok": False, "command": name, "id": None, "error": str(error)})
            return True
        if isinstance(parsed, CommandError):
            log.warning("rejected MQTT command %r: %s", name[:NAME_SHOWN], parsed.message)
            answer(respond, error_reply(parsed))
            return True
        self._submit(Request(parsed, respond))
        return True

    def _reply(
        self,
        name: str,
        payload: dict[str, Any],
        response_topic: str | None,
        correlation: bytes | None,
    ) -> None:
        topic = self._topics.reply(name)
        if response_topic and not any(c in response_topic for c in "+#\0"):
            topic = response_topic
        properties = None
        if self._session.v5 and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        self._session.send(topic, encode(payload), QOS_CONTROL, properties=properties)
