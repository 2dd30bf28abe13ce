"""`camclassd model install|list|rollback`: versions of trained models, the config pointed at
one of them, and the running daemon asked to reload.

Layout: MODELS_DIR/NAME/vN/{NAME.tflite, NAME.txt, card.json, card.txt, previous.json}.
previous.json records what the config used before this version was installed (the shipped
model, another version...): `rollback` goes back there, and again from there. With
`--camera NAME` the table edited is `[cameras.NAME]` (its own `model`/`labels`), and
previous.json names the camera; `"path": null` there means it followed the shared [model].
Nothing is deleted: every version stays until removed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from camclassd.engine import Engine
from camclassd.errors import EXIT_OK, ConfigError, InputNotFoundError, UsageError
from camclassd.training import reload, tomledit
from camclassd.training.files import DIR_MODE, FILE_MODE, make_dirs, write_atomic

if TYPE_CHECKING:
    from camclassd.config import CameraConfig, Config

DEFAULT_MODELS_DIR = Path("/var/lib/camclassd/models")  # the unit's StateDirectory
DEFAULT_CONFIG = Path("/etc/camclassd/camclassd.toml")
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    number: int
    directory: Path

    @property
    def model(self) -> Path:
        return self.directory / f"{self.name}.tflite"

    @property
    def labels(self) -> Path:
        return self.directory / f"{self.name}.txt"


def find_model(source: Path) -> tuple[Path, Path]:
    """The int8 model and its labels in a `train --out` folder."""
    if not source.is_dir():
        raise InputNotFoundError(f"{source} is not a folder: give the folder `train --out` made")
    models = sorted(p for p in source.glob("*.tflite") if not p.stem.endswith("_float32"))
    if len(models) != 1:
        raise InputNotFoundError(
            f"{source} holds {len(models)} models (expected one NAME.tflite): give the folder "
            "`train --out` made"
        )
    labels = models[0].with_suffix(".txt")
    if not labels.is_file():
        raise InputNotFoundError(f"{labels} is missing: the labels file goes next to the model")
    return models[0], labels


def versions(models_dir: Path, name: str | None = None) -> list[Version]:
    found: list[Version] = []
    if not models_dir.is_dir():
        return found
    for folder in sorted(models_dir.iterdir()):
        if not folder.is_dir() or (name is not None and folder.name != name):
            continue
        for child in folder.iterdir():
            match = _VERSION.match(child.name)
            if match and child.is_dir():
                found.append(Version(folder.name, int(match[1]), child))
    return sorted(found, key=lambda v: (v.name, v.number))


PREVIOUS_FILE = "previous.json"
MODEL_KEYS = ("model", "labels")  # a camera's own model, in [cameras.NAME]


@dataclass(frozen=True, slots=True)
class Previous:
    """What one table of the config used before a version was installed over it
    (previous.json): `[model]` (camera None) or `[cameras.NAME]`."""

    camera: str | None
    path: Path | None  # a camera only: None when it used the shared [model]
    labels: Path | None  # a camera only: None for MODEL.txt beside path

    def to_json(self) -> dict[str, str | None]:
        def text(path: Path | None) -> str | None:
            return None if path is None else str(path)

        shown = {"path": text(self.path), "labels": text(self.labels)}
        return shown if self.camera is None else {"camera": self.camera, **shown}

    @classmethod
    def from_json(cls, data: object) -> Previous:
        """Raises ValueError for anything but what `to_json` writes."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        camera, path, labels = data.get("camera"), data.get("path"), data.get("labels")
        if camera is None and (path is None or labels is None):
            raise ValueError("[model] needs path and labels")
        for value in (camera, path, labels):
            if value is not None and not isinstance(value, str):
                raise ValueError("not a string")
        return cls(
            camera,
            None if path is None else Path(path),
            None if labels is None else Path(labels),
        )


def table_name(camera: str | None) -> str:
    return "[model]" if camera is None else f"[cameras.{camera}]"


