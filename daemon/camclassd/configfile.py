"""Loading the TOML file into `Config`, and the `check-config` / `default-config` commands.

Every problem in a file is reported at once, each with its dotted key path, the bad value,
what is allowed and the line in the file, in one `ConfigError` (exit 78).

Validation runs in pydantic's strict JSON mode: TOML already has types, so `queue_size = "5"`
is an error rather than silently becoming 5, while arrays still become tuples and strings
paths. Relative paths (model, labels, images, video files, password and TLS files) are made
absolute against the directory of the config file, in one pass (`resolve_paths`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from camclassd import cameras
from camclassd.config import Config
from camclassd.config_errors import format_errors, show, toml_error_message
from camclassd.default_config import render_default_config
from camclassd.errors import EXIT_OK, ConfigError
from camclassd.gate_config import resolve_mode
from camclassd.secrets import MqttSecrets, SecretsError, load_mqtt_secrets
from camclassd.threads import resolve_threads
from camclassd.tomltext import Loc, split_dotted_key

__all__ = [
    "check_config_main",
    "default_config_main",
    "load_config",
    "load_config_and_secrets",
    "parse_config",
    "resolve_path",
    "resolve_paths",
    "summarise",
]


def load_config(path: Path, overrides: Sequence[str] = ()) -> Config:
    """Read, parse and validate the config file; raise `ConfigError` listing every problem.

    `overrides` are `dotted.key=VALUE` strings (VALUE in TOML syntax, else taken as a string)
    applied on top of the file, e.g. from `--set`. The password and TLS files the file names
    are checked too (see `load_config_and_secrets`).
    """
    return load_config_and_secrets(path, overrides)[0]


def load_config_and_secrets(
    path: Path, overrides: Sequence[str] = ()
) -> tuple[Config, MqttSecrets]:
    """`load_config`, and the MQTT password and TLS context it names, each read once.

    `run` would only find out about a bad secret file when it connects (or, for TLS, abort);
    reading them here makes `check-config` say so and `run` exit 78 before starting
    anything. Only files that are used are read: the password when MQTT is on, the TLS
    files when TLS is on too.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot be read: permission denied") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror or error}") from None
    config = parse_config(
        text, source=str(path), config_dir=path.resolve().parent, overrides=overrides
    )
    try:
        secrets = load_mqtt_secrets(config.mqtt)
    except SecretsError as error:
        count = len(error.problems)
        header = f"{path}: {count} error{'s' if count != 1 else ''}:"
        lines = [
            f"  - {p.key}" + ("" if p.path is None else f" = {show(str(p.path))}") + f": {p.reason}"
            for p in error.problems
        ]
        raise ConfigError("\n".join([header, *lines])) from None
    return config, secrets


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    config_dir: Path | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Validate TOML text; with `config_dir`, relative paths are resolved against it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(toml_error_message(source, text, error)) from None
    overridden = _apply_overrides(data, overrides)
    try:
        config = Config.model_validate_json(json.dumps(_jsonable(data)), strict=True)
    except ValidationError as error:
        raise ConfigError(format_errors(source, error, text, data, overridden)) from None
    return resolve_paths(config, config_dir) if config_dir is not None else config


def resolve_path(config_dir: Path, path: Path) -> Path:
    """A path from the config: `~` expanded, relative ones taken from the config's directory."""
    path = path.expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(config_dir / path))


def resolve_paths(config: Config, config_dir: Path) -> Config:
    """`config` with every file path made absolute (see `resolve_path`): the one pass over
    paths, so that nothing downstream needs to know where the file was."""

    def absolute(path: Path) -> Path:
        return resolve_path(config_dir, path)

    def opt(path: Path | None) -> Path | None:
        return None if path is None else absolute(path)

    camera_tables = {
        name: cameras.absolute_paths(camera, absolute).model_copy(
            update={"model": opt(camera.model), "labels": opt(camera.labels)}
        )
        for name, camera in config.cameras.items()
    }
    model = config.model.model_copy(
        update={
            "path": resolve_path(config_dir, config.model.path),
            "labels": resolve_path(config_dir, config.model.labels),
        }
    )
    tls = config.mqtt.tls.model_copy(
        update={
            "ca_file": opt(config.mqtt.tls.ca_file),
            "cert_file": opt(config.mqtt.tls.cert_file),
            "key_file": opt(config.mqtt.tls.key_file),
        }
    )
    mqtt = config.mqtt.model_copy(
        update={"password_file": opt(config.mqtt.password_file), "tls": tls}
    )
    collect = config.collect.model_copy(update={"dir": absolute(config.collect.dir)})
    return config.model_copy(
        update={"cameras": camera_tables, "model": model, "mqtt": mqtt, "collect": collect}
    )


