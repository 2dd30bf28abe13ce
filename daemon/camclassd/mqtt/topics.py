"""Every MQTT topic camclassd uses, built in one place (the contract in docs/mqtt.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """Topics of one device: `{prefix}/{device}/...`."""

    prefix: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    def classification(self, camera: str) -> str:
        return f"{self.base}/{camera}/classification"

    def snapshot(self, camera: str) -> str:
        return f"{self.base}/{camera}/snapshot"

    def event(self, camera: str) -> str:
        """Not retained: one message each time the camera's stable label changes."""
        return f"{self.base}/{camera}/event"

    @property
    def discovery_sync(self) -> str:
        """Our own marker, published after subscribing: it arrives after the retained
        discovery configs of the subscription (see MqttService._on_connect)."""
        return f"{self.base}/discovery/sync"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        return f"{self.base}/cmd/{name}/reply"

    @property
    def command_filter(self) -> str:
        # One level only: `cmd/+` never matches our own `cmd/{name}/reply`, so no loops.
        return f"{self.base}/cmd/+"

    def command_name(self, topic: str) -> str | None:
        """The command name of a topic under `cmd/`, else None."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if name and "/" not in name else None


def discovery_topic(
    discovery_prefix: str, device: str, object_id: str, platform: str = "sensor"
) -> str:
    """A per-component discovery topic: `{prefix}/{platform}/{device}/{object}/config`."""
    return f"{discovery_prefix}/{platform}/{device}/{object_id}/config"


def device_discovery_topic(discovery_prefix: str, device: str) -> str:
    """The device-based discovery topic: `{prefix}/device/{device}/config`."""
    return f"{discovery_prefix}/device/{device}/config"
