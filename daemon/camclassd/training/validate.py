"""Validation of a head on images it was not trained on: stratified k-fold by source image.

All views of one photo stay in the same fold (an augmented copy of a validation photo in the
training set would flatter the figures). Big datasets use one held-out fold instead of k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from camclassd.training.head import FloatHead
from camclassd.training.quantize import int8_logits, quantize_head

DEFAULT_FOLDS = 5
HELD_OUT_ABOVE = 300  # images: above this one fold (1/k of them) is held out, not k folds
CURVE_SIZES = (1, 2, 5, 10, 20, 50, 100, 200)

Fit = Callable[[np.ndarray, np.ndarray], FloatHead]


@dataclass(frozen=True, slots=True)
class Views:
    """Embeddings of every view with where each came from."""

    embeddings: np.ndarray  # int8 [V, D]
    features: np.ndarray  # float32 [V, D], dequantized
    image: np.ndarray  # int [V]: source image index
    image_labels: np.ndarray  # int [I]
    quantization: tuple[float, int]


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def summarise(matrix: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision and recall from a confusion matrix (rows: truth)."""
    total = int(matrix.sum())
    correct = int(np.trace(matrix))
    per_class = {}
    for index, name in enumerate(names):
        predicted = int(matrix[:, index].sum())
        actual = int(matrix[index].sum())
        hit = int(matrix[index, index])
        per_class[name] = {
            "precision": round(hit / predicted, 4) if predicted else None,
            "recall": round(hit / actual, 4) if actual else None,
            "views": actual,
        }
    return {
        "accuracy": round(correct / total, 4) if total else None,
        "views": total,
        "per_class": per_class,
        "confusion": matrix.tolist(),
    }


def assign_folds(image_labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold of each image: every class dealt round-robin over the folds after a shuffle."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(image_labels), dtype=np.int64)
    for label in np.unique(image_labels):
        members = np.flatnonzero(image_labels == label)
        fold[rng.permutation(members)] = np.arange(len(members)) % folds
    return fold


def fold_count(image_labels: np.ndarray, requested: int) -> int:
    """k: at most `requested`, at most the smallest class (each fold holds one of each)."""
    smallest = int(np.bincount(image_labels).min())
    return max(0, min(requested, smallest)) if smallest >= 2 else 0


def cross_validate(
    views: Views,
    names: Sequence[str],
    fit: Fit,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    curve: bool = True,
) -> dict[str, Any] | None:
    """Pooled figures over the folds, int8/float agreement and a learning curve; None when a
    class has fewer than two images (nothing could be held out)."""
    k = fold_count(views.image_labels, folds)
    if k < 2:
        return None
    fold_of_image = assign_folds(views.image_labels, k, seed)
    evaluated = [0] if len(views.image_labels) > HELD_OUT_ABOVE else list(range(k))
    classes = len(names)
    truth_all: list[np.ndarray] = []
    float_all: list[np.ndarray] = []
    int8_all: list[np.ndarray] = []
    view_fold = fold_of_image[views.image]
    view_labels = views.image_labels[views.image]
    for fold in evaluated:
        train, test = view_fold != fold, view_fold == fold
        head = fit(views.features[train], view_labels[train])
        quantized = quantize_head(head, views.quantization, views.features[train])
        truth_all.append(view_labels[test])
        float_all.append(head.logits(views.features[test]).argmax(axis=1))
        int8 = int8_logits(quantized, views.embeddings[test], views.quantization)
        int8_all.append(int8.argmax(axis=1))
    truth = np.concatenate(truth_all)
    float_pred = np.concatenate(float_all)
    int8_pred = np.concatenate(int8_all)
    result = summarise(confusion(truth, float_pred, classes), names)
    int8_summary = summarise(confusion(truth, int8_pred, classes), names)
    result["method"] = f"held-out 1/{k} split" if len(evaluated) == 1 else f"stratified {k}-fold"
    result["int8_accuracy"] = int8_summary["accuracy"]
    result["int8_float_agreement"] = round(float(np.mean(int8_pred == float_pred)), 4)
    result["images"] = int(sum(np.sum(fold_of_image == f) for f in evaluated))
    if curve:
        result["learning_curve"] = learning_curve(views, fit, fold_of_image, evaluated)
        # its last point is the validation above: every training image of each fold
        result["learning_curve"][-1]["accuracy"] = result["accuracy"]
    return result


def learning_curve(
    views: Views, fit: Fit, fold_of_image: np.ndarray, evaluated: Sequence[int]
) -> list[dict[str, Any]]:
    """Validation accuracy when training on n images of each class, n growing; the last
    point (all of them) is left for the caller, which has it already."""
    labels = views.image_labels
    view_labels = labels[views.image]
    view_fold = fold_of_image[views.image]
    rng = np.random.default_rng(len(labels))
    order = rng.permutation(len(labels))  # which n images a class keeps: a fixed random pick
    rank = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = order[labels[order] == label]
        rank[members] = np.arange(len(members))
    largest = min(
        int(np.sum((labels == c) & (fold_of_image != f)))
        for c in np.unique(labels)
        for f in evaluated
    )
    sizes = [n for n in CURVE_SIZES if n < largest] + [largest]
    points: list[dict[str, Any]] = []
    for n in sizes:
        if n == sizes[-1]:
            points.append({"per_class": n, "accuracy": None})  # filled in by the caller
            continue
        correct = total = 0
        for fold in evaluated:
            train_images = (fold_of_image != fold) & (
                rank_in_training(rank, fold_of_image, fold, labels) < n
            )
            train = train_images[views.image]
            test = view_fold == fold
            head = fit(views.features[train], view_labels[train])
            predicted = head.logits(views.features[test]).argmax(axis=1)
            correct += int(np.sum(predicted == view_labels[test]))
            total += int(test.sum())
        points.append({"per_class": n, "accuracy": round(correct / total, 4)})
    return points


def rank_in_training(
    rank: np.ndarray, fold_of_image: np.ndarray, fold: int, labels: np.ndarray
) -> np.ndarray:
    """Each training image's position among its class's training images (held-out: huge)."""
    result = np.full(len(labels), np.iinfo(np.int64).max, dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero((labels == label) & (fold_of_image != fold))
        result[members[np.argsort(rank[members])]] = np.arange(len(members))
    return result
