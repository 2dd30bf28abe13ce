"""Home Assistant MQTT discovery: pure functions from the config to the retained messages.

Two forms (`[homeassistant] discovery`):

- "device" (default): one retained `{discovery_prefix}/device/{device}/config` with `device`,
  `origin`, the shared availability and `components` (ha_entities.py builds them). A component
  that goes away stays in it as `{"platform": ...}` alone: HA's documented removal.
- "components": one retained `{discovery_prefix}/{platform}/{device}/{component}/config` per
  entity, for HA releases before device discovery (2024.11) and other consumers of HA
  discovery.

Both forms give the same discovery ids and unique ids, so moving between them is HA's
`migrate_discovery` hand-over (`handover_messages`): the entities keep their entity ids and
history. Full key names (not HA's abbreviations) throughout, as in HA's docs and the JSON
Schemas in docs/schemas/.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from camclassd.config import Config
from camclassd.mqtt.ha_entities import Features, components, enabled_cameras
from camclassd.mqtt.topics import Topics, device_discovery_topic, discovery_topic

__all__ = [
    "DiscoveryChanges",
    "Features",
    "components",
    "device_block",
    "device_config",
    "discovery_configs",
    "enabled_cameras",
    "handover_filter",
    "handover_messages",
    "is_handover_candidate",
    "reload_changes",
    "removed_topics",
]

# Sent (not retained) on the old form's topic: HA unloads the entity but keeps its registry
# entry, so the other form's config with the same unique id takes it over.
MIGRATE_PAYLOAD = json.dumps({"migrate_discovery": True}).encode()
NO_FEATURES = Features()
# Keys HA copies from the device config into each component (SHARED_OPTIONS in HA's
# mqtt/schemas.py); only the availability ones are shared here.
SHARED_KEYS = ("availability_topic", "payload_available", "payload_not_available")


def device_block(config: Config, version: str) -> dict[str, Any]:
    device = config.device.resolved_id
    return {
        "identifiers": [f"camclassd_{device}"],
        "name": config.device.name or device,
        "manufacturer": "camclassd",
        "model": "camclassd camera classifier",
        "sw_version": version,
    }


def origin_block(config: Config, version: str) -> dict[str, Any]:
    origin: dict[str, Any] = {"name": "camclassd", "sw_version": version}
    if config.homeassistant.support_url:
        origin["support_url"] = config.homeassistant.support_url
    return origin


def availability(config: Config) -> dict[str, Any]:
    return {
        "availability_topic": Topics(config.mqtt.prefix, config.device.resolved_id).availability,
        "payload_available": "online",
        "payload_not_available": "offline",
    }


def device_config(
    config: Config,
    version: str,
    features: Features = NO_FEATURES,
    removed: Mapping[str, str] = MappingProxyType({}),
) -> dict[str, Any]:
    """The device-based config; `removed` (component id -> platform) are components gone
    since HA last saw the config, sent as the platform alone so HA deletes them."""
    current = components(config, features)
    stubs = {cid: {"platform": platform} for cid, platform in removed.items() if cid not in current}
    return {
        "device": device_block(config, version),
        "origin": origin_block(config, version),
        **availability(config),
        "components": {**stubs, **current},
    }


def component_config(config: Config, version: str, component: Mapping[str, Any]) -> dict[str, Any]:
    """One component as a per-component ("components" form) config."""
    payload = {key: value for key, value in component.items() if key != "platform"}
    payload.update(availability(config))
    payload["device"] = device_block(config, version)
    payload["origin"] = origin_block(config, version)
    return payload


def discovery_configs(
    config: Config,
    version: str,
    features: Features = NO_FEATURES,
    removed: Mapping[str, str] = MappingProxyType({}),
) -> dict[str, dict[str, Any]]:
    """Every retained discovery message of the configured form: topic -> payload (none when
    discovery is off)."""
    ha = config.homeassistant
    if not ha.enabled:
        return {}
    device = config.device.resolved_id
    if ha.discovery == "device":
        topic = device_discovery_topic(ha.discovery_prefix, device)
        return {topic: device_config(config, version, features, removed)}
    return {
        discovery_topic(ha.discovery_prefix, device, cid, component["platform"]): component_config(
            config, version, component
        )
        for cid, component in components(config, features).items()
    }


def _topics_of(config: Config, features: Features) -> set[str]:
    return set(discovery_configs(config, "", features))


def removed_topics(
    old: Config, new: Config, features: Features = NO_FEATURES, new_features: Features | None = None
) -> list[str]:
    """Per-component topics to clear (empty retained payload) from `old` to `new` in the
    "components" form: components gone, and everything when the topics moved (device id,
    discovery prefix) or discovery was turned off. See `reload_changes` for all forms."""
    return list(reload_changes(old, new, features, new_features).clear)


@dataclass(frozen=True, slots=True)
class DiscoveryChanges:
    """What a reload from one config to another needs besides the new discovery messages.

    clear: topics to empty (retained): HA deletes their entities.
    handover: topics whose entities move to the other discovery form (`handover_messages`).
    removed: component id -> platform, for the device config's removal stubs.
    """

    clear: tuple[str, ...] = ()
    handover: tuple[str, ...] = ()
    removed: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def reload_changes(
    old: Config, new: Config, features: Features = NO_FEATURES, new_features: Features | None = None
) -> DiscoveryChanges:
    new_features = features if new_features is None else new_features
    if not old.homeassistant.enabled:
        return DiscoveryChanges()
    old_topics = _topics_of(old, features)
    moved = (
        not new.homeassistant.enabled
        or old.homeassistant.discovery_prefix != new.homeassistant.discovery_prefix
        or old.device.resolved_id != new.device.resolved_id
    )
    if moved:
        return DiscoveryChanges(clear=tuple(sorted(old_topics)))
    if old.homeassistant.discovery != new.homeassistant.discovery:
        return DiscoveryChanges(handover=tuple(sorted(old_topics)))
    if new.homeassistant.discovery == "components":
        return DiscoveryChanges(clear=tuple(sorted(old_topics - _topics_of(new, new_features))))
    old_components = components(old, features)
    current = components(new, new_features)
    gone = {cid: c["platform"] for cid, c in old_components.items() if cid not in current}
    return DiscoveryChanges(removed=MappingProxyType(gone))


def handover_filter(config: Config) -> str:
    """The subscription that finds retained configs of the other form for this device."""
    ha = config.homeassistant
    device = config.device.resolved_id
    if ha.discovery == "device":
        return f"{ha.discovery_prefix}/+/{device}/+/config"
    return device_discovery_topic(ha.discovery_prefix, device)


def is_handover_candidate(config: Config, topic: str, payload: bytes) -> bool:
    """A retained message that is camclassd's config for this device in the other form (so
    its entities must be handed over before the configured form is published)."""
    ha = config.homeassistant
    device = config.device.resolved_id
    if not ha.enabled or not payload:
        return False
    if ha.discovery == "device":
        parts = topic.split("/")
        prefix_parts = ha.discovery_prefix.split("/")
        if (
            len(parts) != len(prefix_parts) + 4
            or parts[: len(prefix_parts)] != prefix_parts
            or parts[-3] != device
            or parts[-1] != "config"
            or parts[-4] == "device"
        ):
            return False
    elif topic != device_discovery_topic(ha.discovery_prefix, device):
        return False
    try:
        data = json.loads(payload)
    except ValueError:
        return False
    if not isinstance(data, dict) or "migrate_discovery" in data:
        return False
    if ha.discovery == "components" and not data.get("components", data.get("cmps")):
        return False  # a device config without components (what a hand-back leaves)
    block = data.get("device", data.get("dev"))
    if not isinstance(block, dict):
        return False
    identifiers = block.get("identifiers", block.get("ids"))
    if isinstance(identifiers, str):
        identifiers = [identifiers]
    return isinstance(identifiers, list) and f"camclassd_{device}" in identifiers


def handover_messages(config: Config, version: str, topic: str) -> list[tuple[str, bytes, bool]]:
    """(topic, payload, retain) that hand the entities of `topic` over to the other form,
    keeping their entity ids (HA's `migrate_discovery` procedure): the migration request (HA
    unloads the entities, keeps their registry entries), then the old config replaced. Publish
    the new form's config after these.

    A per-component topic is cleared (empty retained). The device topic gets a device config
    without components instead: an empty one there makes HA 2025.4 warn "No device components
    to cleanup" once the hand-over has unloaded them all.
    """
    device = config.device.resolved_id
    if topic == device_discovery_topic(config.homeassistant.discovery_prefix, device):
        empty = {
            "device": device_block(config, version),
            "origin": origin_block(config, version),
            "components": {},
        }
        replacement = json.dumps(empty, separators=(",", ":")).encode()
    else:
        replacement = b""
    return [(topic, MIGRATE_PAYLOAD, False), (topic, replacement, True)]
