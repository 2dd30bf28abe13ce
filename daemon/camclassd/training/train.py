"""`camclassd train DATASET --out DIR`: a new classifier head on the shipped int8 backbone.

Steps: scan the dataset, embed every view (the daemon's view and augmented ones), fit and
validate a softmax head, quantize it, write the model, labels and card into DIR at once.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import resource
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from camclassd import __version__
from camclassd.engine import Engine, default_model_paths
from camclassd.errors import EXIT_OK, InputDataError, UsageError
from camclassd.preprocess import Preprocessor
from camclassd.training import card, dataset, head, install, quantize, surgery, validate
from camclassd.training.augment import Augment, image_rng, views
from camclassd.training.blas import one_thread
from camclassd.training.embed import Embedder
from camclassd.training.files import DIR_MODE, FILE_MODE, make_dirs, replace_dir, write_atomic
from camclassd.training.progress import Bar


def camera_preprocessor(
    args: argparse.Namespace, size: tuple[int, int]
) -> tuple[Preprocessor, dict[str, Any]]:
    """The daemon's crop and resize: a camera's from --config/--camera, else --crop."""
    if args.config is None:
        if args.camera is not None:
            raise UsageError("--camera needs --config (the file that defines the camera)")
        return Preprocessor(size=size, crop=args.crop), {"crop": args.crop}
    from camclassd.configfile import load_config  # noqa: PLC0415 (only with --config)

    config = load_config(args.config)
    names = sorted(config.cameras)
    name = args.camera
    if name is None:
        if len(names) != 1:
            raise UsageError(
                f"{args.config} has cameras {', '.join(names)}: pick one with --camera"
            )
        name = names[0]
    if name not in config.cameras:
        raise UsageError(f"no camera {name!r} in {args.config}: it has {', '.join(names)}")
    camera = config.cameras[name]
    settings = {
        "camera": name,
        "crop": camera.crop,
        "roi": camera.roi,
        "interpolation": camera.interpolation,
    }
    return Preprocessor(
        size=size, crop=camera.crop, roi=camera.roi, interpolation=camera.interpolation
    ), settings


def check_out(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UsageError(f"{out} exists and is not empty: pick another --out or add --force")


def embed_dataset(
    data: dataset.Dataset,
    embedder: Embedder,
    preprocess: Preprocessor,
    *,
    count: int,
    seed: int,
    augment: Augment,
    progress: bool,
) -> tuple[validate.Views, list[int]]:
    """Every readable image's views embedded; unreadable files counted per class."""
    embeddings: list[np.ndarray] = []
    image_of_view: list[int] = []
    labels: list[int] = []
    unreadable = [0] * len(data.classes)
    bar = Bar(sys.stderr, "embedding", len(data.examples), enabled=progress)
    for position, example in enumerate(data.examples, start=1):
        frame = dataset.decode(example.path)
        if frame is None:
            unreadable[example.label] += 1
            continue
        key = example.path.relative_to(data.root).as_posix()
        for view in views(frame, preprocess, count, image_rng(seed, key), augment):
            embeddings.append(embedder(view))
            image_of_view.append(len(labels))
        labels.append(example.label)
        bar.tick(position)
    bar.close()
    readable = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(data.classes))
    if not labels:
        raise InputDataError(f"none of the {len(data.examples)} image files in {data.root} decodes")
    for name, got, bad in zip(data.classes, readable, unreadable, strict=True):
        if got == 0:
            raise InputDataError(
                f"class {name!r} has no readable image ({bad} file(s) do not decode): add "
                "JPEG/PNG images to it or remove the folder"
            )
    stacked = np.stack(embeddings)
    return validate.Views(
        embeddings=stacked,
        features=quantize.dequantize(stacked, embedder.quantization),
        image=np.asarray(image_of_view, dtype=np.int64),
        image_labels=np.asarray(labels, dtype=np.int64),
        quantization=embedder.quantization,
    ), unreadable


