"""The model card: what a trained model is, what it was trained on, how well it did."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def to_json(card: Mapping[str, Any]) -> str:
    return json.dumps(card, indent=2, ensure_ascii=False) + "\n"


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{value * 100:5.1f}%"


def confusion_lines(
    names: list[str], matrix: list[list[int]], indent: str = "  ", columns: int | None = None
) -> list[str]:
    """Rows: true class; columns: predicted, in the same order (plus any extra columns)."""
    corner = "true \\ predicted"
    width = max([len(corner) - 4, *(len(n) for n in names)])
    cell = max(5, *(len(str(v)) + 1 for row in matrix for v in row))
    head = "".join(f"{i:>{cell}}" for i in range(columns or len(names)))
    lines = [f"{indent}{corner:<{width + 4}}{head}"]
    for index, (name, row) in enumerate(zip(names, matrix, strict=True)):
        cells = "".join(f"{v:>{cell}}" for v in row)
        lines.append(f"{indent}{index:>2}. {name:<{width}}{cells}")
    return lines


def per_class_lines(
    names: list[str], per_class: Mapping[str, Any], indent: str = "  "
) -> list[str]:
    width = max([6, *(len(n) for n in names)])
    lines = [f"{indent}{'class':<{width}}  precision  recall   views"]
    for name in names:
        figures = per_class[name]
        lines.append(
            f"{indent}{name:<{width}}  {_pct(figures['precision'])}     {_pct(figures['recall'])}"
            f"  {figures['views']:6d}"
        )
    return lines


def summary(card: Mapping[str, Any]) -> str:
    """The readable card (also what `train` prints at the end)."""
    names = list(card["classes"])
    counts = card["dataset"]["images_per_class"]
    lines = [
        f"model {card['name']}: {len(names)} classes, made by camclassd {card['camclassd']} "
        f"on {card['date']}",
        f"  command: {card['command']}",
        f"  base: {card['base_model']['file']} (sha256 {card['base_model']['sha256'][:16]}...)",
        f"  file: {card['model']['file']}, {card['model']['bytes'] / 1e6:.2f} MB, "
        f"sha256 {card['model']['sha256'][:16]}...",
        f"  dataset: {card['dataset']['path']}: {card['dataset']['images']} images, "
        f"{card['dataset']['views']} views ({card['augment']['views_per_image']} per image), "
        f"{card['dataset']['skipped_unreadable']} unreadable and "
        f"{card['dataset']['skipped_not_images']} non-image files skipped",
    ]
    lines += [f"    {name:<20} {counts[name]:6d} images" for name in names]
    validation = card.get("validation")
    if validation is None:
        lines.append("  validation: none (every class needs 2+ images to hold one out)")
    else:
        lines.append(
            f"  validation ({validation['method']}, {validation['images']} held-out images, "
            f"{validation['views']} views): accuracy {_pct(validation['accuracy'])}, int8 "
            f"{_pct(validation['int8_accuracy'])}, int8/float agreement "
            f"{_pct(validation['int8_float_agreement'])}"
        )
        lines += per_class_lines(names, validation["per_class"], "    ")
        lines.append("    confusion matrix:")
        lines += confusion_lines(names, validation["confusion"], "    ")
        curve = validation.get("learning_curve") or []
        if curve:
            lines.append("    learning curve (training images per class -> accuracy):")
            lines.append(
                "      "
                + "  ".join(f"{p['per_class']}: {_pct(p['accuracy']).strip()}" for p in curve)
            )
            advice = curve_advice(curve)
            if advice:
                lines.append(f"    {advice}")
    timing = card.get("training", {})
    if timing:
        lines.append(
            f"  training: {timing['seconds']:.1f} s ({timing['embed_seconds']:.1f} s embedding, "
            f"{timing['views_per_second']:.1f} views/s), peak RSS {timing['peak_rss_mib']:.0f} MiB"
        )
    return "\n".join(lines) + "\n"


def curve_advice(curve: list[Mapping[str, Any]]) -> str:
    """Answer "do I have enough examples?" from the last two points of the curve."""
    if len(curve) < 2:
        return ""
    last, before = curve[-1], curve[-2]
    gain = float(last["accuracy"]) - float(before["accuracy"])
    if gain > 0.02:
        return (
            f"still improving (+{gain * 100:.1f} points from {before['per_class']} to "
            f"{last['per_class']} per class): more examples should help"
        )
    return "flat at the end: more of the same examples will help little; vary them instead"
