"""`camclassd bench`: what the daemon costs and gains, measured side by side in one run.

- default (measure.py): the raw invoke() rate, the pipeline and a plain loop at one thread
  count, half-load latency, RSS and the optional soak;
- `--threads auto` (threads.py): that measurement for every thread count, and what
  `num_threads = "auto"` picks from the sweep;
- `--gate` (gate.py): the scene-change gate against classifying every frame, on clips made
  of real photos (clips.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from camclassd.bench import gate, threads
from camclassd.bench.common import Progress, Setup
from camclassd.bench.measure import main as measure_main
from camclassd.bench.measure import model_paths, parse_source
from camclassd.bench.report import rounded
from camclassd.engine import Engine
from camclassd.errors import UsageError
from camclassd.gate_config import GateConfig
from camclassd.threads import available_cores, plan_threads


def main(args: argparse.Namespace) -> int:
    threads = str(getattr(args, "threads", "1"))
    if getattr(args, "gate", False):
        return gate_main(args, threads)
    if threads == "auto":
        return sweep_main(args)
    if not threads.isdigit() or int(threads) < 1:
        raise UsageError(f"--threads {threads!r}: give a whole number >= 1 or 'auto'")
    args.threads = int(threads)
    return measure_main(args)


def sweep_main(args: argparse.Namespace) -> int:
    model, labels = model_paths(args)
    frames = max(int(args.frames), 5)
    rounds = max(1, min(int(getattr(args, "rounds", 3) or 1), frames // 5))
    progress = Progress(sys.stderr, enabled=not getattr(args, "no_progress", False))
    setup = Setup(model, labels, 1, parse_source(args.source))
    report = threads.sweep(setup, frames, rounds, progress)
    progress.done()
    print(json.dumps(report, indent=2) if args.json else threads.format_sweep(report))
    return 0


def gate_main(args: argparse.Namespace, threads: str) -> int:
    model, labels = model_paths(args)
    # 'auto': the clips are frames in memory, a source that costs no core.
    auto = plan_threads(available_cores(), [])
    count = auto if threads == "auto" else int(threads) if threads.isdigit() else 0
    if count < 1:
        raise UsageError(f"--threads {threads!r}: give a whole number >= 1 or 'auto'")
    engine = Engine(model, labels, num_threads=count)
    quiet = getattr(args, "no_progress", False)

    def progress(text: str) -> None:
        if not quiet:
            print(f"camclassd bench --gate: {text}", file=sys.stderr, flush=True)

    seconds = getattr(args, "clip_seconds", None)
    report = gate.measure(engine, GateConfig(mode="motion"), seconds, progress)
    report.update(model=engine.name, runtime=engine.runtime, threads=count)
    report["targets"] = gate.targets(report)
    report = rounded(report)
    print(json.dumps(report, indent=2) if args.json else gate.format_gate(report))
    return 0