def _jsonable(value: Any) -> Any:
    # TOML dates and times fit no field: turn them into something every scalar field rejects.
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dt.date | dt.time):
        return {"TOML date/time": value.isoformat()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # plain JSON has no inf/nan; the error still names the key
    return value


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> set[Loc]:
    applied: set[Loc] = set()
    for override in overrides:
        key, sep, raw = override.partition("=")
        parts = split_dotted_key(key.strip())
        if not sep or parts is None:
            raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. pipeline.workers=2")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: take it as a string
        table = data
        for part in parts[:-1]:
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: {part!r} is not a table")
            table = child
        table[parts[-1]] = value
        applied.add(parts)
    return applied


def check_config_main(args: argparse.Namespace) -> int:
    """`camclassd check-config FILE`: OK and a summary, or every error (exit 78)."""
    path: Path = args.file
    config = load_config(path, overrides=list(getattr(args, "set", None) or []))
    print(f"OK: {path}")
    print(summarise(config))
    return EXIT_OK


def default_config_main(args: argparse.Namespace) -> int:
    """`camclassd default-config`: the commented default file on stdout."""
    sys.stdout.write(render_default_config())
    return EXIT_OK


def summarise(config: Config) -> str:
    """A few lines saying what the daemon would run; never shows a secret."""
    device = config.device
    name = f" ({device.name})" if device.name else ""
    lines = [f"  device: {device.resolved_id}{name}" + ("" if device.id else " (hostname)")]
    for camera_name, camera in config.cameras.items():
        state = "" if camera.enabled else ", disabled"
        lines.append(
            f"  camera {camera_name}: {camera.type} {cameras.summary(camera)}, "
            f"crop {camera.crop}, motion {_motion(camera)}"
            + (f", model {camera.model}" if camera.model is not None else "")
            + state
        )
    model = config.model
    missing = "" if model.path.exists() else " (file not found here)"
    threads = f"{model.num_threads} thread(s)"
    if model.num_threads == "auto":
        threads = f"auto threads ({resolve_threads(config)} here)"
    lines.append(
        f"  model: {model.path}{missing}, {threads}, top {model.top_k}, delegate {model.delegate}"
    )
    mqtt = config.mqtt
    if mqtt.enabled:
        tls = "TLS" if mqtt.tls.enabled else "no TLS"
        user = f", user {mqtt.username}" if mqtt.username else ""
        lines.append(
            f"  mqtt: {mqtt.host}:{mqtt.port} (MQTT {mqtt.protocol}, {tls}{user}), "
            f"topics {mqtt.prefix}/{device.resolved_id}/..."
        )
    else:
        lines.append("  mqtt: off (results go to stdout)")
    lines.append(f"  homeassistant: {'on' if config.homeassistant.enabled else 'off'}")
    prometheus = config.prometheus
    if prometheus.enabled:
        host = f"[{prometheus.host}]" if ":" in prometheus.host else prometheus.host
        lines.append(f"  prometheus: http://{host}:{prometheus.port}/metrics")
    else:
        lines.append("  prometheus: off")
    return "\n".join(lines)


def _motion(camera: cameras.CameraBase) -> str:
    """'on (...)' when the scene-change gate runs for this camera, 'off' when it does not."""
    gate = camera.gate
    live = cameras.is_live(camera)
    if resolve_mode(gate, live) == "always":
        return "off" + (" (auto: not a live camera)" if gate.mode == "auto" else "")
    return (
        f"on (threshold {gate.threshold}, min_area {gate.min_area:g}, refresh {gate.refresh_s:g} s)"
    )