def check_loads(model: bytes, labels: list[str]) -> None:
    """The written model must load in the engine as any classifier does."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.tflite"
        path.write_bytes(model)
        (Path(scratch) / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        engine = Engine(path, Path(scratch) / "labels.txt")
        if engine.num_classes != len(labels):
            raise surgery.BaseModelError(f"the new model has {engine.num_classes} outputs")


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.views < 1:
        raise UsageError(f"--views must be at least 1, got {args.views}")
    if args.folds < 2:
        raise UsageError(f"--folds must be at least 2, got {args.folds}")
    base = args.base or default_model_paths()[0]
    data = dataset.scan(args.dataset)
    dataset.require_trainable(data)
    check_out(args.out, args.force)
    embedder = Embedder(base, num_threads=args.threads)
    preprocess, preprocessing = camera_preprocessor(args, embedder.input_size)
    augment = Augment(flip=args.flip)
    embed_started = time.perf_counter()
    all_views, unreadable = embed_dataset(
        data,
        embedder,
        preprocess,
        count=args.views,
        seed=args.seed,
        augment=augment,
        progress=not args.no_progress,
    )
    embed_seconds = time.perf_counter() - embed_started
    names = list(data.classes)
    classes = len(names)
    view_labels = all_views.image_labels[all_views.image]

    def fit(x: np.ndarray, y: np.ndarray) -> head.FloatHead:
        return head.fit(x, y, classes, l2=args.l2, steps=args.steps)

    with one_thread():
        final = fit(all_views.features, view_labels)
        quantized = quantize.quantize_head(final, embedder.quantization, all_views.features)
        model = surgery.classifier_model(embedder.base_bytes, quantized)
        check_loads(model, names)
        validation = validate.cross_validate(
            all_views, names, fit, folds=args.folds, seed=args.seed
        )
        train_int8 = quantize.int8_logits(quantized, all_views.embeddings, embedder.quantization)
        final_pred = final.logits(all_views.features).argmax(axis=1)
    agreement = float(np.mean(train_int8.argmax(axis=1) == final_pred))

    name = args.name or args.dataset.resolve().name
    made = describe(
        args,
        name=name,
        names=names,
        model=model,
        quantized=quantized,
        views=all_views,
        unreadable=unreadable,
        other_files=len(data.other_files),
        preprocessing=preprocessing,
        augment=augment,
        base=(base, embedder.base_sha256),
        size=embedder.input_size,
        head_figures={
            "train_accuracy": round(float(np.mean(final_pred == view_labels)), 4),
            "train_int8_float_agreement": round(agreement, 4),
        },
        validation=validation,
    )
    made["training"] = {
        "seconds": round(time.perf_counter() - started, 2),
        "embed_seconds": round(embed_seconds, 2),
        "views_per_second": round(len(all_views.image) / max(embed_seconds, 1e-9), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "runtime": embedder.runtime,
    }
    twin = None
    if args.float:
        weights, bias = final.weights.astype(np.float32), final.bias.astype(np.float32)
        twin = surgery.float_classifier_model(embedder.base_bytes, weights, bias)
    write_outputs(args.out, name=name, names=names, model=model, made=made, twin=twin)
    print(card.summary(made), end="")
    print(f"wrote {args.out}/: {name}.tflite, {name}.txt, card.json, card.txt")
    if args.install:
        # Trained on one camera's view (--camera): the model is that camera's, not every one's.
        return install.install_from_args(args, args.out, args.camera)
    return EXIT_OK


def describe(
    args: argparse.Namespace,
    *,
    name: str,
    names: list[str],
    model: bytes,
    quantized: surgery.QuantizedHead,
    views: validate.Views,
    unreadable: list[int],
    other_files: int,
    preprocessing: dict[str, Any],
    augment: Augment,
    base: tuple[Path, str],
    size: tuple[int, int],
    head_figures: dict[str, Any],
    validation: dict[str, Any] | None,
) -> dict[str, Any]:
    """The model card's content (the date is the only thing that changes run to run)."""
    counts = np.bincount(views.image_labels, minlength=len(names))
    command = sys.argv[1:] if sys.argv[1:2] == ["train"] else ["train", str(args.dataset)]
    return {
        "name": name,
        "classes": names,
        "background_class": next(
            (n for n in names if n.lower() in dataset.BACKGROUND_LABELS), None
        ),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "camclassd": __version__,
        "command": shlex.join(["camclassd", *command]),
        "base_model": {"file": base[0].name, "sha256": base[1]},
        "model": {
            "file": f"{name}.tflite",
            "labels": f"{name}.txt",
            "bytes": len(model),
            "sha256": hashlib.sha256(model).hexdigest(),
            "input": f"uint8 [1, {size[1]}, {size[0]}, 3] raw RGB pixels (as the base model)",
            "output": f"uint8 [1, {len(names)}] logits",
            "output_quantization": {
                "scale": quantized.output_scale,
                "zero_point": quantized.output_zero_point + 128,
            },
        },
        "dataset": {
            "path": str(args.dataset),
            "images": int(counts.sum()),
            "views": len(views.image),
            "images_per_class": dict(zip(names, map(int, counts), strict=True)),
            "skipped_unreadable": int(sum(unreadable)),
            "skipped_not_images": other_files,
        },
        "preprocessing": preprocessing,
        "augment": {"views_per_image": args.views, "seed": args.seed, **asdict(augment)},
        "head": {
            "type": "softmax regression, class-balanced, L2",
            "l2": args.l2,
            "steps": args.steps,
            **head_figures,
        },
        "validation": validation,
    }


def write_outputs(
    out: Path,
    *,
    name: str,
    names: list[str],
    model: bytes,
    made: dict[str, Any],
    twin: bytes | None,
) -> None:
    """Everything into a hidden sibling directory first, then renamed to `out` in one step."""
    parent = out.resolve().parent
    make_dirs(parent)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        staged.chmod(DIR_MODE)
        labels = ("\n".join(names) + "\n").encode("utf-8")
        write_atomic(staged / f"{name}.tflite", model, FILE_MODE)
        write_atomic(staged / f"{name}.txt", labels, FILE_MODE)
        if twin is not None:
            write_atomic(staged / f"{name}_float32.tflite", twin, FILE_MODE)
            write_atomic(staged / f"{name}_float32.txt", labels, FILE_MODE)
        write_atomic(staged / "card.json", card.to_json(made).encode("utf-8"), FILE_MODE)
        write_atomic(staged / "card.txt", card.summary(made).encode("utf-8"), FILE_MODE)
        replace_dir(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
