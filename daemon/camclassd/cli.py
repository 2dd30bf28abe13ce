"""Command line: `camclassd SUBCOMMAND ...`.

Subcommand modules are imported only when used, so `check-config` does not pay for loading
OpenCV and LiteRT.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from camclassd import __version__
from camclassd.constants import CROPS, DEFAULT_CONFIG_PATH, DELEGATES
from camclassd.errors import EXIT_FAILURE, CamclassdError
from camclassd.training import cli_args as training_cli

# subcommand -> "module:function"; each function takes the parsed args and returns an exit code.
_HANDLERS = MappingProxyType(
    {
        "classify": "camclassd.classify:main",
        "run": "camclassd.daemon:main",
        "bench": "camclassd.bench:main",
        "check-config": "camclassd.configfile:check_config_main",
        "default-config": "camclassd.configfile:default_config_main",
        "watch": "camclassd.mqtt.watch:main",
        **training_cli.HANDLERS,
    }
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camclassd",
        description="Streaming camera classification daemon: TFLite top-k results over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"camclassd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # --- classify (engine) ---
    p = sub.add_parser("classify", help="classify image files and print the top-k")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--model", type=Path, default=None, help="a .tflite image classifier")
    p.add_argument("--labels", type=Path, default=None, help="labels file, one label a line")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads (default 2)")
    # No 'roi' here: there is no option to give the region.
    p.add_argument("--crop", choices=[c for c in CROPS if c != "roi"], default="center")
    p.add_argument("--delegate", choices=DELEGATES, default="none")
    p.add_argument("--json", action="store_true", help="one JSON object per image")

    # --- run (daemon) ---
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="TOML config file")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    p.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="stop once at least N frames were classified (checked twice a second)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set mqtt.port=1884 (repeatable)",
    )

    # --- bench (pipeline) ---
    p = sub.add_parser("bench", help="measure invoke(), the pipeline and a sequential loop")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--labels", type=Path, default=None)
    p.add_argument(
        "--threads",
        default="1",
        help="interpreter threads (default 1), or 'auto': sweep 1..cores and show what "
        "num_threads = 'auto' picks",
    )
    p.add_argument(
        "--gate",
        action="store_true",
        help="the scene-change gate against classifying every frame, on clips of real photos "
        "(needs scikit-image)",
    )
    p.add_argument(
        "--clip-seconds",
        type=float,
        default=None,
        help="with --gate: the length of every clip (default: 60 s still, 30 s change, ...)",
    )
    p.add_argument(
        "--source",
        default="synthetic:640x480",
        help="synthetic:WxH, picamera2:N, a video file or stream URL, or images (file, dir, glob)",
    )
    p.add_argument("--frames", type=int, default=300, help="frames per measurement")
    p.add_argument(
        "--soak", type=int, default=0, help="also check RSS growth over N frames (0: skip)"
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="alternate (b), (a), (c) this many times (default 3)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="one JSON object for machines")

    # --- check-config / default-config (config) ---
    p = sub.add_parser("check-config", help="validate a config file without starting")
    p.add_argument("file", type=Path, nargs="?", default=DEFAULT_CONFIG_PATH)
    sub.add_parser("default-config", help="print the fully commented default config")

    # --- watch (mqtt) ---
    p = sub.add_parser("watch", help="show live results and metrics from the broker")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=None, help="default 1883, or 8883 with TLS")
    p.add_argument("--prefix", default="camclassd")
    p.add_argument("--device", default="+", help="device id (default: all devices)")
    p.add_argument("--username", default="")
    p.add_argument("--password-file", type=Path, default=None)
    p.add_argument("--tls", action="store_true", help="connect with TLS (the system's CAs)")
    p.add_argument("--ca-file", type=Path, default=None, help="CA certificate; implies --tls")
    p.add_argument("--json", action="store_true", help="JSON lines (default when piped)")
    p.add_argument("--count", type=int, default=None, help="exit after N messages")

    # --- train, evaluate, collect, dataset, model (training) ---
    training_cli.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, function_name = _HANDLERS[args.command].split(":")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
        return int(handler(args))
    except CamclassdError as error:
        print(f"camclassd {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE
