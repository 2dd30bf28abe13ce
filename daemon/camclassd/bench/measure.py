"""`camclassd bench`: the raw invoke() rate, the pipeline and a plain loop, in one run.

Everything is measured in one process on the same model, thread count and source, so the
ratios are fair whatever the machine is doing:

  (a) raw      invoke() in a loop on one fixed input: the ceiling
  (b) pipeline the real Pipeline, source faster than the model, drop_oldest off (block):
               classified frames per second
  (c) plain    read -> preprocess -> invoke -> top-k -> publish, one frame at a time
  half load    the pipeline fed at half the raw rate: latency when nothing queues up
  soak         (--soak N) RSS growth over N frames after warm-up

The RSS target compares with a bare interpreter loop (numpy + the runtime + the model, no
camclassd) measured in a subprocess, since this process has OpenCV and the rest loaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from camclassd import cameras
from camclassd.bench.common import CountingSink, Progress, Setup, first_tensor, rate, rss_mb
from camclassd.bench.report import build_report, format_report
from camclassd.cameras import open_source
from camclassd.config import CameraConfig, Config
from camclassd.engine import Engine, default_model_paths
from camclassd.gate_config import GateConfig
from camclassd.metrics import STAGES, Metrics
from camclassd.pipeline import Pipeline
from camclassd.preprocess import Preprocessor
from camclassd.results import Classification, top_k

WARMUP_FRAMES = 10
SOAK_WARMUP_FRACTION = 0.1
MIB = 2**20

BARE_LOOP = """
import sys, time, numpy as np, psutil
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tflite_runtime.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=int(sys.argv[2]))
it.allocate_tensors()
inp = it.get_input_details()[0]
data = np.zeros(inp["shape"], dtype=inp["dtype"])
for _ in range(int(sys.argv[3])):
    it.set_tensor(inp["index"], data)
    it.invoke()
    it.get_tensor(it.get_output_details()[0]["index"])
