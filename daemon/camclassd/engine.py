"""The classifier: a TFLite interpreter (LiteRT or tflite-runtime), quantization, labels.

An `Engine` is not thread-safe (neither is the TFLite interpreter): each inference worker
builds its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import mmap
import os
import re
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from camclassd.config import DEFAULT_MODEL_DIR
from camclassd.errors import ModelError

RUNTIME_ENV = "CAMCLASSD_RUNTIME"
RUNTIMES = ("ai-edge-litert", "tflite-runtime")
_RUNTIME_MODULES = MappingProxyType(
    {"ai-edge-litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}
)
DELEGATES = ("none", "edgetpu")
EDGETPU_LIBRARY = "libedgetpu.so.1"
DEFAULT_MODEL_FILE = "efficientnet_lite0_uint8.tflite"
DEFAULT_LABELS_FILE = "imagenet_labels.txt"

# TFLite EfficientNet/MobileNet normalisation: (x - 127) / 128.
DEFAULT_MEAN = 127.0
DEFAULT_STD = 128.0

_BACKGROUND_LABELS = frozenset({"background", "__background__", "bg", "???", "unused background"})
_IMAGENET_WITH_BACKGROUND = 1001
_INDEXED_LABEL = re.compile(r"^\s*(\d+)[\s:,]+(\S.*)$")


def default_model_dir() -> Path:
    """The repo's `models/` when running from a checkout, else the installed location."""
    checkout = Path(__file__).resolve().parent.parent.parent / "models"
    return checkout if checkout.is_dir() else DEFAULT_MODEL_DIR


def default_model_paths() -> tuple[Path, Path]:
    """(model, labels) used when none are given on the command line."""
    directory = default_model_dir()
    return directory / DEFAULT_MODEL_FILE, directory / DEFAULT_LABELS_FILE


@dataclass(frozen=True, slots=True)
class _Runtime:
    name: str
    version: str
    interpreter: Callable[..., Any]
    load_delegate: Callable[..., Any]


def _load_runtime() -> _Runtime:
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
        return _Runtime(name, version, module.Interpreter, module.load_delegate)
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
def _captured_native_stderr() -> Iterator[list[str]]:
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


def read_labels(path: Path) -> list[str]:
    """One label a line; trailing empty lines dropped; `0 label` / `0: label` indices stripped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(
            f"labels file {path} not found: pass --labels (or set [model] labels) to the "
            "labels file made for this model"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(
            f"labels file {path} cannot be read ({error}): fix or replace it"
        ) from None
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise ModelError(f"labels file {path} is empty: it needs one label a line")
    # "index label" files (common in TF/Coral repos): only when every line is numbered 0..n-1,
    # so that a real label starting with a digit is never mangled.
    matches = [_INDEXED_LABEL.match(label) for label in labels]
    if all(matches) and [int(m[1]) for m in matches if m] == list(range(len(labels))):
        labels = [m[2].strip() for m in matches if m]
    return labels


def _fit_labels(labels: list[str], outputs: int, labels_path: Path, model_path: Path) -> bool:
    """Reconcile label and output counts; returns True when output 0 is a background class.

    Mutates `labels` (drops a leading background label) so that afterwards there is exactly
    one label per class the engine reports. The rule:
    - as many labels as outputs: used as they are;
    - one label more, the first "background"-like: that label is dropped;
    - a 1001-output model with 1000 labels (TF-slim/Coral ImageNet): output 0 is background
      and is dropped. Other off-by-one counts are errors: a labels file missing a line
      would otherwise silently shift every class name.
    """
    if len(labels) == outputs:
        return False
    if len(labels) == outputs + 1 and labels[0].lower() in _BACKGROUND_LABELS:
        del labels[0]
        return False
    if outputs == len(labels) + 1 == _IMAGENET_WITH_BACKGROUND:
        return True
    raise ModelError(
        f"labels file {labels_path} has {len(labels)} labels but model {model_path} has "
        f"{outputs} output classes: use the labels file made for this model (line i = class i)"
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that exp() cannot overflow."""
    shifted: np.ndarray = logits - logits.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


