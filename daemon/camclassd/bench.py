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
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

import numpy as np
import psutil

from camclassd import cameras
from camclassd.cameras import open_source
from camclassd.cameras.synthetic import SyntheticCamera
from camclassd.config import CameraConfig, Config
from camclassd.engine import Engine, default_model_paths
from camclassd.metrics import STAGES, Metrics
from camclassd.pipeline import Pipeline
from camclassd.preprocess import Preprocessor
from camclassd.results import Classification, top_k
from camclassd.snapshots import Snapshot
from camclassd.sources.synthetic import PATTERNS

WARMUP_FRAMES = 10
SOAK_WARMUP_FRACTION = 0.1
MIB = 2**20

# The performance targets (docs/performance.md, "Targets").
TARGET_RAW_RATIO = 0.95
TARGET_OVERHEAD_MS = MappingProxyType({"small": 1.0, "large": 2.0})  # <= 640x480, larger
TARGET_HALF_P50 = 1.3
TARGET_HALF_P99 = 2.0
TARGET_HALF_SLACK_MS = 2.0
TARGET_RSS_MIB = 25.0
TARGET_GROWTH_MIB_PER_10K = 2.0

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
    model, labels = _model_paths(args)
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


def _model_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    default_model, default_labels = default_model_paths()
    model = Path(args.model) if args.model else default_model
    labels = Path(args.labels) if args.labels else default_labels
    return model, labels


def parse_source(text: str) -> CameraConfig:
    """`TYPE:ARGUMENT` (synthetic:WxH, picamera2:N, opencv:URI, images:PATH), a video file or
    stream URL, an image file, or a directory/glob of images: see `cameras.from_cli`."""
    return cameras.from_cli(text)


@dataclass(frozen=True)
class Setup:
    """What every measurement shares: the same model, threads and source."""

    model: Path
    labels: Path
    threads: int
    camera: CameraConfig

    def engine(self) -> Engine:
        return Engine(self.model, self.labels, num_threads=self.threads)


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
            rss = {"rss_mb": _rss_mb(process), "rss_before_start_mb": full[0]["rss_before"]}
            engine = setup.engine()
            tensor = _first_tensor(engine, setup.camera)
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
        "plain": {"fps": _rate(plain)},
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
        "fps": _rate(runs),
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
    rss_before = _rss_mb(psutil.Process())
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
        "fps": _rate(runs),
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
            pixels = capture.pixels
            t_capture = time.time()
            probabilities = engine.infer(engine.to_input(preprocess(pixels)[np.newaxis]))
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


# ==== the report ==============================================================================


def build_report(
    setup: Setup, engine: Engine, frames: int, measured: dict[str, Any]
) -> dict[str, Any]:
    raw, pipeline, plain = measured["raw"], measured["pipeline"], measured["plain"]
    half, soak = measured["half"], measured["soak"]
    camera = setup.camera
    width, height = _source_size(camera, engine)
    large = width * height > 640 * 480
    invoke_ms = raw["median_ms"]
    half_total = half["latency_ms"]["capture_to_publish"]
    targets = [
        _target("pipeline / raw invoke", pipeline["fps"] / raw["fps"], ">=", TARGET_RAW_RATIO),
        _target("pipeline / plain loop", pipeline["fps"] / plain["fps"], ">", 1.0),
        _target(
            "overhead per frame ms (half load p50)",
            half["overhead_ms"]["p50"],
            "<=",
            TARGET_OVERHEAD_MS["large" if large else "small"],
        ),
        _target(
            "half-load capture_to_publish p50 ms",
            half_total["p50"],
            "<=",
            TARGET_HALF_P50 * invoke_ms + TARGET_HALF_SLACK_MS,
        ),
        _target(
            "half-load capture_to_publish p99 ms",
            half_total["p99"],
            "<=",
            TARGET_HALF_P99 * invoke_ms + TARGET_HALF_SLACK_MS,
        ),
    ]
    if raw.get("bare_loop_rss_mb") is not None:
        targets.append(
            _target(
                "pipeline RSS MiB",
                pipeline["rss_mb"],
                "<=",
                raw["bare_loop_rss_mb"] + TARGET_RSS_MIB,
            )
        )
    if soak is not None:
        targets.append(
            _target(
                "RSS growth MiB / 10k frames",
                soak["growth_mb_per_10k"],
                "<=",
                TARGET_GROWTH_MIB_PER_10K,
            )
        )
    report: dict[str, Any] = _rounded(
        {
            "model": engine.name,
            "model_path": str(setup.model),
            "runtime": engine.runtime,
            "threads": setup.threads,
            "source": {"type": camera.type, "width": width, "height": height},
            "frames": frames,
            "rounds": measured["rounds"],
            "source_buffers_mb": _source_buffers_mb(camera),
            "machine": {
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "python": platform.python_version(),
                # Other work on the machine skews every ratio: shown so a reader can tell.
                "load_average": list(os.getloadavg()),
            },
            "raw_invoke": raw,
            "pipeline": pipeline,
            "sequential": plain,
            "half_load": half,
            "soak": soak,
            "ratios": {
                "pipeline_vs_raw": pipeline["fps"] / raw["fps"],
                "pipeline_vs_sequential": pipeline["fps"] / plain["fps"],
            },
            "targets": targets,
        }
    )
    return report