print(psutil.Process().memory_info().rss)
"""


def main(args: argparse.Namespace) -> int:
    model, labels = model_paths(args)
    camera = parse_source(args.source)
    frames = max(int(args.frames), 5)
    progress = Progress(sys.stderr, enabled=not getattr(args, "no_progress", False))
    setup = Setup(model, labels, int(args.threads), camera)
    rounds = max(1, min(int(getattr(args, "rounds", 3) or 1), frames // 5))
    report = run(setup, frames, rounds, int(args.soak or 0), progress)
    progress.done()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def model_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    default_model, default_labels = default_model_paths()
    model = Path(args.model) if args.model else default_model
    labels = Path(args.labels) if args.labels else default_labels
    return model, labels


def parse_source(text: str) -> CameraConfig:
    """`TYPE:ARGUMENT` (synthetic:WxH, picamera2:N, opencv:URI, images:PATH), a video file or
    stream URL, an image file, or a directory/glob of images: see `cameras.from_cli`.

    The gate is off ('always'): these figures are about classifying every frame.
    """
    camera = cameras.from_cli(text)
    return camera.model_copy(update={"gate": GateConfig(mode="always")})


# ==== the measurements, in the order they run =================================================


def run(setup: Setup, frames: int, rounds: int, soak: int, progress: Progress) -> dict[str, Any]:
    """(b), (a), (c) alternate in `rounds` short rounds, so that other load on the machine
    hits all three alike; then the half-load run and the optional soak."""
    process = psutil.Process()
    per_round = max(5, frames // rounds)
    steps = 3 * rounds + 1 + (1 if soak else 0)
    step = 0
    full: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    engine: Engine | None = None
    tensor = np.empty(0)
    rss: dict[str, float] = {}
    for index in range(rounds):
        label = f"round {index + 1}/{rounds}:"
        step += 1
        progress.stage(step, steps, f"{label} pipeline (b)")
        full.append(measure_pipeline(setup, per_round, None, progress))
        if engine is None:
            # Measured before this process holds a second interpreter for (a) and (c).
            rss = {"rss_mb": rss_mb(process), "rss_before_start_mb": full[0]["rss_before"]}
            engine = setup.engine()
            tensor = first_tensor(engine, setup.camera)
        step += 1
        progress.stage(step, steps, f"{label} raw invoke (a)")
        raw.append(measure_invoke(engine, tensor, per_round, progress))
        step += 1
        progress.stage(step, steps, f"{label} plain loop (c)")
        plain.append(measure_sequential(engine, setup.camera, per_round, progress))
    assert engine is not None
    raw_summary = summarize_invoke(raw)
    raw_summary["bare_loop_rss_mb"] = bare_loop_rss_mb(setup.model, setup.threads, frames)

    step += 1
    progress.stage(step, steps, "half load")
    half = summarize_pipeline([measure_pipeline(setup, frames, raw_summary["fps"] / 2.0, progress)])

    soaked = None
    if soak:
        step += 1
        progress.stage(step, steps, f"soak {soak} frames")
        soaked = measure_soak(setup, soak, progress)

    measured = {
        "raw": raw_summary,
        "pipeline": {**summarize_pipeline(full), **rss},
        "plain": {"fps": rate(plain)},
        "half": half,
        "soak": soaked,
        "rounds": rounds,
    }
    return build_report(setup, engine, per_round * rounds, measured)


def measure_invoke(
    engine: Engine, tensor: np.ndarray, frames: int, progress: Progress
) -> dict[str, Any]:
    """(a) invoke() on one fixed input: the rate nothing in Python can beat."""
    batch = tensor[np.newaxis]
    for _ in range(WARMUP_FRAMES):
        engine.infer(batch)
    times = np.empty(frames, dtype=np.float64)
    started = time.perf_counter()
    for index in range(frames):
        t0 = time.perf_counter()
        engine.infer(batch)
        times[index] = time.perf_counter() - t0
        progress.tick(index + 1, frames)
    return {"frames": frames, "elapsed": time.perf_counter() - started, "times": times}


def summarize_invoke(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = np.concatenate([run["times"] for run in runs])
    return {
        "fps": rate(runs),
        "median_ms": float(np.median(times)) * 1000.0,
        "p99_ms": float(np.percentile(times, 99)) * 1000.0,
    }


def measure_pipeline(
    setup: Setup, frames: int, rate: float | None, progress: Progress
) -> dict[str, Any]:
    """(b) with rate None: the source as fast as it goes, block policy, classified/s.
    Half load with a rate: a live source paced at `rate`, drop_oldest, latencies."""
    camera = setup.camera
    paced = camera.model_copy(update={"fps": rate}) if rate else camera
    config = Config.model_validate(
        {
            "cameras": {"bench": paced.model_dump()},
            "model": {"path": setup.model, "labels": setup.labels, "num_threads": setup.threads},
            "pipeline": {"drop_policy": "auto" if rate else "block", "stable_frames": 1},
        }
    )
    # The window holds exactly the measured frames: the warm-up ones have left it.
    metrics = Metrics(window=frames)
    sink = CountingSink()
    rss_before = rss_mb(psutil.Process())
    started = time.perf_counter()
    pipeline = Pipeline(config, setup.engine, [sink], metrics, Path.cwd())
    pipeline.start()
    start_s = time.perf_counter() - started
    try:
        sink.wait_for(1, timeout=60)
        first_result_s = time.perf_counter() - started
        sink.wait_for(WARMUP_FRAMES, timeout=60)
        count0, t0 = sink.count, time.perf_counter()
        # Wake up rarely: a benchmark thread woken per frame would slow what it measures.
        while not sink.wait_for(count0 + frames, timeout=0.1):
            progress.tick(sink.count - count0, frames)
            if time.perf_counter() - t0 > 60 + frames:
                raise RuntimeError("the pipeline stopped classifying during the benchmark")
        elapsed = time.perf_counter() - t0
        classified = sink.count - count0
        progress.tick(frames, frames)
        stages = {stage: metrics.latency_values(stage) for stage in STAGES}
        dropped = metrics.counters()["dropped"]
    finally:
        pipeline.stop(5.0)
    return {
        "frames": classified,
        "elapsed": elapsed,
        "source_fps": rate,
        "start_s": start_s,
        "first_result_s": first_result_s,
        "stages": stages,
        "dropped": dropped,
        "rss_before": rss_before,
    }


def summarize_pipeline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    stages = {stage: np.concatenate([run["stages"][stage] for run in runs]) for stage in STAGES}
    # Same ring index in every stage = same frame, so per-frame differences are exact.
    overhead = (stages["capture_to_publish"] - stages["inference"]) * 1000.0
    return {
        "fps": rate(runs),
        "source_fps": runs[0]["source_fps"],
        "start_s": max(run["start_s"] for run in runs),
        "first_result_s": max(run["first_result_s"] for run in runs),
        "latency_ms": {
            stage: {
                "p50": float(np.percentile(values, 50)) * 1000.0,
                "p99": float(np.percentile(values, 99)) * 1000.0,
            }
            for stage, values in stages.items()
        },
        "overhead_ms": {
            "p50": float(np.median(overhead)),
            "p99": float(np.percentile(overhead, 99)),
        },
        "dropped": sum(run["dropped"] for run in runs),
    }


def measure_sequential(
    engine: Engine, camera: CameraConfig, frames: int, progress: Progress
) -> dict[str, Any]:
    """(c) the plain loop of tensorflow/examples' classify.py, done well: one thread."""
    source = open_source("plain", camera)
    source.open()
    preprocess = Preprocessor(
        size=engine.input_size,
        crop=camera.crop,
        roi=camera.roi,
        interpolation=camera.interpolation,
    )
    sink = CountingSink()
    try:
        for index in range(WARMUP_FRAMES + frames):
            if index == WARMUP_FRAMES:
                started = time.perf_counter()
            capture = source.read()
            if capture is None:
                raise RuntimeError("the source ended during the benchmark")
            t_capture = time.time()
            probabilities = engine.infer(engine.to_input(preprocess(capture.pixels)[np.newaxis]))
            top = top_k(probabilities[0], 3, engine.labels)
            sink.publish(Classification("plain", index, t_capture, engine.name, top, None, False))
            if index >= WARMUP_FRAMES:
                progress.tick(index - WARMUP_FRAMES + 1, frames)
        elapsed = time.perf_counter() - started
    finally:
        source.close()
    return {"frames": frames, "elapsed": elapsed}


