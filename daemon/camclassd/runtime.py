"""Which TFLite runtime runs the model (LiteRT or tflite-runtime), its delegates, and its
native log lines kept out of a one-line CLI error.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from camclassd.errors import ModelError

RUNTIME_ENV = "CAMCLASSD_RUNTIME"
RUNTIMES = ("ai-edge-litert", "tflite-runtime")
_RUNTIME_MODULES = MappingProxyType(
    {"ai-edge-litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}
)
EDGETPU_LIBRARY = "libedgetpu.so.1"


@dataclass(frozen=True, slots=True)
class Runtime:
    name: str
    version: str
    interpreter: Callable[..., Any]
    load_delegate: Callable[..., Any]


def load_runtime() -> Runtime:
    """Import the TFLite runtime lazily: commands that do not classify never pay for it."""
    forced = os.environ.get(RUNTIME_ENV, "").strip().lower()
    if forced in ("", "auto"):
        candidates: tuple[str, ...] = RUNTIMES
    elif forced in RUNTIMES:
        candidates = (forced,)
    else:
        raise ModelError(
            f"{RUNTIME_ENV}={forced!r} is not a known runtime; use one of "
            f"{', '.join(RUNTIMES)} or leave it unset"
        )
    for name in candidates:
        try:
            module = importlib.import_module(f"{_RUNTIME_MODULES[name]}.interpreter")
        except ImportError:
            continue
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return Runtime(name, version, module.Interpreter, module.load_delegate)
    if forced:
        raise ModelError(
            f"{RUNTIME_ENV}={forced} but {_RUNTIME_MODULES[forced]} cannot be imported: "
            f"pip install {forced}"
        )
    raise ModelError(
        "no TFLite runtime is installed: pip install ai-edge-litert "
        "(or tflite-runtime on Python <= 3.11)"
    )


# TFLite's own log lines ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU."); Python's
# default logging format has no space after the colon, so daemon log lines never match.
_RUNTIME_LOG_LINE = re.compile(r"^(INFO|WARNING|ERROR|VERBOSE): ")
# fd 2 is process-wide: two engines built at once in two threads must not interleave the
# swap, or the second restore would leave stderr pointing at the first one's temp file.
_STDERR_SWAP = threading.Lock()


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Collect the TFLite runtime's log lines written to fd 2 while the model loads.

    The runtime prints straight to the file descriptor (sys.stderr redirection cannot catch
    it) and a CLI error must stay one line. Yields the runtime's WARNING/ERROR lines, for an
    error message. Afterwards anything else written meanwhile (other threads' logs) is written
    back, and on success so are the runtime's warnings and errors; its INFO lines are dropped.
    """
    runtime_lines: list[str] = []
    with _STDERR_SWAP, tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (closed by a supervisor): nothing to capture
            yield runtime_lines
            return
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield runtime_lines
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            for line in text.splitlines():
                match = _RUNTIME_LOG_LINE.match(line)
                if match and match[1] in ("INFO", "VERBOSE"):
                    continue
                if match:
                    runtime_lines.append(line)
                if not match or not failed:  # a failure's lines go into its error message
                    print(line, file=sys.stderr)


def load_edgetpu(runtime: Runtime) -> Any:
    try:
        # dlopen first: when the library is missing, the runtime's Delegate object fails
        # half-built and its __del__ prints an "Exception ignored" traceback on stderr.
        ctypes.CDLL(EDGETPU_LIBRARY)
        return runtime.load_delegate(EDGETPU_LIBRARY)
    except (ValueError, OSError, RuntimeError) as error:
        raise ModelError(
            f"Edge TPU delegate {EDGETPU_LIBRARY} could not be loaded with {runtime.name} "
            f"({one_line(str(error))}): install the Edge TPU runtime with "
            "`sudo apt install libedgetpu1-std` from the Coral apt repository "
            "(https://coral.ai/software/#debian-packages), plug in the Coral, and use a model "
            "compiled with edgetpu_compiler"
        ) from None


def one_line(text: str) -> str:
    return " ".join(text.split())