class Engine:
    """One TFLite image classifier: RGB uint8 pixels in, class probabilities out."""

    def __init__(
        self,
        model_path: Path,
        labels_path: Path | None = None,
        *,
        num_threads: int = 1,
        delegate: str = "none",
    ) -> None:
        model_path = Path(model_path)
        if num_threads < 1:
            raise ModelError(f"num_threads must be >= 1, got {num_threads}")
        if delegate not in DELEGATES:
            raise ModelError(f"unknown delegate {delegate!r}: use one of {', '.join(DELEGATES)}")
        _check_model_file(model_path)
        runtime = _load_runtime()
        if runtime.name == "tflite-runtime":
            check_flatbuffer(model_path)  # it has no verifier: a bad file would crash it
        delegates = [_load_edgetpu(runtime)] if delegate == "edgetpu" else None

        try:
            with _captured_native_stderr() as native:
                interpreter = runtime.interpreter(
                    model_path=str(model_path),
                    num_threads=num_threads,
                    experimental_delegates=delegates,
                )
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            detail = _one_line(str(error)) or _one_line("; ".join(native))
            if delegates:
                raise ModelError(
                    f"{model_path} does not load with the Edge TPU delegate ({detail}): check "
                    "that the Coral is plugged in and the model was compiled with "
                    "edgetpu_compiler"
                ) from None
            raise ModelError(
                f"{model_path} is not a usable TFLite model ({detail}): the file is "
                "truncated, corrupt or not a .tflite flatbuffer; copy or export it again"
            ) from None

        self._interpreter = interpreter
        self.model_path = model_path
        self.name = model_path.stem
        self.runtime = f"{runtime.name} {runtime.version}"
        self.num_threads = num_threads
        self.delegate = delegate

        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(
                f"{model_path} has {len(inputs)} inputs and {len(outputs)} outputs: an image "
                "classifier needs one image input and a class-score output"
            )
        inp, out = inputs[0], outputs[0]
        shape = tuple(int(d) for d in inp["shape"])
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(
                f"{model_path} takes input of shape {list(shape)}: an image classifier "
                "needs [1, height, width, 3] (NHWC RGB)"
            )
        self._input_index: int = int(inp["index"])
        self._output_index: int = int(out["index"])
        self._frame_shape: tuple[int, int, int] = (shape[1], shape[2], shape[3])
        self.input_size: tuple[int, int] = (shape[2], shape[1])
        self.input_dtype: np.dtype[Any] = np.dtype(inp["dtype"])
        self.input_quantization: tuple[float, int] = (
            float(inp["quantization"][0]),
            int(inp["quantization"][1]),
        )
        self.output_dtype: np.dtype[Any] = np.dtype(out["dtype"])
        self.output_quantization: tuple[float, int] = (
            float(out["quantization"][0]),
            int(out["quantization"][1]),
        )
        if self.input_dtype.kind != "f" and (
            self.input_dtype.kind not in "iu" or self.input_quantization[0] <= 0
        ):
            raise ModelError(
                f"{model_path} takes {self.input_dtype} input without quantization parameters: "
                "use a float32 or quantized uint8/int8 model"
            )
        raw_classes = int(np.prod(out["shape"][1:]))
        self._batch = int(shape[0])
        self._resizable = True

        if labels_path is None:
            labels = [str(i) for i in range(raw_classes)]
            self._drop_background = False
        else:
            labels = read_labels(Path(labels_path))
            self._drop_background = _fit_labels(labels, raw_classes, Path(labels_path), model_path)
        self.labels: list[str] = labels
        self.num_classes = len(labels)

    def __repr__(self) -> str:
        return (
            f"Engine({self.name!r}, input={self.input_size} {self.input_dtype}, "
            f"classes={self.num_classes}, runtime={self.runtime!r}, threads={self.num_threads})"
        )

    # ---- input ------------------------------------------------------------------------------

    def takes_raw_pixels(self, *, mean: float = DEFAULT_MEAN, std: float = DEFAULT_STD) -> bool:
        """True when the input quantization equals the normalisation: pixels go in as they are."""
        scale, zero_point = self.input_quantization
        return (
            self.input_dtype == np.uint8
            and scale > 0
            and abs(scale * std - 1.0) < 1e-3
            and abs(zero_point - mean) < 1e-6
        )

    def to_input(
        self, pixels: np.ndarray, *, mean: float = DEFAULT_MEAN, std: float = DEFAULT_STD
    ) -> np.ndarray:
        """Resized RGB uint8 pixels (HxWx3 or NxHxWx3) -> the model's input dtype.

        A uint8 model quantized with scale 1/std and zero point mean gets the very same array
        back: no copy and no float work per frame.
        """
        if pixels.dtype != np.uint8:
            raise TypeError(f"to_input expects uint8 RGB pixels, got {pixels.dtype}")
        if self.takes_raw_pixels(mean=mean, std=std):
            return pixels
        if self.input_dtype.kind == "f":
            normalised = pixels.astype(np.float32)
            normalised -= mean
            normalised /= std
            return normalised.astype(self.input_dtype, copy=False)
        scale, zero_point = self.input_quantization  # checked > 0 when the model loaded
        # q = (x - mean) / std / scale + zp, folded into one multiply-add.
        gain = 1.0 / (std * scale)
        quantized = pixels.astype(np.float32) * gain + (zero_point - mean * gain)
        info = np.iinfo(self.input_dtype)
        np.rint(quantized, out=quantized)
        np.clip(quantized, info.min, info.max, out=quantized)
        return quantized.astype(self.input_dtype)

    # ---- inference --------------------------------------------------------------------------

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) in the input dtype -> (N, num_classes) float32 probabilities."""
        if batch.ndim == 3:
            batch = batch[np.newaxis]
        if batch.dtype != self.input_dtype or batch.shape[1:] != self._frame_shape:
            raise ValueError(
                f"{self.name} expects (N, {', '.join(map(str, self._frame_shape))}) "
                f"{self.input_dtype}, got {batch.shape} {batch.dtype}: use to_input()"
            )
        count = batch.shape[0]
        if count == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        if count != self._batch and not self._resize(count):
            return np.concatenate([self._invoke(frame[np.newaxis]) for frame in batch])
        return self._invoke(batch)

    def _resize(self, count: int) -> bool:
        """Resize the input for `count` frames; False when the model cannot take a batch."""
        if not self._resizable:
            if self._batch != 1:
                self._set_batch(1)
            return count == 1
        try:
            self._set_batch(count)
            shape = self._interpreter.get_output_details()[0]["shape"]
            if int(shape[0]) != count:
                raise ValueError(f"output batch {shape[0]} after resizing to {count}")
        except (ValueError, RuntimeError):
            # e.g. a Reshape with a constant [1, C] target: fall back to single frames.
            self._resizable = False
            self._set_batch(1)
            return count == 1
        return True

    def _set_batch(self, count: int) -> None:
        self._interpreter.resize_tensor_input(self._input_index, [count, *self._frame_shape])
        self._interpreter.allocate_tensors()
        self._batch = count

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter
        # set_tensor/get_tensor copy: no numpy view of interpreter memory outlives invoke().
        interpreter.set_tensor(self._input_index, np.ascontiguousarray(batch))
        interpreter.invoke()
        raw = interpreter.get_tensor(self._output_index)
        scores = raw.reshape(batch.shape[0], -1).astype(np.float32)
        scale, zero_point = self.output_quantization
        if self.output_dtype.kind in "iu" and scale > 0:
            scores -= zero_point
            scores *= scale
        scores = self._to_probabilities(scores)
        if self._drop_background:
            # Not renormalised: background keeps its share, so a score stays P(class).
            scores = np.ascontiguousarray(scores[:, 1:])
        return scores

    def _to_probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Softmax rows that are logits; keep rows that already are probabilities."""
        # Quantized probabilities carry rounding error per class; float ones barely any.
        tolerance = 0.1 if self.output_dtype.kind in "iu" else 1e-3
        sums = scores.sum(axis=1)
        is_probability = (
            (scores.min(axis=1) >= 0.0)
            & (scores.max(axis=1) <= 1.0 + 1e-6)
            & (np.abs(sums - 1.0) <= tolerance)
        )
        if is_probability.all():
            scores /= sums[:, np.newaxis]
            return scores
        logits = ~is_probability
        scores[logits] = softmax(scores[logits])
        if is_probability.any():
            scores[is_probability] /= sums[is_probability, np.newaxis]
        return scores


