"""Argument parsers of the training commands (train, evaluate, collect, dataset, model).

Kept apart from the commands so that building the parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import MappingProxyType

# subcommand -> "module:function", merged into camclassd.cli's table.
HANDLERS = MappingProxyType(
    {
        "train": "camclassd.training.train:main",
        "evaluate": "camclassd.training.evaluate:main",
        "collect": "camclassd.training.collect:main",
        "dataset": "camclassd.training.dataset_cli:main",
        "model": "camclassd.training.install:main",
    }
)
RELOAD_CHOICES = ("none", "mqtt", "systemctl")


def _install_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the daemon's config: install points its [model] path/labels (or, with "
        "--camera, that camera's model/labels) at the new model (default "
        "/etc/camclassd/camclassd.toml); train takes --camera's crop/roi from it",
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where versions are kept (default /var/lib/camclassd/models)",
    )
    p.add_argument(
        "--reload",
        choices=RELOAD_CHOICES,
        default="none",
        help="ask the running daemon to reload: over MQTT, with systemctl, or "
        "print what to do (default)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train a classifier for your own classes (offline)")
    p.add_argument("dataset", type=Path, metavar="DATASET", help="one folder per class")
    p.add_argument("--out", type=Path, required=True, help="output folder (model, labels, card)")
    p.add_argument("--name", default=None, help="model name (default: the dataset folder's)")
    p.add_argument("--base", type=Path, default=None, help="base model (default: shipped uint8)")
    p.add_argument(
        "--camera",
        default=None,
        help="camera whose crop/roi the views use; with --install, the camera it is installed for",
    )
    p.add_argument("--crop", choices=["center", "squash", "letterbox"], default="center")
    p.add_argument("--views", type=int, default=4, help="views per image, 1 unaugmented (4)")
    p.add_argument(
        "--flip", action="store_true", help="also mirror views (if left/right is not a class)"
    )
    p.add_argument("--seed", type=int, default=0, help="same dataset + seed: same model (0)")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 regularisation (1e-3)")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps (300)")
    p.add_argument("--folds", type=int, default=5, help="k of the k-fold validation (5)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads (2)")
    p.add_argument("--float", action="store_true", help="also write the float32 twin head model")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--install", action="store_true", help="then install it (see `model install`)")
    _install_options(p)  # its --config also gives --camera's crop/roi

    p = sub.add_parser("evaluate", help="accuracy, confusion and latency of a model on a dataset")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("dataset", type=Path, metavar="DATASET", help="one folder per class (label)")
    p.add_argument("--labels", type=Path, default=None)
    p.add_argument("--compare", type=Path, default=None, metavar="OTHER", help="a second model")
    p.add_argument("--compare-labels", type=Path, default=None)
    p.add_argument("--crop", choices=["center", "squash", "letterbox"], default="center")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("collect", help="save frames of a source into a dataset folder")
    p.add_argument(
        "--source", default=None, help="an image folder or glob, a video file, a device, a URL"
    )
    p.add_argument(
        "--config", type=Path, default=None, help="instead of --source: --camera of this config"
    )
    p.add_argument("--out", type=Path, required=True, help="dataset folder")
    p.add_argument(
        "--camera",
        default=None,
        help="sub-folder name (default offline); with --config: the camera",
    )
    p.add_argument("--label", default=None, help="class folder (default _unlabelled)")
    p.add_argument("--every", default="2s", help="interval between saved frames, e.g. 2s, 500ms")
    p.add_argument("--count", type=int, default=None, help="stop after N saved frames")
    p.add_argument("--max-files", type=int, default=1000, help="budget: files in --out (1000)")
    p.add_argument("--max-mib", type=float, default=200.0, help="budget: MiB in --out (200)")
    p.add_argument("--no-full", action="store_true", help="do not keep the full frames")
    p.add_argument("--size", type=int, default=224, help="model view side in pixels (224)")

    p = sub.add_parser("dataset", help="check a dataset folder: counts, duplicates, problems")
    p.add_argument("dataset", type=Path, metavar="DIR")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("model", help="install, list and roll back trained models")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    q = msub.add_parser("install", help="install a trained model folder and point the config at it")
    q.add_argument("source", type=Path, metavar="DIR", help="a `train --out` folder")
    q.add_argument(
        "--camera",
        default=None,
        metavar="NAME",
        help="point [cameras.NAME] model/labels at it instead of the shared [model]",
    )
    _install_options(q)
    q = msub.add_parser(
        "list", help="installed versions; * marks those the config uses, and by what"
    )
    _install_options(q)
    q = msub.add_parser("rollback", help="point the config back at the previous version")
    q.add_argument(
        "--camera",
        default=None,
        metavar="NAME",
        help="roll back [cameras.NAME]'s own model instead of the shared [model]",
    )
    _install_options(q)
