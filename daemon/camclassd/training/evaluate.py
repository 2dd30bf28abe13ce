"""`camclassd evaluate MODEL DATASET [--compare OTHER]`: how a classifier does on your data.

Any classifier with labels works (the shipped ImageNet models too): a dataset folder name
must be one of the model's labels. Both models of a comparison see the very same views.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camclassd.classify import resolve_paths
from camclassd.engine import Engine
from camclassd.errors import EXIT_OK, InputDataError, UsageError
from camclassd.preprocess import Preprocessor
from camclassd.training import card, dataset, validate
from camclassd.training.progress import Bar


@dataclass(frozen=True, slots=True)
class Run:
    engine: Engine
    preprocess: Preprocessor
    targets: np.ndarray  # dataset class -> model label index


def _targets(engine: Engine, classes: tuple[str, ...]) -> np.ndarray:
    lookup = {label.lower(): index for index, label in enumerate(engine.labels)}
    missing = [name for name in classes if name.lower() not in lookup]
    if missing:
        shown = ", ".join(repr(label) for label in engine.labels[:5])
        raise InputDataError(
            f"dataset folder {missing[0]!r} is not a label of {engine.model_path.name} "
            f"(its labels: {shown}, ...): name each folder after the model's label"
        )
    return np.asarray([lookup[name.lower()] for name in classes], dtype=np.int64)


def _open(
    model: Path, labels: Path | None, args: argparse.Namespace, classes: tuple[str, ...]
) -> Run:
    model_path, labels_path = resolve_paths(model, labels)
    engine = Engine(model_path, labels_path, num_threads=args.threads)
    preprocess = Preprocessor(size=engine.input_size, crop=args.crop)
    return Run(engine, preprocess, _targets(engine, classes))


def measure(
    runs: list[Run], data: dataset.Dataset, progress: bool
) -> tuple[list[dict[str, Any]], int]:
    """Figures per model on every readable image; returns them and the unreadable count."""
    truth: list[int] = []
    top: list[list[np.ndarray]] = [[] for _ in runs]
    latency: list[list[float]] = [[] for _ in runs]
    unreadable = 0
    bar = Bar(sys.stderr, "evaluating", len(data.examples), enabled=progress)
    for position, example in enumerate(data.examples, start=1):
        frame = dataset.decode(example.path)
        bar.tick(position)
        if frame is None:
            unreadable += 1
            continue
        truth.append(example.label)
        for index, run in enumerate(runs):
            tensor = run.engine.to_input(run.preprocess(frame))[np.newaxis]
            started = time.perf_counter()
            probabilities = run.engine.infer(tensor)[0]
            latency[index].append((time.perf_counter() - started) * 1000.0)
            top[index].append(np.argsort(-probabilities, kind="stable")[:3])
    bar.close()
    if not truth:
        raise InputDataError(f"none of the image files in {data.root} decodes")
    truth_array = np.asarray(truth)
    results = [
        _figures(run, truth_array, np.stack(tops), lat, data.classes)
        for run, tops, lat in zip(runs, top, latency, strict=True)
    ]
    if len(runs) == 2:
        first, second = (np.stack(t)[:, 0] for t in top)
        results[1]["agreement_with_first"] = round(float(np.mean(first == second)), 4)
    return results, unreadable


def _figures(
    run: Run, truth: np.ndarray, tops: np.ndarray, latency: list[float], classes: tuple[str, ...]
) -> dict[str, Any]:
    wanted = run.targets[truth]
    top1 = float(np.mean(tops[:, 0] == wanted))
    top3 = float(np.mean((tops == wanted[:, None]).any(axis=1)))
    # Predictions outside the dataset's classes land in an extra "other" column.
    column = {int(target): index for index, target in enumerate(run.targets)}
    predicted = np.asarray([column.get(int(p), len(classes)) for p in tops[:, 0]])
    matrix = validate.confusion(truth, predicted, len(classes) + 1)[: len(classes)]
    summary = validate.summarise(
        np.vstack([matrix, np.zeros((1, len(classes) + 1), np.int64)]), [*classes, "(other)"]
    )
    del summary["per_class"]["(other)"]
    return {
        "model": str(run.engine.model_path),
        "bytes": run.engine.model_path.stat().st_size,
        "runtime": run.engine.runtime,
        "top1": round(top1, 4),
        "top3": round(top3, 4),
        "median_invoke_ms": round(float(np.median(latency)), 3),
        "views": len(truth),
        "per_class": summary["per_class"],
        "confusion": matrix.tolist(),
    }


def format_report(results: list[dict[str, Any]], classes: list[str], unreadable: int) -> str:
    lines: list[str] = []
    for result in results:
        lines.append(
            f"{result['model']}: top-1 {result['top1'] * 100:.1f}%, top-3 "
            f"{result['top3'] * 100:.1f}% on {result['views']} images; median invoke "
            f"{result['median_invoke_ms']:.2f} ms; {result['bytes'] / 1e6:.2f} MB"
        )
        lines += card.per_class_lines(classes, result["per_class"])
        lines.append("  confusion matrix (last column: predicted outside these classes):")
        lines += card.confusion_lines(classes, result["confusion"], "  ", columns=len(classes) + 1)
    if len(results) == 2:
        a, b = results
        lines.append("side by side:")
        lines.append(f"  {'':<18}{'MODEL':>14}{'OTHER':>14}{'delta':>12}")
        for key, label, unit, factor in (
            ("bytes", "size", " MB", 1e-6),
            ("median_invoke_ms", "median invoke", " ms", 1.0),
            ("top1", "top-1", " %", 100.0),
            ("top3", "top-3", " %", 100.0),
        ):
            x, y = a[key] * factor, b[key] * factor
            lines.append(f"  {label:<18}{x:>11.2f}{unit:<3}{y:>11.2f}{unit:<3}{y - x:>+9.2f}{unit}")
        lines.append(f"  top-1 agreement: {b['agreement_with_first'] * 100:.1f}% of views")
    if unreadable:
        lines.append(f"skipped {unreadable} file(s) that do not decode")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    data = dataset.scan(args.dataset)
    runs = [_open(args.model, args.labels, args, data.classes)]
    if args.compare is not None:
        runs.append(_open(args.compare, args.compare_labels or args.labels, args, data.classes))
    results, unreadable = measure(runs, data, not args.no_progress and not args.json)
    if args.json:
        print(
            json.dumps(
                {"classes": list(data.classes), "models": results, "skipped_unreadable": unreadable}
            )
        )
    else:
        print(format_report(results, list(data.classes), unreadable))
    return EXIT_OK
