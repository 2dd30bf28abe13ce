"""Validate discovery payloads with a Home Assistant release's own MQTT schemas.

    python ha_schema.py PAYLOADS.json     (with that release's venv python)

PAYLOADS.json is a list of [topic, payload]; prints a JSON list of problems (empty: every
payload accepted with no key dropped). HA drops unknown discovery keys without a word, so a
dropped key is a problem too. Separate from ha_check.py so that it can run with another
release's python (e.g. chrooted) than the checker's.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import sys
from pathlib import Path
from typing import Any


def schema_problems(topic: str, payload: dict[str, Any]) -> list[str]:
    """Validate one discovery payload with the running HA release's own schemas; HA drops
    unknown keys silently, so a dropped key is a problem too."""
    from homeassistant.components.mqtt import schemas  # noqa: PLC0415 (HA's venv only)

    problems: list[str] = []

    def dropped(what: str, sent: dict[str, Any], kept: dict[str, Any]) -> None:
        lost = sorted(set(sent) - set(kept))
        if lost:
            problems.append(f"{what}: HA dropped {lost}")
        for key in ("device", "origin"):
            if isinstance(sent.get(key), dict) and isinstance(kept.get(key), dict):
                lost = sorted(set(sent[key]) - set(kept[key]))
                if lost:
                    problems.append(f"{what}.{key}: HA dropped {lost}")

    if "/device/" in topic:
        try:
            kept = schemas.DEVICE_DISCOVERY_SCHEMA(copy.deepcopy(payload))
        except Exception as error:
            return [f"{topic}: {error}"]
        dropped(topic, payload, kept)
        parts = []
        for cid, component in payload["components"].items():
            if set(component) == {"platform"}:
                continue  # a removal
            config = {k: v for k, v in component.items() if k != "platform"}
            for key in schemas.SHARED_OPTIONS:
                if key in payload and key not in config:
                    config[key] = payload[key]
            config["device"], config["origin"] = payload["device"], payload["origin"]
            parts.append((f"{topic} {cid}", component["platform"], config))
    else:
        parts = [(topic, topic.split("/")[-4], payload)]
    for what, platform, config in parts:
        module = importlib.import_module(f"homeassistant.components.mqtt.{platform}")
        try:
            kept = module.DISCOVERY_SCHEMA(copy.deepcopy(config))
        except Exception as error:
            problems.append(f"{what}: {error}")
            continue
        dropped(what, config, kept)
    return problems


def validate_with_ha(sent: list[tuple[str, dict[str, Any]]], work: Path) -> list[str]:
    """HA validates discovery in its event loop with a HomeAssistant object (templates are
    compiled against it): do the same with a bare one."""
    from homeassistant.core import HomeAssistant as Core  # noqa: PLC0415 (HA's venv only)

    async def run() -> list[str]:
        hass = Core(str(work / "schema-check"))  # noqa: F841 (it registers itself as current)
        return [p for topic, payload in sent for p in schema_problems(topic, payload)]

    return asyncio.run(run())


def main() -> int:
    path = Path(sys.argv[1])
    sent = [(topic, payload) for topic, payload in json.loads(path.read_text())]
    print(json.dumps(validate_with_ha(sent, path.parent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
