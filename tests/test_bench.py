"""`camclassd bench` end to end: the real CLI in a subprocess, the real model."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_bench_json_has_the_figures_and_positive_ratios() -> None:
    done = run_cli("bench", "--frames", "20", "--json", "--source", "synthetic:320x240")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {
        "model", "runtime", "threads", "source", "raw_invoke", "pipeline", "sequential",
        "half_load", "ratios", "targets", "machine", "soak",
    } <= set(report)  # fmt: skip
    assert report["source"] == {"type": "synthetic", "width": 320, "height": 240}
    ratios = report["ratios"]
    for key in ("pipeline_vs_raw", "pipeline_vs_sequential"):
        assert isinstance(ratios[key], float) and ratios[key] > 0
    for part in ("raw_invoke", "pipeline", "sequential", "half_load"):
        assert report[part]["fps"] > 0
    for stage in ("capture_to_publish", "queue", "preprocess", "inference", "postprocess"):
        stats = report["pipeline"]["latency_ms"][stage]
        assert 0 <= stats["p50"] <= stats["p99"]
    assert report["raw_invoke"]["median_ms"] > 0
    assert report["pipeline"]["rss_mb"] > 0
    assert report["half_load"]["source_fps"] > 0
    assert report["soak"] is None
    names = {target["name"] for target in report["targets"]}
    assert "pipeline / raw invoke" in names and "pipeline / plain loop" in names
    assert all(isinstance(target["met"], bool) for target in report["targets"])
    # Progress goes to stderr, never into the JSON on stdout.
    assert "half load" in done.stderr


def test_bench_human_output_and_soak() -> None:
    done = run_cli("bench", "--frames", "10", "--soak", "50", "--source", "synthetic:160x120")
    assert done.returncode == 0, done.stderr
    assert "b/a =" in done.stdout and "b/c =" in done.stdout
    assert "soak: 50 frames" in done.stdout
    assert "RSS growth MiB / 10k frames" in done.stdout