def load(config_path: Path) -> Config:
    from camclassd.configfile import load_config  # noqa: PLC0415 (pydantic: only here)

    return load_config(config_path)


def camera_of(config: Config, config_path: Path, name: str) -> CameraConfig:
    if name not in config.cameras:
        raise ConfigError(
            f"{config_path} has no camera {name!r}: it has {', '.join(config.cameras)} "
            "(give one of them to --camera)"
        )
    return config.cameras[name]


def in_use(config_path: Path, camera: str | None) -> Previous:
    """What `[model]` or the camera uses now, paths resolved."""
    config = load(config_path)
    if camera is None:
        return Previous(None, config.model.path, config.model.labels)
    own = camera_of(config, config_path, camera)
    return Previous(camera, own.model, own.labels)


def _edit_config(
    config_path: Path,
    edit: Callable[[str], str],
    applied: Callable[[Config], bool],
    by_hand: tuple[str, str],
) -> None:
    """Write `edit(text)` once it validates with camclassd's own loader and `applied` finds
    what was meant in it; atomically, mode and owner kept. `by_hand`: (table, what to set
    there), for the error when the edit did not take (the keys are set some other way)."""
    from camclassd.configfile import parse_config  # noqa: PLC0415

    try:
        text = config_path.read_text(encoding="utf-8-sig")
        status = config_path.stat()
    except OSError as error:
        raise ConfigError(f"{config_path}: cannot be read ({error.strerror or error})") from None
    edited = edit(text)
    config = parse_config(edited, source=str(config_path), config_dir=config_path.resolve().parent)
    if not applied(config):
        table, keys = by_hand
        raise ConfigError(
            f"{config_path}: {table} could not be edited (set elsewhere, e.g. as dotted keys): "
            f"set {keys} by hand"
        )
    write_atomic(config_path, edited.encode("utf-8"), status.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(config_path, status.st_uid, status.st_gid)


def point_config(config_path: Path, model: Path, labels: Path) -> None:
    """Rewrite `[model] path/labels` after checking that the model loads."""
    Engine(model, labels)  # refuses a model that does not load: ModelError
    _edit_config(
        config_path,
        lambda text: tomledit.set_model_paths(text, path=str(model), labels=str(labels)),
        lambda config: config.model.path == model and config.model.labels == labels,
        ("[model]", f"path = {tomledit.toml_string(str(model))} and labels"),
    )


def point_camera(config_path: Path, camera: str, model: Path | None, labels: Path | None) -> None:
    """Set `[cameras.NAME] model/labels` (a None one: its key removed, so that labels go
    back to MODEL.txt beside the model and a camera without a model to the shared [model])
    after checking that the model loads."""
    table = f"cameras.{camera}"
    values = {
        key: str(path)
        for key, path in zip(MODEL_KEYS, (model, labels), strict=True)
        if path is not None
    }
    if model is not None:
        Engine(model, labels or model.with_suffix(".txt"))

    def edit(text: str) -> str:
        if not tomledit.has_table(text, table):
            raise ConfigError(
                f"{config_path}: [{table}] has no header line of its own (an inline table or "
                f"dotted keys?): set its model by hand"
            )
        text = tomledit.remove_keys(text, table, [key for key in MODEL_KEYS if key not in values])
        return tomledit.set_keys(text, table, values) if values else text

    def applied(config: Config) -> bool:
        edited = config.cameras.get(camera)
        return edited is not None and (edited.model, edited.labels) == (model, labels)

    shown = f"model = {tomledit.toml_string(str(model))}" if model else "no model"
    _edit_config(config_path, edit, applied, (f"[{table}]", shown))


def _give_to_owner_of(reference: Path, paths: list[Path]) -> None:
    """Files made by root for the service: owned like the models dir (the service user)."""
    if os.geteuid() != 0:
        return
    status = reference.stat()
    for path in paths:
        os.chown(path, status.st_uid, status.st_gid)


def install(
    source: Path, config_path: Path, models_dir: Path, camera: str | None = None
) -> tuple[Version, Previous]:
    """Copy `source` in as the next version and point the config's `[model]` (or the
    camera's own model) at it.

    Returns the new version and what that table used before. A model that does not load,
    or an unknown camera, is refused before anything is copied.
    """
    model, labels = find_model(source)
    Engine(model, labels)
    before = in_use(config_path, camera)
    name = model.stem
    existing = versions(models_dir, name)
    number = existing[-1].number + 1 if existing else 1
    make_dirs(models_dir / name)
    staged = Path(tempfile.mkdtemp(prefix=f".v{number}.", dir=models_dir / name))
    target = Version(name, number, models_dir / name / f"v{number}")
    try:
        os.chmod(staged, DIR_MODE)
        copied = []
        for file in (model, labels, source / "card.json", source / "card.txt"):
            if file.is_file():
                write_atomic(staged / file.name, file.read_bytes(), FILE_MODE)
                copied.append(target.directory / file.name)
        previous = json.dumps(before.to_json()) + "\n"
        write_atomic(staged / PREVIOUS_FILE, previous.encode(), FILE_MODE)
        copied.append(target.directory / PREVIOUS_FILE)
        os.rename(staged, target.directory)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _give_to_owner_of(models_dir, [models_dir / name, target.directory, *copied])
    try:
        if camera is None:
            point_config(config_path, target.model, target.labels)
        else:
            point_camera(config_path, camera, target.model, target.labels)
    except BaseException:
        shutil.rmtree(target.directory, ignore_errors=True)  # the config never saw it
        raise
    return target, before


def _which(path: Path, models_dir: Path) -> Version | None:
    for version in versions(models_dir):
        if version.model == path:
            return version
    return None


def _cameras_on_versions(config: Config, models_dir: Path) -> str:
    """Where `rollback` without --camera finds nothing: the cameras it might have meant."""
    hints = [
        f"; [cameras.{name}] uses {version.name} v{version.number}: `--camera {name}` rolls it back"
        for name, camera in config.cameras.items()
        if camera.model is not None and (version := _which(camera.model, models_dir))
    ]
    return "".join(hints)


def rollback(
    config_path: Path, models_dir: Path, camera: str | None = None
) -> tuple[Version, Previous]:
    """Point `[model]` (or the camera's own model) back at what it used before the current
    version was installed over it."""
    config = load(config_path)
    where = f"{config_path}" if camera is None else f"{config_path} [cameras.{camera}]"
    used = config.model.path if camera is None else camera_of(config, config_path, camera).model
    if used is None:
        raise InputNotFoundError(
            f"{where} has no model of its own (it follows the shared [model]): nothing to roll "
            "back (see `camclassd model list`)"
        )
    current = _which(used, models_dir)
    if current is None:
        hint = _cameras_on_versions(config, models_dir) if camera is None else ""
        raise InputNotFoundError(
            f"{where} uses {used}, not a version installed under {models_dir}: nothing to "
            f"roll back (see `camclassd model list`){hint}"
        )
    try:
        text = (current.directory / PREVIOUS_FILE).read_text(encoding="utf-8")
        previous = Previous.from_json(json.loads(text))
    except (OSError, ValueError):
        raise InputNotFoundError(
            f"{current.directory / PREVIOUS_FILE} is missing or unreadable: point "
            f"{table_name(camera)} at another version by hand"
        ) from None
    if previous.camera != camera:
        flag = "" if previous.camera is None else f" --camera {previous.camera}"
        raise UsageError(
            f"{current.name} v{current.number} was installed for {table_name(previous.camera)}, "
            f"not {table_name(camera)}: `camclassd model rollback{flag}` rolls that back; "
            f"point {table_name(camera)} at another version by hand"
        )
    if camera is None:
        assert previous.path is not None and previous.labels is not None  # from_json's check
        point_config(config_path, previous.path, previous.labels)
    else:
        point_camera(config_path, camera, previous.path, previous.labels)
    return current, previous


def _card_line(version: Version) -> str:
    try:
        made = json.loads((version.directory / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    validation = made.get("validation") or {}
    accuracy = validation.get("accuracy")
    shown = f"{accuracy * 100:.1f}%" if isinstance(accuracy, float | int) else "n/a"
    return f"{', '.join(made.get('classes', []))}; trained {made.get('date')}; val {shown}"


def users(config: Config) -> dict[Path, list[str]]:
    """model file -> the tables that use it: `[model]`, then cameras with their own."""
    found: dict[Path, list[str]] = {config.model.path: ["[model]"]}
    for name, camera in config.cameras.items():
        if camera.model is not None:
            disabled = "" if camera.enabled else " (disabled)"
            found.setdefault(camera.model, []).append(f"[cameras.{name}]{disabled}")
    return found


def after_change(args: argparse.Namespace, config_path: Path) -> None:
    if args.reload == "mqtt":
        print(reload.by_mqtt(config_path, args.timeout))
    elif args.reload == "systemctl":
        print(reload.by_systemctl(args.timeout))
    else:
        print(
            "the running daemon still uses the old model: reload it with `sudo systemctl "
            "reload camclassd` (or pass --reload mqtt|systemctl)"
        )


def camera_line(config: Config, camera: str, model: Path | None, labels: Path | None) -> str:
    """What the edit of `[cameras.NAME]` set, in words."""
    if model is None:
        shared = config.model.path
        return f"[cameras.{camera}] model, labels unset: it follows the shared [model] {shared}"
    shown = f"labels = {labels}" if labels is not None else "labels unset (MODEL.txt beside it)"
    return f"[cameras.{camera}] model = {model}, {shown}"


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The config file and the models dir the command names (or their defaults); the models
    dir absolute, as the config gets its paths."""
    config_path: Path = args.config or DEFAULT_CONFIG
    return config_path, Path(os.path.abspath(args.models_dir or DEFAULT_MODELS_DIR))


def install_from_args(args: argparse.Namespace, source: Path, camera: str | None = None) -> int:
    config_path, models_dir = _paths(args)
    version, before = install(source, config_path, models_dir, camera)
    print(f"installed {version.name} v{version.number} in {version.directory}")
    if camera is None:
        print(f"{config_path}: [model] path = {version.model} (was {before.path})")
    else:
        config = load(config_path)
        was = before.path or f"the shared [model] {config.model.path}"
        edit = camera_line(config, camera, version.model, version.labels)
        print(f"{config_path}: {edit} (was {was})")
        if not config.cameras[camera].enabled:
            print(
                f"[cameras.{camera}] is disabled (enabled = false): the daemon runs it on "
                "this model once it is enabled"
            )
    after_change(args, config_path)
    return EXIT_OK


def rollback_from_args(args: argparse.Namespace, config_path: Path, models_dir: Path) -> int:
    current, previous = rollback(config_path, models_dir, args.camera)
    was = f"(was {current.name} v{current.number})"
    if args.camera is None:
        print(f"{config_path}: [model] path = {previous.path} {was}")
    else:
        edit = camera_line(load(config_path), args.camera, previous.path, previous.labels)
        print(f"{config_path}: {edit} {was}")
    after_change(args, config_path)
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    config_path, models_dir = _paths(args)
    if args.model_command == "install":
        return install_from_args(args, args.source, args.camera)
    if args.model_command == "rollback":
        return rollback_from_args(args, config_path, models_dir)
    try:
        used = users(load(config_path))
    except ConfigError:
        used = {}
    found = versions(models_dir)
    if not found:
        print(f"no models installed under {models_dir}")
    for version in found:
        tables = used.get(version.model)
        mark, by = ("*", f"  (in use: {', '.join(tables)})") if tables else (" ", "")
        print(
            f"{mark} {version.name} v{version.number}  {version.directory}  "
            f"{_card_line(version)}{by}"
        )
    for path, tables in used.items():
        if _which(path, models_dir) is None:
            print(f"* {path}  (in use: {', '.join(tables)}; not an installed version)")
    return EXIT_OK
