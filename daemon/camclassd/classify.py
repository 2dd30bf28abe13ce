"""`camclassd classify IMAGE...`: the top-k of each image file, for humans or as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camclassd.constants import DEFAULT_LABELS_FILE
from camclassd.engine import Engine, default_model_paths
from camclassd.errors import (
    EXIT_OK,
    CamclassdError,
    InputDataError,
    InputNotFoundError,
    UsageError,
)
from camclassd.preprocess import Preprocessor
from camclassd.results import Prediction, top_k


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 HxWx3.

    The bytes are read here rather than by cv2.imread so that a missing or unreadable file
    is told apart from one that does not decode.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputNotFoundError(f"{path}: is a directory, not an image file") from None
    except OSError as error:
        raise InputNotFoundError(f"{path}: cannot be read ({error.strerror})") from None
    if not data:
        raise InputDataError(f"{path}: empty file, not an image")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise InputDataError(
            f"{path}: not a readable image (OpenCV cannot decode it): give a JPEG, PNG, BMP or "
            "other format OpenCV reads"
        )
    rgb: np.ndarray = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return rgb


def resolve_paths(model: Path | None, labels: Path | None) -> tuple[Path, Path]:
    """--model/--labels with defaults: a model's own directory is searched for its labels."""
    default_model, default_labels = default_model_paths()
    if model is None:
        return default_model, labels or default_labels
    if labels is not None:
        return model, labels
    for candidate in (model.with_suffix(".txt"), model.parent / DEFAULT_LABELS_FILE):
        if candidate.is_file():
            return model, candidate
    return model, default_labels


def format_human(image: Path, top: tuple[Prediction, ...]) -> str:
    width = max([16, *(len(p.label) for p in top)])
    lines = [str(image)]
    for rank, prediction in enumerate(top, start=1):
        lines.append(
            f"  {rank}. {prediction.label:<{width}} {prediction.score * 100:5.1f}%  "
            f"({prediction.index})"
        )
    return "\n".join(lines)


def to_json(image: Path, model: str, top: tuple[Prediction, ...], inference_ms: float) -> str:
    record: dict[str, Any] = {
        "image": str(image),
        "model": model,
        "top": [{"label": p.label, "index": p.index, "score": round(p.score, 6)} for p in top],
        "inference_ms": round(inference_ms, 3),
    }
    return json.dumps(record, ensure_ascii=False)


def main(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    model_path, labels_path = resolve_paths(args.model, args.labels)
    engine = Engine(model_path, labels_path, num_threads=args.threads, delegate=args.delegate)
    preprocess = Preprocessor(size=engine.input_size, crop=args.crop)
    k = min(args.top_k, engine.num_classes)

    exit_code = EXIT_OK
    for image_path in args.images:
        try:
            tensor = engine.to_input(preprocess(read_rgb(image_path)))
        except CamclassdError as error:
            print(f"camclassd classify: error: {error}", file=sys.stderr, flush=True)
            exit_code = exit_code or error.exit_code
            continue
        started = time.perf_counter()
        probabilities = engine.infer(tensor[np.newaxis])
        inference_ms = (time.perf_counter() - started) * 1000.0
        top = top_k(probabilities[0], k, engine.labels)
        if args.json:
            print(to_json(image_path, engine.name, top, inference_ms), flush=True)
        else:
            print(format_human(image_path, top), flush=True)
    return exit_code
