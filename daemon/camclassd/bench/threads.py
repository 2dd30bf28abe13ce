"""`camclassd bench --threads auto`: the thread sweep `num_threads = "auto"` chooses from.

For every thread count from 1 to the cores (at most MAX_AUTO_THREADS), in alternating rounds
so that other load hits them alike: the raw invoke() rate, the pipeline (source faster than
the model, block policy) and the plain sequential loop, all on the same source. Then what
`plan_threads` picks for this machine and source, and the targets: the pipeline at the auto
count >= 0.95 x the best fixed count's, and above the plain loop at every count.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from camclassd.bench.common import Progress, Setup, first_tensor, rate
from camclassd.bench.measure import measure_invoke, measure_pipeline, measure_sequential
from camclassd.bench.report import rounded, target_lines
from camclassd.cameras import capture_cores
from camclassd.threads import MAX_AUTO_THREADS, available_cores, plan_threads

TARGET_AUTO_VS_BEST = 0.95


def sweep(setup: Setup, frames: int, rounds: int, progress: Progress) -> dict[str, Any]:
    cores = available_cores()
    counts = list(range(1, min(cores, MAX_AUTO_THREADS) + 1))
    auto = plan_threads(cores, [capture_cores(setup.camera)])
    per_round = max(5, frames // rounds)
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        n: {"raw": [], "pipeline": [], "plain": []} for n in counts
    }
    engines = {n: replace(setup, threads=n).engine() for n in counts}
    tensor = first_tensor(engines[counts[0]], setup.camera)
    steps, step = rounds * len(counts) * 3, 0
    for index in range(rounds):
        for n in counts:
            label = f"round {index + 1}/{rounds}, {n} thread(s):"
            step += 1
            progress.stage(step, steps, f"{label} pipeline")
            runs[n]["pipeline"].append(
                measure_pipeline(replace(setup, threads=n), per_round, None, progress)
            )
            step += 1
            progress.stage(step, steps, f"{label} raw invoke")
            runs[n]["raw"].append(measure_invoke(engines[n], tensor, per_round, progress))
            step += 1
            progress.stage(step, steps, f"{label} plain loop")
            runs[n]["plain"].append(
                measure_sequential(engines[n], setup.camera, per_round, progress)
            )
    table = [
        {
            "threads": n,
            "raw_fps": rate(runs[n]["raw"]),
            "pipeline_fps": rate(runs[n]["pipeline"]),
            "plain_fps": rate(runs[n]["plain"]),
        }
        for n in counts
    ]
    by_count = {row["threads"]: row for row in table}
    best = max(table, key=lambda row: row["pipeline_fps"])
    chosen = by_count.get(auto, best)
    best_plain = max(row["plain_fps"] for row in table)
    report: dict[str, Any] = rounded(
        {
            "cores": cores,
            "source": setup.camera.type,
            "source_cost_cores": capture_cores(setup.camera),
            "frames_per_measurement": per_round * rounds,
            "rounds": rounds,
            "sweep": table,
            "auto": auto,
            "best_fixed": best["threads"],
            "targets": [
                {
                    "name": "auto pipeline / best fixed pipeline",
                    "value": chosen["pipeline_fps"] / best["pipeline_fps"],
                    "op": ">=",
                    "limit": TARGET_AUTO_VS_BEST,
                    "met": chosen["pipeline_fps"] >= TARGET_AUTO_VS_BEST * best["pipeline_fps"],
                },
                {
                    "name": "auto pipeline / best plain loop (any count)",
                    "value": chosen["pipeline_fps"] / best_plain,
                    "op": ">",
                    "limit": 1.0,
                    "met": chosen["pipeline_fps"] > best_plain,
                },
            ],
        }
    )
    return report


def format_sweep(report: dict[str, Any]) -> str:
    lines = [
        f"camclassd bench --threads auto: {report['cores']} cores, source {report['source']} "
        f"(takes ~{report['source_cost_cores']:g} core), {report['frames_per_measurement']} "
        f"frames per measurement in {report['rounds']} alternating rounds",
        "",
        "threads   raw invoke fps   pipeline fps   plain loop fps   pipeline/raw   pipeline/plain",
    ]
    for row in report["sweep"]:
        mark = "  <- auto" if row["threads"] == report["auto"] else ""
        lines.append(
            f"{row['threads']:>7}   {row['raw_fps']:>14.1f}   {row['pipeline_fps']:>12.1f}   "
            f"{row['plain_fps']:>14.1f}   {row['pipeline_fps'] / row['raw_fps']:>12.3f}   "
            f"{row['pipeline_fps'] / row['plain_fps']:>14.3f}{mark}"
        )
    lines += [
        "",
        f"auto chose {report['auto']} thread(s); the best fixed count here: {report['best_fixed']}",
        "",
        "targets",
        *target_lines(report["targets"], name=45, value=8, limit=6),
    ]
    return "\n".join(lines)
