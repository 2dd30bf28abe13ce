"""The embedding model: the shipped int8 backbone cut after its pooling, run on views."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from camclassd.errors import ModelError
from camclassd.modelfile import check_model_file as _check_model_file
from camclassd.runtime import captured_native_stderr as _captured_native_stderr
from camclassd.runtime import load_runtime as _load_runtime
from camclassd.training import surgery


class Embedder:
    """uint8 RGB views in, int8 embeddings out (one interpreter: not thread-safe)."""

    def __init__(self, base_model: Path, *, num_threads: int = 2) -> None:
        _check_model_file(base_model)
        try:
            self.base_bytes = base_model.read_bytes()
        except OSError as error:
            raise ModelError(f"model file {base_model} cannot be read ({error})") from None
        self.base_model = base_model
        self.base_sha256 = hashlib.sha256(self.base_bytes).hexdigest()
        try:
            content, self.info = surgery.embedding_model(self.base_bytes)
        except surgery.BaseModelError as error:
            raise surgery.BaseModelError(
                f"{base_model} cannot be a base model: {error}; train on the shipped "
                "efficientnet_lite0_uint8.tflite"
            ) from None
        runtime = _load_runtime()
        self.runtime = f"{runtime.name} {runtime.version}"
        with _captured_native_stderr():
            interpreter: Any = runtime.interpreter(model_content=content, num_threads=num_threads)
            interpreter.allocate_tensors()
        self._interpreter = interpreter
        self._input = int(interpreter.get_input_details()[0]["index"])
        self._output = int(interpreter.get_output_details()[0]["index"])
        self.input_size = self.info.input_size

    @property
    def quantization(self) -> tuple[float, int]:
        return self.info.embedding_quantization

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """One (H, W, 3) uint8 view -> int8 [D]."""
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(pixels)[np.newaxis])
        self._interpreter.invoke()
        result: np.ndarray = self._interpreter.get_tensor(self._output)[0]
        return result