def measure_soak(setup: Setup, frames: int, progress: Progress) -> dict[str, Any]:
    """RSS after warm-up and at the end of `frames` classified frames (block policy)."""
    config = Config.model_validate(
        {
            "cameras": {"soak": setup.camera.model_dump()},
            "pipeline": {"drop_policy": "block", "stable_frames": 1},
        }
    )
    metrics = Metrics()
    sink = CountingSink()
    pipeline = Pipeline(config, setup.engine, [sink], metrics, Path.cwd())
    process = psutil.Process()
    warm = max(WARMUP_FRAMES, int(frames * SOAK_WARMUP_FRACTION))
    pipeline.start()
    try:
        sink.wait_for(warm, timeout=120)
        rss_warm = process.memory_info().rss
        while sink.count < warm + frames:
            sink.wait_for(min(sink.count + 100, warm + frames), timeout=60)
            progress.tick(sink.count - warm, frames)
        rss_end = process.memory_info().rss
    finally:
        pipeline.stop(5.0)
    growth = (rss_end - rss_warm) / MIB
    return {
        "frames": frames,
        "rss_after_warmup_mb": rss_warm / MIB,
        "rss_end_mb": rss_end / MIB,
        "growth_mb": growth,
        "growth_mb_per_10k": growth * 10_000 / frames,
    }


def bare_loop_rss_mb(model: Path, threads: int, frames: int) -> float | None:
    """RSS of a process that only loads the runtime and the model and invokes it."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", BARE_LOOP, str(model), str(threads), str(min(frames, 50))],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return int(done.stdout.strip().splitlines()[-1]) / MIB
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None
