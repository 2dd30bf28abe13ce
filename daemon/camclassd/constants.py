"""Names and defaults shared by the schema and the code that runs it, without pydantic.

`classify`, `watch`, the engine, the preprocessor and the sources need these but not the
config schema; keeping them here spares those commands the ~0.2 s and ~19 MiB of importing
pydantic. `config.py` uses the same literals, so an option and its CLI choice cannot drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

DEFAULT_CONFIG_PATH = Path("/etc/camclassd/camclassd.toml")
DEFAULT_MODEL_DIR = Path("/opt/camclassd/models")
DEFAULT_MODEL_FILE = "efficientnet_lite0_uint8.tflite"
DEFAULT_LABELS_FILE = "imagenet_labels.txt"

Crop = Literal["center", "roi", "squash", "letterbox"]
Interpolation = Literal["nearest", "linear", "area", "cubic"]
Delegate = Literal["none", "edgetpu"]

CROPS: tuple[Crop, ...] = get_args(Crop)
INTERPOLATION_NAMES: tuple[Interpolation, ...] = get_args(Interpolation)
DELEGATES: tuple[Delegate, ...] = get_args(Delegate)

# The systemd credential (LoadCredential=) that holds the MQTT password when no file is set.
CREDENTIAL_NAME = "mqtt_password"
