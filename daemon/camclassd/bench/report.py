"""The report of `camclassd bench`: the figures, the targets met or not, the text form."""

from __future__ import annotations

import os
import platform
from types import MappingProxyType
from typing import Any

from camclassd.bench.common import MIB, Setup, read_one_frame
from camclassd.cameras.synthetic import SyntheticCamera
from camclassd.config import CameraConfig
from camclassd.engine import Engine
from camclassd.sources.synthetic import PATTERNS

# The targets (docs/performance.md).
TARGET_RAW_RATIO = 0.95
TARGET_OVERHEAD_MS = MappingProxyType({"small": 1.0, "large": 2.0})  # <= 640x480, larger
TARGET_HALF_P50 = 1.3
TARGET_HALF_P99 = 2.0
TARGET_HALF_SLACK_MS = 2.0
TARGET_RSS_MIB = 25.0
TARGET_GROWTH_MIB_PER_10K = 2.0


def build_report(
    setup: Setup, engine: Engine, frames: int, measured: dict[str, Any]
) -> dict[str, Any]:
    raw, pipeline, plain = measured["raw"], measured["pipeline"], measured["plain"]
    half, soak = measured["half"], measured["soak"]
    camera = setup.camera
    width, height = source_size(camera, engine)
    large = width * height > 640 * 480
    invoke_ms = raw["median_ms"]
    half_total = half["latency_ms"]["capture_to_publish"]
    targets = [
        target("pipeline / raw invoke", pipeline["fps"] / raw["fps"], ">=", TARGET_RAW_RATIO),
        target("pipeline / plain loop", pipeline["fps"] / plain["fps"], ">", 1.0),
        target(
            "overhead per frame ms (half load p50)",
            half["overhead_ms"]["p50"],
            "<=",
            TARGET_OVERHEAD_MS["large" if large else "small"],
        ),
        target(
            "half-load capture_to_publish p50 ms",
            half_total["p50"],
            "<=",
            TARGET_HALF_P50 * invoke_ms + TARGET_HALF_SLACK_MS,
        ),
        target(
            "half-load capture_to_publish p99 ms",
            half_total["p99"],
            "<=",
            TARGET_HALF_P99 * invoke_ms + TARGET_HALF_SLACK_MS,
        ),
    ]
    if raw.get("bare_loop_rss_mb") is not None:
        targets.append(
            target(
                "pipeline RSS MiB",
                pipeline["rss_mb"],
                "<=",
                raw["bare_loop_rss_mb"] + TARGET_RSS_MIB,
            )
        )
    if soak is not None:
        targets.append(
            target(
                "RSS growth MiB / 10k frames",
                soak["growth_mb_per_10k"],
                "<=",
                TARGET_GROWTH_MIB_PER_10K,
            )
        )
    report: dict[str, Any] = rounded(
        {
            "model": engine.name,
            "model_path": str(setup.model),
            "runtime": engine.runtime,
            "threads": setup.threads,
            "source": {"type": camera.type, "width": width, "height": height},
            "frames": frames,
            "rounds": measured["rounds"],
            "source_buffers_mb": source_buffers_mb(camera),
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
    lines += ["", "targets", *target_lines(report["targets"], name=40, value=10, limit=10)]
    return "\n".join(lines)


def target_lines(targets: list[dict[str, Any]], *, name: int, value: int, limit: int) -> list[str]:
    """One line per target: name, value, comparison, limit, met / NOT MET."""
    return [
        f"  {t['name']:<{name}} {t['value']:{value}.3f} {t['op']} {t['limit']:<{limit}.3f} "
        + ("met" if t["met"] else "NOT MET")
        for t in targets
    ]


def source_size(camera: CameraConfig, engine: Engine) -> tuple[int, int]:
    if isinstance(camera, SyntheticCamera):
        return camera.width, camera.height
    pixels = read_one_frame("size", camera)
    return (pixels.shape[1], pixels.shape[0]) if pixels is not None else engine.input_size


def source_buffers_mb(camera: CameraConfig) -> float | None:
    """Memory the synthetic source keeps for its pre-made frames (part of the pipeline RSS)."""
    if isinstance(camera, SyntheticCamera):
        return PATTERNS * camera.width * camera.height * 3 / MIB
    return None


def target(name: str, value: float, op: str, limit: float) -> dict[str, Any]:
    met = value > limit if op == ">" else value >= limit if op == ">=" else value <= limit
    return {"name": name, "value": value, "op": op, "limit": limit, "met": bool(met)}


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value
