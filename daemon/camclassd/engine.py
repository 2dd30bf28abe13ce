"""The classifier: a TFLite interpreter, quantization in and out, probabilities per label.

The runtime (LiteRT or tflite-runtime) is picked in `camclassd.runtime`; the model and labels
files are checked in `camclassd.modelfile` before the runtime sees them.

An `Engine` is not thread-safe (neither is the TFLite interpreter): each inference worker
builds its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from camclassd.constants import (
    DEFAULT_LABELS_FILE,
    DEFAULT_MODEL_DIR,
    DEFAULT_MODEL_FILE,
    DELEGATES,
)
from camclassd.errors import ModelError
from camclassd.modelfile import check_flatbuffer, check_model_file, fit_labels, read_labels
from camclassd.runtime import (
    EDGETPU_LIBRARY,
    RUNTIME_ENV,
    RUNTIMES,
    captured_native_stderr,
    load_edgetpu,
    load_runtime,
    one_line,
)

__all__ = [
    "EDGETPU_LIBRARY",
    "RUNTIMES",
    "RUNTIME_ENV",
    "Engine",
    "check_flatbuffer",
    "default_model_dir",
    "default_model_paths",
    "read_labels",
    "softmax",
]


# TFLite EfficientNet/MobileNet normalisation: (x - 127) / 128.
DEFAULT_MEAN = 127.0
DEFAULT_STD = 128.0


def default_model_dir() -> Path:
    """The repo's `models/` when running from a checkout, else the installed location."""
    checkout = Path(__file__).resolve().parent.parent.parent / "models"
    return checkout if checkout.is_dir() else DEFAULT_MODEL_DIR


def default_model_paths() -> tuple[Path, Path]:
    """(model, labels) used when none are given on the command line."""
    directory = default_model_dir()
    return directory / DEFAULT_MODEL_FILE, directory / DEFAULT_LABELS_FILE


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
        check_model_file(model_path)
        runtime = load_runtime()
        if runtime.name == "tflite-runtime":
            check_flatbuffer(model_path)  # it has no verifier: a bad file would crash it
        delegates = [load_edgetpu(runtime)] if delegate == "edgetpu" else None

        try:
            with captured_native_stderr() as native:
                interpreter = runtime.interpreter(
                    model_path=str(model_path),
                    num_threads=num_threads,
                    experimental_delegates=delegates,
                )
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            detail = one_line(str(error)) or one_line("; ".join(native))
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
            self._drop_background = fit_labels(labels, raw_classes, Path(labels_path), model_path)
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
