"""Measure the training targets in one run, on datasets made from scikit-image's photos.

1. `camclassd train` on 500 images in 5 classes (640x480 JPEGs, camera-like views): wall
   time and peak RSS of the process (from /proc via psutil, sampled), train's own report;
2. the object and state tasks: validation accuracy, int8/float agreement, and top-1 on
   views never used in training (`camclassd evaluate`);
3. invoke time of the custom int8 model against the shipped one: alternating invokes in
   one process, medians and their ratio.

    .venv/bin/python scripts/measure_training.py [--images-per-class 100] [--invokes 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.training.data import OBJECT_CLASSES, _rgb, camera_view, state_dataset  # noqa: E402

from camclassd.engine import Engine  # noqa: E402

MIB = 1024 * 1024


def camera_dataset(root: Path, per_class: int, seed: int) -> Path:
    """5 classes of 640x480 frames, like a camera writes them."""
    rng = np.random.default_rng(seed)
    for label, photos in OBJECT_CLASSES.items():
        sources = [_rgb(name) for name in photos]
        for index in range(per_class):
            view = cv2.resize(camera_view(sources[index % len(sources)], rng), (640, 480))
            path = root / label / f"{label}-{index:03d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
    return root


def run_train(data: Path, out: Path, *extra: str) -> tuple[dict[str, object], float, float]:
    """Card, wall seconds and peak RSS (MiB, sampled every 50 ms) of one `camclassd train`."""
    command = [
        sys.executable,
        "-m",
        "camclassd",
        "train",
        str(data),
        "--out",
        str(out),
        "--no-progress",
        "--float",
        *extra,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak = 0.0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss / MIB)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    assert process.stdout is not None
    report = process.stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"train failed with exit code {process.returncode}")
    print(report, end="")
    card = json.loads((out / "card.json").read_text())
    return card, seconds, peak


def evaluate(model: Path, data: Path, other: Path) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "camclassd",
            "evaluate",
            str(model),
            str(data),
            "--compare",
            str(other),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def invoke_ratio(custom: Path, labels: Path, invokes: int) -> tuple[float, float]:
    """Median invoke ms of the shipped and the custom model, alternating, same input."""
    shipped = Engine(
        REPO / "models" / "efficientnet_lite0_uint8.tflite",
        REPO / "models" / "imagenet_labels.txt",
        num_threads=1,
    )
    mine = Engine(custom, labels, num_threads=1)
    pixels = cv2.resize(_rgb("chelsea"), (224, 224))[np.newaxis]
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(invokes * 2 + 20):
        engine = (shipped, mine)[index % 2]
        started = time.perf_counter()
        engine.infer(pixels)
        if index >= 20:  # warm-up
            times[index % 2].append((time.perf_counter() - started) * 1000)
    return float(np.median(times[0])), float(np.median(times[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--invokes", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {psutil.cpu_count()} CPUs, load average {psutil.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        big = camera_dataset(tmp / "five", args.images_per_class, seed=11)
        print(f"\n== 1. {5 * args.images_per_class} images in 5 classes (640x480 JPEG) ==")
        card, seconds, peak = run_train(big, tmp / "five-out")
        validation = card["validation"]
        assert isinstance(validation, dict)
        rows = [
            ("train 500 images (s)", seconds, "<=", 60.0),
            ("peak RSS (MiB)", peak, "<=", 300.0),
            ("int8/float agreement (%)", 100 * validation["int8_float_agreement"], ">=", 99.0),
        ]

        print("\n== 2. state task: a cat's head on the coffee table, present or not ==")
        state = state_dataset(tmp / "state" / "door", 30, seed=2)
        state_new = state_dataset(tmp / "state-new" / "door", 20, seed=202)
        state_card, _, _ = run_train(state, tmp / "state-out")
        state_eval = evaluate(
            tmp / "state-out" / "door.tflite", state_new, tmp / "state-out" / "door_float32.tflite"
        )
        shipped_ms, custom_ms = invoke_ratio(
            tmp / "state-out" / "door.tflite", tmp / "state-out" / "door.txt", args.invokes
        )
        ratio = custom_ms / shipped_ms
        rows.append(("custom/shipped invoke (%)", 100 * ratio, "<=", 102.0))
        state_validation = state_card["validation"]
        assert isinstance(state_validation, dict)

        print("\n== 3. the same with a small cat (40 px of the 600x400 frame) ==")
        small = state_dataset(tmp / "small" / "door", 30, seed=3, side=40)
        small_new = state_dataset(tmp / "small-new" / "door", 20, seed=303, side=40)
        small_card, _, _ = run_train(small, tmp / "small-out")
        small_eval = evaluate(
            tmp / "small-out" / "door.tflite", small_new, tmp / "small-out" / "door_float32.tflite"
        )
        small_validation = small_card["validation"]
        assert isinstance(small_validation, dict)
        rows.append(
            (
                "small-cat int8/float agr. (%)",
                100 * small_validation["int8_float_agreement"],
                ">=",
                99.0,
            )
        )

    print("\n== targets ==")
    for name, value, op, limit in rows:
        met = value <= limit if op == "<=" else value >= limit
        print(f"  {name:<28} {value:8.2f}  {op} {limit:<6g} {'met' if met else 'NOT MET'}")
    print("\n== figures ==")
    print(
        f"  5-class task: validation {validation['method']}: accuracy "
        f"{validation['accuracy'] * 100:.1f}%, int8 {validation['int8_accuracy'] * 100:.1f}%"
    )
    for name, task, result in (
        ("state task", state_validation, state_eval),
        ("small-cat state task", small_validation, small_eval),
    ):
        int8, float32 = result["models"]  # type: ignore[index]
        print(
            f"  {name}: validation {task['method']}: accuracy {task['accuracy'] * 100:.1f}%, "
            f"int8/float agreement {task['int8_float_agreement'] * 100:.1f}%; on 40 new "
            f"views: int8 top-1 {int8['top1'] * 100:.1f}%, float {float32['top1'] * 100:.1f}%, "
            f"agreement {float32['agreement_with_first'] * 100:.1f}%"
        )
    print(
        f"  invoke (1 thread, median of {args.invokes}): shipped {shipped_ms:.2f} ms, custom "
        f"{custom_ms:.2f} ms, ratio {ratio:.3f}"
    )
    shipped_mb = (REPO / "models" / "efficientnet_lite0_uint8.tflite").stat().st_size / 1e6
    print(f"  size: shipped {shipped_mb:.2f} MB, custom {int8['bytes'] / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
