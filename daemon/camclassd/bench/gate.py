"""`camclassd bench --gate`: the scene-change gate against classifying every frame.

It runs the gate and a real Engine directly, frame by frame, over clips made of real photos
(camclassd.bench.clips), not the whole pipeline: a loop of stage -> invoke -> top-k ->
LabelTracker at simulated time (frame index / fps), so it measures the work the gate saves,
not the pacing. Each clip runs twice in a row, ungated then gated, in one process; the clip's
frames are rendered and resized to the model input before either run, so both runs' CPU is
that of the gate, the invokes and the results only (capture and resize cost both runs alike;
their cost per frame is shown apart).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import psutil

from camclassd.bench import clips
from camclassd.engine import Engine
from camclassd.gate import SceneGate
from camclassd.gate_config import GateConfig
from camclassd.preprocess import Preprocessor
from camclassd.results import LabelTracker, top_k
from camclassd.stage import PassThrough, Stage, StageInput

MIB = 2**20
# The targets; printed next to what was measured.
TARGET_STILL_SHARE = 0.05
TARGET_STILL_CPU = 0.15
TARGET_DELAY_FRAMES = 2
TARGET_STEP_CLASSIFICATIONS = 3
TARGET_COST_MS = (("640x480", 0.3), ("1920x1080", 0.5))
COST_FRAMES = 1000
RSS_FRAMES = 5000


@dataclass(frozen=True)
class Tracking:
    """The results settings the runs share (the pipeline's defaults)."""

    threshold_high: float = 0.5
    threshold_low: float = 0.3
    stable_frames: int = 3

    def tracker(self) -> LabelTracker:
        return LabelTracker(self.threshold_high, self.threshold_low, self.stable_frames)


@dataclass
class Run:
    """One pass over a clip: what was classified, the stable label after each frame, CPU."""

    admitted: list[int]
    reasons: list[str]
    stable: list[str | None]
    cpu_s: float
    wall_s: float


def render(clip: clips.Clip, size: tuple[int, int]) -> tuple[list[np.ndarray], float]:
    """The clip's frames resized to the model input, and the resize cost per frame (ms)."""
    preprocess = Preprocessor(size=size)
    frames, spent = [], 0.0
    for frame in clip:
        t0 = time.perf_counter()
        frames.append(preprocess(frame))
        spent += time.perf_counter() - t0
    return frames, spent / max(1, clip.frames) * 1000.0


def run_clip(
    frames: Sequence[np.ndarray],
    fps: float,
    stage: Stage,
    engine: Engine,
    tracking: Tracking,
) -> Run:
    """stage -> invoke -> top-k -> LabelTracker for every frame, at simulated time."""
    tracker = tracking.tracker()
    process = psutil.Process()
    admitted: list[int] = []
    reasons: list[str] = []
    stable: list[str | None] = []
    cpu0, wall0 = _cpu_s(process), time.perf_counter()
    for index, pixels in enumerate(frames):
        item = StageInput("bench", pixels, None, None, index / fps, tracker.pending)
        if stage.admit(item):
            admitted.append(index)
            reasons.append(str(getattr(stage, "last_reason", None) or "always"))
            probabilities = engine.infer(engine.to_input(pixels)[np.newaxis])
            tracker.update(top_k(probabilities[0], 3, engine.labels))
        stable.append(tracker.stable)
    return Run(admitted, reasons, stable, _cpu_s(process) - cpu0, time.perf_counter() - wall0)


def compare(clip: clips.Clip, ungated: Run, gated: Run) -> dict[str, Any]:
    """Invoke share, CPU per minute of video, detection delays, stable labels, step counts."""
    minutes = clip.frames / clip.fps / 60.0
    delays = [_delay(gated.admitted, change) for change in clip.changes]
    # The stable label once each change has settled: at the last frame before the next one.
    ends = [*(change - 1 for change in clip.changes[1:]), clip.frames - 1]
    settled = [
        {"frame": end, "ungated": ungated.stable[end], "gated": gated.stable[end]}
        for end in ([clip.changes[0] - 1] if clip.changes else []) + ends
    ]
    report: dict[str, Any] = {
        "clip": clip.name,
        "frames": clip.frames,
        "fps": clip.fps,
        "invokes": {"ungated": len(ungated.admitted), "gated": len(gated.admitted)},
        "invoke_share": len(gated.admitted) / clip.frames,
        "cpu_s_per_min": {"ungated": ungated.cpu_s / minutes, "gated": gated.cpu_s / minutes},
        "cpu_ratio": gated.cpu_s / ungated.cpu_s if ungated.cpu_s > 0 else None,
        "reasons": {r: gated.reasons.count(r) for r in sorted(set(gated.reasons))},
        "changes": list(clip.changes),
        "delay_frames": delays,
        "settled_labels": settled,
        "labels_equal": all(s["ungated"] == s["gated"] for s in settled),
    }
    if clip.step is not None:
        after = [
            (i, r) for i, r in zip(gated.admitted, gated.reasons, strict=True) if i >= clip.step
        ]
        report["step"] = {
            "frame": clip.step,
            "classified_after": len([1 for _, r in after if r != "refresh"]),
            "refreshes_after": len([1 for _, r in after if r == "refresh"]),
            "admitted": [f"{i}:{r}" for i, r in after],
        }
    return report


def gate_cost(settings: GateConfig) -> dict[str, Any]:
    """p50/p99 ms of SceneGate.admit() per frame on real luma planes, and RSS growth."""
    base = clips.noise_only(seconds=COST_FRAMES / 10.0)
    change = clips.change(seconds=COST_FRAMES / 10.0)
    out: dict[str, Any] = {}
    for label, target in TARGET_COST_MS:
        width, height = (int(v) for v in label.split("x"))
        planes = [
            _luma(frame, width, height)
            for frame in (base.render(0), base.render(1), change.render(change.changes[0]))
        ]
        side = min(width, height)
        crop = ((width - side) // 2, 0, side, side)
        gate = SceneGate(settings)
        pixels = np.zeros((224, 224, 3), np.uint8)
        times = np.empty(COST_FRAMES)
        for index in range(COST_FRAMES):
            # Mostly still frames, a change every 50th: both the skip and the admit path.
            plane = planes[2] if index % 50 == 49 else planes[index % 2]
            item = StageInput("cost", pixels, plane, crop, index / 10.0, False)
            t0 = time.perf_counter()
            gate.admit(item)
            times[index] = time.perf_counter() - t0
        out[label] = _cost_entry(times, target)
    real = change.render(change.changes[0])
    model_view = cv2.resize(real[:, 80:560], (224, 224), interpolation=cv2.INTER_LINEAR)
    out["model-size RGB"] = _cost_entry(_time_pixels(settings, model_view), None)
    out["rss"] = _rss_growth(settings, planes=[_luma(real, 640, 480)])
    return out


def _time_pixels(settings: GateConfig, pixels: np.ndarray) -> np.ndarray:
    gate = SceneGate(settings)
    times = np.empty(COST_FRAMES)
    for index in range(COST_FRAMES):
        item = StageInput("cost", pixels, None, None, index / 10.0, False)
        t0 = time.perf_counter()
        gate.admit(item)
        times[index] = time.perf_counter() - t0
    return times


def _rss_growth(settings: GateConfig, planes: list[np.ndarray]) -> dict[str, float]:
    process = psutil.Process()
    gate = SceneGate(settings)
    pixels = np.zeros((224, 224, 3), np.uint8)
    plane = planes[0]
    crop = (80, 0, 480, 480)
    warm = RSS_FRAMES // 10
    rss0 = 0
    for index in range(warm + RSS_FRAMES):
        if index == warm:
            rss0 = process.memory_info().rss
        gate.admit(StageInput("rss", pixels, plane, crop, index / 10.0, index % 7 == 0))
    growth = (process.memory_info().rss - rss0) / MIB
    return {"frames": RSS_FRAMES, "growth_mb": growth}


def _cost_entry(times: np.ndarray, target: float | None) -> dict[str, Any]:
    p50 = float(np.percentile(times, 50)) * 1000.0
    entry: dict[str, Any] = {"p50_ms": p50, "p99_ms": float(np.percentile(times, 99)) * 1000.0}
    if target is not None:
        entry.update(target_ms=target, met=p50 <= target)
    return entry


def _luma(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """The Y plane a camera would give at width x height (BT.601, as picamera2's YUV420)."""
    sized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(cv2.cvtColor(sized, cv2.COLOR_RGB2YUV)[:, :, 0])


def _delay(admitted: Sequence[int], change: int) -> int | None:
    later = [index - change for index in admitted if index >= change]
    return min(later) if later else None


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(
    engine: Engine,
    settings: GateConfig,
    seconds: float | None,
    progress: Callable[[str], None],
    tracking: Tracking | None = None,
) -> dict[str, Any]:
    """Every clip ungated then gated, then the gate's own cost; a report dict."""
    tracking = tracking or Tracking()
    makers = (clips.still, clips.change, clips.lighting_step, clips.noise_only)
    results = []
    for index, make in enumerate(makers, start=1):
        clip = make() if seconds is None else make(seconds=seconds)
        progress(f"[{index}/{len(makers) + 1}] {clip.name}: render, ungated, gated")
        frames, resize_ms = render(clip, engine.input_size)
        ungated = run_clip(frames, clip.fps, PassThrough(), engine, tracking)
        gated = run_clip(frames, clip.fps, SceneGate(settings), engine, tracking)
        results.append({**compare(clip, ungated, gated), "resize_ms": resize_ms})
        del frames
    progress(f"[{len(makers) + 1}/{len(makers) + 1}] gate cost per frame and RSS")
    return {
        "settings": settings.model_dump(),
        "tracking": {
            "threshold_high": tracking.threshold_high,
            "threshold_low": tracking.threshold_low,
            "stable_frames": tracking.stable_frames,
        },
        "clips": results,
        "cost": gate_cost(settings),
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against what was measured."""
    by_name = {clip["clip"]: clip for clip in report["clips"]}
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, op: str, limit: float) -> None:
        met = value is not None and (value <= limit if op == "<=" else value >= limit)
        out.append({"name": name, "value": value, "op": op, "limit": limit, "met": bool(met)})

    still = by_name["still"]
    add("still: share of frames classified", still["invoke_share"], "<=", TARGET_STILL_SHARE)
    add("still: CPU gated / ungated", still["cpu_ratio"], "<=", TARGET_STILL_CPU)
    change = by_name["change"]
    delays = change["delay_frames"]
    worst = None if any(d is None for d in delays) else max(delays, default=0)
    add("change: worst detection delay (frames)", worst, "<=", TARGET_DELAY_FRAMES)
    add("change: settled labels equal ungated", float(change["labels_equal"]), ">=", 1.0)
    step = by_name["lighting step"]["step"]
    add(
        "lighting step: classifications after it",
        step["classified_after"],
        "<=",
        TARGET_STEP_CLASSIFICATIONS,
    )
    for label, target in TARGET_COST_MS:
        add(f"gate p50 ms per frame at {label}", report["cost"][label]["p50_ms"], "<=", target)
    add("gate RSS growth MiB / 5000 frames", report["cost"]["rss"]["growth_mb"], "<=", 0.5)
    return out


def format_gate(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"camclassd bench --gate: {report['model']} ({report['runtime']}), "
        f"{report['threads']} thread(s); gate threshold {settings['threshold']}, min_area "
        f"{settings['min_area']}, recalibrate {settings['recalibrate']}, refresh_s "
        f"{settings['refresh_s']:g}, blur {settings['blur']}, view {settings['view_pixels']} px",
        "The gate and a real Engine run frame by frame over clips of real photos at simulated "
        "time (not the",
        "whole pipeline); ungated then gated on the same frames, in one process. CPU: the gate, "
        "invoke() and",
        "the results only (capture and resize cost both runs alike: see 'resize ms').",
        "",
        f"{'clip':<14} {'frames':>6} {'invokes ungated':>15} {'gated':>6} {'share':>6} "
        f"{'CPU s/min ungated':>17} {'gated':>6} {'ratio':>6} {'resize ms':>9}",
    ]
    for clip in report["clips"]:
        cpu = clip["cpu_s_per_min"]
        ratio = clip["cpu_ratio"]
        lines.append(
            f"{clip['clip']:<14} {clip['frames']:>6} {clip['invokes']['ungated']:>15} "
            f"{clip['invokes']['gated']:>6} {clip['invoke_share']:>6.3f} "
            f"{cpu['ungated']:>17.2f} {cpu['gated']:>6.2f} "
            f"{(ratio if ratio is not None else float('nan')):>6.3f} {clip['resize_ms']:>9.2f}"
        )
    lines.append("")
    for clip in report["clips"]:
        reasons = ", ".join(f"{k} {v}" for k, v in clip["reasons"].items())
        lines.append(f"{clip['clip']}: gated classifications by reason: {reasons}")
        if clip["changes"]:
            lines.append(
                f"  changes at frames {clip['changes']}: classified after "
                f"{clip['delay_frames']} frame(s); stable labels when settled (ungated / gated): "
                + "; ".join(f"{s['ungated']} / {s['gated']}" for s in clip["settled_labels"])
            )
        if "step" in clip:
            step = clip["step"]
            lines.append(
                f"  step at frame {step['frame']}: {step['classified_after']} classification(s) "
                f"after it, then only refreshes ({step['refreshes_after']}): "
                + ", ".join(step["admitted"])
            )
    cost = report["cost"]
    lines += ["", "gate cost per frame (SceneGate.admit)        p50 ms    p99 ms"]
    for label in (*(label for label, _ in TARGET_COST_MS), "model-size RGB"):
        source = "luma plane, centre crop" if "x" in label else "no luma: RGB -> grey"
        lines.append(
            f"  {label:<14} {source:<24} {cost[label]['p50_ms']:8.3f}  {cost[label]['p99_ms']:8.3f}"
        )
    lines.append(
        f"  RSS growth over {cost['rss']['frames']} frames: {cost['rss']['growth_mb']:+.2f} MiB"
    )
    lines += ["", "targets"]
    for target in report["targets"]:
        value = target["value"]
        shown = f"{value:10.3f}" if value is not None else f"{'missed':>10}"
        verdict = "met" if target["met"] else "NOT MET"
        lines.append(
            f"  {target['name']:<45} {shown} {target['op']} {target['limit']:<6g} {verdict}"
        )
    return "\n".join(lines)
