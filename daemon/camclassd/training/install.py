"""`camclassd model install|list|rollback`: versions of trained models, the config pointed at
one of them, and the running daemon asked to reload.

Layout: MODELS_DIR/NAME/vN/{NAME.tflite, NAME.txt, card.json, card.txt, previous.json}.
previous.json records what the config used before this version was installed (the shipped
model, another version...): `rollback` goes back there, and again from there. Nothing is
deleted: every version stays until removed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from camclassd.engine import Engine
from camclassd.errors import EXIT_OK, ConfigError, InputNotFoundError
from camclassd.training import reload, tomledit
from camclassd.training.files import DIR_MODE, FILE_MODE, make_dirs, write_atomic

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


def current_model(config_path: Path) -> tuple[Path, Path]:
    """(model, labels) the config uses, resolved."""
    from camclassd.configfile import load_config  # noqa: PLC0415 (pydantic: only here)

    model = load_config(config_path).model
    return model.path, model.labels


def point_config(config_path: Path, model: Path, labels: Path) -> None:
    """Rewrite `[model] path/labels` after checking that the model loads and the edited text
    validates with camclassd's own loader; written atomically, mode and owner kept."""
    from camclassd.configfile import parse_config  # noqa: PLC0415

    Engine(model, labels)  # refuses a model that does not load: ModelError
    try:
        text = config_path.read_text(encoding="utf-8-sig")
        status = config_path.stat()
    except OSError as error:
        raise ConfigError(f"{config_path}: cannot be read ({error.strerror or error})") from None
    edited = tomledit.set_model_paths(text, path=str(model), labels=str(labels))
    config = parse_config(edited, source=str(config_path), config_dir=config_path.resolve().parent)
    if config.model.path != model or config.model.labels != labels:
        raise ConfigError(
            f"{config_path}: [model] could not be edited (set elsewhere, e.g. as dotted keys): "
            f"set path = {tomledit.toml_string(str(model))} and labels by hand"
        )
    write_atomic(config_path, edited.encode("utf-8"), status.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(config_path, status.st_uid, status.st_gid)


def _give_to_owner_of(reference: Path, paths: list[Path]) -> None:
    """Files made by root for the service: owned like the models dir (the service user)."""
    if os.geteuid() != 0:
        return
    status = reference.stat()
    for path in paths:
        os.chown(path, status.st_uid, status.st_gid)


def install(source: Path, config_path: Path, models_dir: Path) -> tuple[Version, Path]:
    """Copy `source` in as the next version and point the config at it.

    Returns the new version and the model the config used before. A model that does not
    load is refused before anything is copied.
    """
    model, labels = find_model(source)
    Engine(model, labels)
    before = current_model(config_path)
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
        previous = {"path": str(before[0]), "labels": str(before[1])}
        write_atomic(staged / PREVIOUS_FILE, (json.dumps(previous) + "\n").encode(), FILE_MODE)
        copied.append(target.directory / PREVIOUS_FILE)
        os.rename(staged, target.directory)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _give_to_owner_of(models_dir, [models_dir / name, target.directory, *copied])
    try:
        point_config(config_path, target.model, target.labels)
    except BaseException:
        shutil.rmtree(target.directory, ignore_errors=True)  # the config never saw it
        raise
    return target, before[0]


def _which(path: Path, models_dir: Path) -> Version | None:
    for version in versions(models_dir):
        if version.model == path:
            return version
    return None


def rollback(config_path: Path, models_dir: Path) -> tuple[Version, Path]:
    """Point the config back at what it used before the current version was installed."""
    in_use = current_model(config_path)[0]
    current = _which(in_use, models_dir)
    if current is None:
        raise InputNotFoundError(
            f"{config_path} uses {in_use}, not a version installed under {models_dir}: "
            "nothing to roll back (see `camclassd model list`)"
        )
    try:
        previous = json.loads((current.directory / PREVIOUS_FILE).read_text(encoding="utf-8"))
        model, labels = Path(previous["path"]), Path(previous["labels"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputNotFoundError(
            f"{current.directory / PREVIOUS_FILE} is missing or unreadable: point [model] "
            "path at another version by hand"
        ) from None
    point_config(config_path, model, labels)
    return current, model


def _card_line(version: Version) -> str:
    try:
        made = json.loads((version.directory / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    validation = made.get("validation") or {}
    accuracy = validation.get("accuracy")
    shown = f"{accuracy * 100:.1f}%" if isinstance(accuracy, float | int) else "n/a"
    return f"{', '.join(made.get('classes', []))}; trained {made.get('date')}; val {shown}"


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


def install_from_args(args: argparse.Namespace, source: Path) -> int:
    config_path = args.config or DEFAULT_CONFIG
    models_dir = Path(
        os.path.abspath(args.models_dir or DEFAULT_MODELS_DIR)
    )  # the config gets absolute paths
    version, before = install(source, config_path, models_dir)
    print(f"installed {version.name} v{version.number} in {version.directory}")
    print(f"{config_path}: [model] path = {version.model} (was {before})")
    after_change(args, config_path)
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    config_path = args.config or DEFAULT_CONFIG
    models_dir = Path(
        os.path.abspath(args.models_dir or DEFAULT_MODELS_DIR)
    )  # the config gets absolute paths
    if args.model_command == "install":
        return install_from_args(args, args.source)
    if args.model_command == "rollback":
        current, previous = rollback(config_path, models_dir)
        print(f"{config_path}: [model] path = {previous} (was {current.name} v{current.number})")
        after_change(args, config_path)
        return EXIT_OK
    try:
        in_use: Path | None = current_model(config_path)[0]
    except ConfigError:
        in_use = None
    found = versions(models_dir)
    if not found:
        print(f"no models installed under {models_dir}")
    for version in found:
        mark = "*" if version.model == in_use else " "
        print(
            f"{mark} {version.name} v{version.number}  {version.directory}  {_card_line(version)}"
        )
    if in_use is not None and _which(in_use, models_dir) is None:
        print(f"* {config_path} uses {in_use} (not an installed version)")
    return EXIT_OK