def _check_model_file(path: Path) -> None:
    """Fail early, with a fix, before the runtime says something vaguer (or crashes)."""
    if not path.exists():
        raise ModelError(
            f"model file {path} not found: point [model] path in the config (for run) or "
            "--model (for classify and bench) at a .tflite file"
        )
    if path.is_dir():
        raise ModelError(f"model path {path} is a directory: give the .tflite file inside it")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise ModelError(f"model file {path} cannot be read ({error.strerror})") from None
    # A TFLite flatbuffer carries the file identifier "TFL3" at bytes 4..8.
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError(
            f"{path} is not a TFLite model (no TFL3 flatbuffer identifier): give a .tflite file"
        )


def _load_edgetpu(runtime: _Runtime) -> Any:
    try:
        # dlopen first: when the library is missing, the runtime's Delegate object fails
        # half-built and its __del__ prints an "Exception ignored" traceback on stderr.
        ctypes.CDLL(EDGETPU_LIBRARY)
        return runtime.load_delegate(EDGETPU_LIBRARY)
    except (ValueError, OSError, RuntimeError) as error:
        raise ModelError(
            f"Edge TPU delegate {EDGETPU_LIBRARY} could not be loaded with {runtime.name} "
            f"({_one_line(str(error))}): install the Edge TPU runtime with "
            "`sudo apt install libedgetpu1-std` from the Coral apt repository "
            "(https://coral.ai/software/#debian-packages), plug in the Coral, and use a model "
            "compiled with edgetpu_compiler"
        ) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _OutOfBoundsError(Exception):
    """A flatbuffer offset or length points outside the file."""