def format_report(report: dict[str, Any]) -> str:
    raw, pipe, plain, half = (
        report["raw_invoke"],
        report["pipeline"],
        report["sequential"],
        report["half_load"],
    )
    source = report["source"]
    load = ", ".join(f"{x:.2f}" for x in report["machine"]["load_average"])
    lines = [
        f"camclassd bench: {report['model']} ({report['runtime']}), {report['threads']} "
        f"thread(s), source {source['type']} {source['width']}x{source['height']}, "
        f"{report['frames']} frames per measurement in {report['rounds']} alternating rounds; "
        f"{report['machine']['cpus']} CPUs, "
        f"load average {load}",
        "",
        f"(a) raw invoke()      {raw['fps']:8.1f} fps   median {raw['median_ms']:.2f} ms, "
        f"p99 {raw['p99_ms']:.2f} ms",
        f"(b) pipeline          {pipe['fps']:8.1f} fps   b/a = "
        f"{report['ratios']['pipeline_vs_raw']:.3f}",
        f"(c) plain loop        {plain['fps']:8.1f} fps   b/c = "
        f"{report['ratios']['pipeline_vs_sequential']:.3f}",
        "",
        "pipeline per-stage latency (ms)      p50      p99",
    ]
    for stage, stats in pipe["latency_ms"].items():
        lines.append(f"  {stage:<30} {stats['p50']:8.3f} {stats['p99']:8.3f}")
    lines += [
        "",
        f"half load ({half['source_fps']:.1f} fps in): capture_to_publish p50 "
        f"{half['latency_ms']['capture_to_publish']['p50']:.2f} ms, p99 "
        f"{half['latency_ms']['capture_to_publish']['p99']:.2f} ms; median invoke "
        f"{raw['median_ms']:.2f} ms; overhead (all but invoke) p50 "
        f"{half['overhead_ms']['p50']:.3f} ms, p99 {half['overhead_ms']['p99']:.3f} ms",
        f"start: pipeline.start() {pipe['start_s']:.2f} s, first result "
        f"{pipe['first_result_s']:.2f} s",
        f"RSS: pipeline {pipe['rss_mb']:.1f} MiB (imports alone {pipe['rss_before_start_mb']:.1f}"
        f" MiB, source frames {report['source_buffers_mb'] or 0:.1f} MiB), bare interpreter loop "
        + (
            f"{raw['bare_loop_rss_mb']:.1f} MiB"
            if raw.get("bare_loop_rss_mb") is not None
            else "n/a"
        ),
    ]
    if report["soak"] is not None:
        soak = report["soak"]
        lines.append(
            f"soak: {soak['frames']} frames, RSS {soak['rss_after_warmup_mb']:.1f} -> "
            f"{soak['rss_end_mb']:.1f} MiB ({soak['growth_mb_per_10k']:+.2f} MiB / 10k frames)"
        )
    lines += ["", "targets (docs/performance.md)"]
    for target in report["targets"]:
        verdict = "met" if target["met"] else "NOT MET"
        lines.append(
            f"  {target['name']:<40} {target['value']:10.3f} {target['op']} "
            f"{target['limit']:<10.3f} {verdict}"
        )
    return "\n".join(lines)


# ==== helpers =================================================================================


class CountingSink:
    """Counts results and lets the benchmark wait for a count; keeps nothing."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0

    def publish(self, result: Classification) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def snapshot(self, snapshot: Snapshot) -> None:
        """Snapshots are not results: not counted."""

    def close(self) -> None:
        """Nothing to release."""

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


@dataclass
class Progress:
    """Progress on stderr: a redrawn bar on a terminal, one line per stage otherwise."""

    stream: TextIO
    enabled: bool = True
    _label: str = ""
    _drawn: float = 0.0

    @property
    def _redraw(self) -> bool:
        return self.enabled and self.stream.isatty()

    def stage(self, index: int, total: int, label: str) -> None:
        self._label = f"[{index}/{total}] {label}"
        self._drawn = 0.0
        if self.enabled and not self._redraw:
            self.stream.write(f"camclassd bench: {self._label}\n")
            self.stream.flush()

    def tick(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self._redraw or (now - self._drawn < 0.1 and done < total):
            return
        self._drawn = now
        width = 30
        filled = min(width, width * done // max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self._label:<28} [{bar}] {done}/{total}\x1b[K")
        self.stream.flush()

    def done(self) -> None:
        if self._redraw:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _read_one_frame(name: str, camera: CameraConfig) -> np.ndarray | None:
    """Open the camera's source, read one frame (None at end of stream) and close it."""
    source = open_source(name, camera)
    source.open()
    try:
        capture = source.read()
        return None if capture is None else capture.pixels
    finally:
        source.close()


def _first_tensor(engine: Engine, camera: CameraConfig) -> np.ndarray:
    pixels = _read_one_frame("fixed", camera)
    if pixels is None:
        raise RuntimeError("the source gave no frame")
    preprocess = Preprocessor(size=engine.input_size)
    return np.ascontiguousarray(engine.to_input(preprocess(pixels)))


def _source_size(camera: CameraConfig, engine: Engine) -> tuple[int, int]:
    if isinstance(camera, SyntheticCamera):
        return camera.width, camera.height
    pixels = _read_one_frame("size", camera)
    return (pixels.shape[1], pixels.shape[0]) if pixels is not None else engine.input_size


def _source_buffers_mb(camera: CameraConfig) -> float | None:
    """Memory the synthetic source keeps for its pre-made frames (part of the pipeline RSS)."""
    if isinstance(camera, SyntheticCamera):
        return PATTERNS * camera.width * camera.height * 3 / MIB
    return None


def _target(name: str, value: float, op: str, limit: float) -> dict[str, Any]:
    met = value > limit if op == ">" else value >= limit if op == ">=" else value <= limit
    return {"name": name, "value": value, "op": op, "limit": limit, "met": bool(met)}


def _rate(runs: list[dict[str, Any]]) -> float:
    """Frames per second over several timed runs."""
    return float(sum(run["frames"] for run in runs) / sum(run["elapsed"] for run in runs))


def _rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / MIB


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value
