"""The files a model comes in, checked before the runtime sees them: the .tflite flatbuffer
(identifier and bounds) and its labels file (read, and fitted to the model's outputs).
"""

from __future__ import annotations

import mmap
import re
import struct
from pathlib import Path

from camclassd.errors import ModelError

_BACKGROUND_LABELS = frozenset({"background", "__background__", "bg", "???", "unused background"})
_IMAGENET_WITH_BACKGROUND = 1001
_INDEXED_LABEL = re.compile(r"^\s*(\d+)[\s:,]+(\S.*)$")


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


def fit_labels(labels: list[str], outputs: int, labels_path: Path, model_path: Path) -> bool:
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


def check_model_file(path: Path) -> None:
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