class _Flatbuffer:
    """Bounds checks over the parts of a TFLite flatbuffer the interpreter reads first.

    tflite-runtime 2.14 builds models without the flatbuffer verifier and crashes (SIGSEGV)
    on a truncated file; LiteRT verifies by itself. This is not a full verifier: it checks
    that every table, vector and string the Model -> SubGraph -> Tensor/Operator and Buffer
    tables reference lies inside the file, which is what truncation or garbage breaks.
    """

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data = data
        self.size = len(data)

    def _u32(self, position: int) -> int:
        self._need(position, 4)
        value: int = struct.unpack_from("<I", self.data, position)[0]
        return value

    def _need(self, position: int, length: int) -> None:
        if position < 0 or length < 0 or position + length > self.size:
            raise _OutOfBoundsError(f"{length} bytes at offset {position} of {self.size}")

    def _field(self, table: int, field: int) -> int | None:
        """Absolute position of a field's value, or None when absent."""
        self._need(table, 4)
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        self._need(vtable, 4)
        vtable_size, table_size = struct.unpack_from("<HH", self.data, vtable)
        self._need(vtable, vtable_size)
        self._need(table, table_size)
        if 4 + 2 * field + 2 > vtable_size:
            return None
        offset: int = struct.unpack_from("<H", self.data, vtable + 4 + 2 * field)[0]
        return table + offset if offset else None

    def _target(self, table: int, field: int) -> int | None:
        """Where an offset field (table, vector, string) points, or None when absent."""
        position = self._field(table, field)
        return None if position is None else position + self._u32(position)

    def _vector(self, table: int, field: int, element_size: int) -> tuple[int, int]:
        """(first element position, length) of a vector field, (0, 0) when absent."""
        start = self._target(table, field)
        if start is None:
            return (0, 0)
        length = self._u32(start)
        self._need(start + 4, length * element_size)
        return (start + 4, length)

    def _tables(self, table: int, field: int) -> list[int]:
        start, length = self._vector(table, field, 4)
        return [start + 4 * i + self._u32(start + 4 * i) for i in range(length)]

    def check(self) -> None:
        model = self._u32(0)
        for field in (1, 6, 7):  # operator_codes, metadata, signature_defs
            for table in self._tables(model, field):
                self._field(table, 0)
        self._vector(model, 3, 1)  # description
        self._vector(model, 5, 4)  # metadata_buffer
        buffers = self._tables(model, 4)
        for buffer in buffers:
            self._vector(buffer, 0, 1)  # data
            offset, size = self._field(buffer, 1), self._field(buffer, 2)
            if offset is not None and size is not None:  # > 2 GB models keep data outside
                start = struct.unpack_from("<Q", self.data, offset)[0]
                length = struct.unpack_from("<Q", self.data, size)[0]
                if start > 1:
                    self._need(start, length)
        subgraphs = self._tables(model, 2)
        if not subgraphs:
            raise _OutOfBoundsError("no subgraph")
        for subgraph in subgraphs:
            for field in (1, 2):  # inputs, outputs
                self._vector(subgraph, field, 4)
            for tensor in self._tables(subgraph, 0):
                self._vector(tensor, 0, 4)  # shape
                self._vector(tensor, 3, 1)  # name
                self._vector(tensor, 7, 4)  # shape_signature
                position = self._field(tensor, 2)
                if position is not None and self._u32(position) >= max(len(buffers), 1):
                    raise _OutOfBoundsError(f"tensor buffer index {self._u32(position)}")
                quantization = self._target(tensor, 4)
                if quantization is not None:
                    self._vector(quantization, 2, 4)  # scale
                    self._vector(quantization, 3, 8)  # zero_point
            for operator in self._tables(subgraph, 3):
                for field in (1, 2):  # inputs, outputs
                    self._vector(operator, field, 4)
                options = self._target(operator, 4)
                if options is not None:
                    self._field(options, 0)
                self._vector(operator, 5, 1)  # custom_options


def check_flatbuffer(path: Path) -> None:
    """Raise ModelError when the .tflite file's flatbuffer points outside the file."""
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            _Flatbuffer(data).check()
    except (_OutOfBoundsError, struct.error) as error:
        raise ModelError(
            f"{path} is not a usable TFLite model (flatbuffer reference out of bounds: {error}): "
            "the file is truncated or corrupt; copy or export it again"
        ) from None
    except (OSError, ValueError) as error:
        raise ModelError(f"model file {path} cannot be read ({error})") from None
