"""Discovery payload variants the daemon under test does not publish (cameras on models of few
labels, each camera its own; a scene gate; a support link; both forms), as JSON for ha_check.py
--variants to validate with Home Assistant's own schemas. Runs with the repository's .venv
python."""

from __future__ import annotations

import json
import sys

from camclassd.config import Config
from camclassd.mqtt.discovery import Features, discovery_configs


def main() -> int:
    sent: list[tuple[str, object]] = []
    labels = {"front": ["cat", "dog", "empty room"], "back": ["open", "closed"]}
    features = Features.of(labels=labels, gate_cameras=["front"])
    for form in ("device", "components"):
        config = Config.model_validate(
            {
                "device": {"id": "variant", "name": "variant"},
                "cameras": {"front": {"type": "synthetic"}, "back": {"type": "synthetic"}},
                "homeassistant": {"discovery": form, "support_url": "https://example.com/help"},
            }
        )
        sent += discovery_configs(config, "9.9", features, {"gone_label": "sensor"}).items()
    json.dump(sent, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
