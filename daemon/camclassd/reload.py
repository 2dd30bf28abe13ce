"""What a reload must do, declared once: which config keys apply live, which need a new
pipeline, which a new MQTT session, which a restart.

`plan(old, new)` compares two validated configs key by key and sorts every changed key by the
most specific rule below; the daemon carries the plan out in one place (`Daemon._reload`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from camclassd.config import Config

Rule = Literal["live", "pipeline", "session", "restart"]

# Longest matching key path wins; a key under no entry applies live.
RULES: Mapping[str, Rule] = MappingProxyType(
    {
        "cameras": "pipeline",
        "model": "pipeline",
        "pipeline": "pipeline",
        "mqtt.snapshot_interval_s": "pipeline",  # the per-camera snapshot policy
        "mqtt.enabled": "restart",
        "device": "session",  # the device id is in every topic and the client id
        "mqtt.host": "session",
        "mqtt.port": "session",
        "mqtt.protocol": "session",
        "mqtt.client_id": "session",
        "mqtt.keepalive_s": "session",
        "mqtt.prefix": "session",
        "mqtt.username": "session",
        "mqtt.password_file": "session",
        "mqtt.tls": "session",
        "mqtt.reconnect_min_s": "session",
        "mqtt.reconnect_max_s": "session",
    }
)


def rule_for(key: str) -> Rule:
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        rule = RULES.get(".".join(parts[:end]))
        if rule is not None:
            return rule
    return "live"


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    changed: Mapping[Rule, tuple[str, ...]] = field(default_factory=dict)

    def keys(self, rule: Rule) -> tuple[str, ...]:
        return self.changed.get(rule, ())

    @property
    def needs_restart(self) -> bool:
        return bool(self.keys("restart"))

    @property
    def new_session(self) -> bool:
        return bool(self.keys("session"))

    @property
    def new_pipeline(self) -> bool:
        return bool(self.keys("pipeline"))


def plan(old: Config, new: Config) -> ReloadPlan:
    """Every key whose value differs, sorted by its rule."""
    before = dict(_leaves(old.model_dump(mode="json")))
    after = dict(_leaves(new.model_dump(mode="json")))
    changed: dict[Rule, list[str]] = {}
    for key in sorted(before.keys() | after.keys()):
        if before.get(key, _MISSING) != after.get(key, _MISSING):
            changed.setdefault(rule_for(key), []).append(key)
    return ReloadPlan(MappingProxyType({rule: tuple(keys) for rule, keys in changed.items()}))


_MISSING = object()
