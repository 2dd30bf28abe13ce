"""Edits of a TFLite flatbuffer with the schema's object API: no TensorFlow, no PyTorch.

The base model must end like the shipped EfficientNet-Lite0: a pooled embedding [1, D] (int8)
-> FULLY_CONNECTED (int8 weights, int32 bias) -> optionally QUANTIZE (int8 -> uint8 output).
From it we make the embedding model (the FULLY_CONNECTED and everything after it removed) and
classifier models with a new head in place of the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from camclassd.errors import ModelError

FILE_IDENTIFIER = b"TFL3"
DESCRIPTION = b"camclassd train: EfficientNet-Lite0 backbone + trained head"


def _schema() -> Any:
    # The schema module ships with ai-edge-litert; imported when a model is edited only.
    try:
        from ai_edge_litert import schema_py_generated  # noqa: PLC0415
    except ImportError:
        raise ModelError(
            "training needs ai-edge-litert (its TFLite schema edits the model): "
            "pip install ai-edge-litert"
        ) from None
    return schema_py_generated


class BaseModelError(ModelError):
    """The base model is not one whose head we know how to replace."""


@dataclass(frozen=True, slots=True)
class HeadInfo:
    """Where the base model's classification head sits."""

    fc_op: int  # index of the FULLY_CONNECTED operator
    embedding: int  # its input tensor: the pooled embedding
    dim: int
    embedding_quantization: tuple[float, int]
    classes: int
    input_size: tuple[int, int]  # (width, height)


@dataclass(frozen=True, slots=True)
class QuantizedHead:
    """An int8 FULLY_CONNECTED head: per-channel symmetric weights, int32 bias."""

    weights: np.ndarray  # int8 [K, D]
    weight_scales: np.ndarray  # float32 [K]
    bias: np.ndarray  # int32 [K], scale s_in * s_w[k]
    output_scale: float
    output_zero_point: int  # int8 zero point of the FULLY_CONNECTED output


def load(data: bytes) -> Any:
    """The unpacked object tree (ModelT) of a .tflite file's bytes."""
    schema = _schema()
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise BaseModelError("not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as error:  # a corrupt flatbuffer fails anywhere inside the generated code
        raise BaseModelError(f"the flatbuffer does not parse ({error})") from None


def pack(model: Any) -> bytes:
    """The model's bytes; deterministic (same tree, same bytes)."""
    import flatbuffers  # noqa: PLC0415 (a dependency of ai-edge-litert, needed here only)

    builder = flatbuffers.Builder(1024 * 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _op_name(model: Any, op: Any) -> str:
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    number = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return str(names.get(number, f"op {number}"))


def _quant(tensor: Any) -> tuple[np.ndarray, np.ndarray] | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return np.asarray(q.scale, dtype=np.float64), np.asarray(q.zeroPoint, dtype=np.int64)


def find_head(model: Any) -> HeadInfo:
    """Check the base model's shape of graph; BaseModelError names what does not fit."""
    schema = _schema()
    tt = schema.TensorType
    if len(model.subgraphs) != 1:
        raise BaseModelError(f"{len(model.subgraphs)} subgraphs, expected 1")
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise BaseModelError(
            f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs, expected 1 and 1"
        )
    image = graph.tensors[graph.inputs[0]]
    shape = [int(d) for d in image.shape]
    if len(shape) != 4 or shape[3] != 3 or image.type != tt.UINT8:
        raise BaseModelError("its input is not a uint8 [1, H, W, 3] image")
    producers = {int(t): i for i, op in enumerate(graph.operators) for t in op.outputs}
    index = producers.get(int(graph.outputs[0]))
    if index is not None and _op_name(model, graph.operators[index]) == "QUANTIZE":
        index = producers.get(int(graph.operators[index].inputs[0]))
    last = "no operator" if index is None else _op_name(model, graph.operators[index])
    if index is None or last != "FULLY_CONNECTED":
        raise BaseModelError(
            f"its last layer is {last}, not the FULLY_CONNECTED (optionally followed by "
            "QUANTIZE) of a classifier head"
        )
    if index != len(graph.operators) - 1 and index != len(graph.operators) - 2:
        raise BaseModelError("operators follow its FULLY_CONNECTED head")
    fc = graph.operators[index]
    if len(fc.inputs) < 3 or fc.inputs[2] < 0:
        raise BaseModelError("its FULLY_CONNECTED has no bias")
    embedding, weights, bias = (graph.tensors[int(i)] for i in fc.inputs[:3])
    out = graph.tensors[int(fc.outputs[0])]
    types = (embedding.type, weights.type, bias.type, out.type)
    if types != (tt.INT8, tt.INT8, tt.INT32, tt.INT8):
        raise BaseModelError(
            "its FULLY_CONNECTED is not int8 (int8 input, weights and output, int32 bias)"
        )
    emb_shape = [int(d) for d in embedding.shape]
    quant = _quant(embedding)
    if len(emb_shape) != 2 or quant is None or len(quant[0]) != 1:
        raise BaseModelError("its FULLY_CONNECTED input is not a per-tensor quantized [1, D]")
    options = fc.builtinOptions
    if options is not None and int(options.fusedActivationFunction) != 0:
        raise BaseModelError("its FULLY_CONNECTED has a fused activation")
    return HeadInfo(
        fc_op=index,
        embedding=int(fc.inputs[0]),
        dim=emb_shape[1],
        embedding_quantization=(float(quant[0][0]), int(quant[1][0])),
        classes=int(weights.shape[0]),
        input_size=(shape[2], shape[1]),
    )


def _prune(model: Any) -> None:
    """Drop tensors and buffers no operator or graph input/output uses; renumber the rest."""
    graph = model.subgraphs[0]
    used = sorted(
        {int(t) for op in graph.operators for t in (*op.inputs, *op.outputs) if t >= 0}
        | {int(t) for t in (*graph.inputs, *graph.outputs)}
    )
    tensor_map = {old: new for new, old in enumerate(used)}
    graph.tensors = [graph.tensors[i] for i in used]
    for op in graph.operators:
        op.inputs = [tensor_map[int(t)] if t >= 0 else -1 for t in op.inputs]
        op.outputs = [tensor_map[int(t)] for t in op.outputs]
    graph.inputs = [tensor_map[int(t)] for t in graph.inputs]
    graph.outputs = [tensor_map[int(t)] for t in graph.outputs]
    for signature in model.signatureDefs or []:
        for tensor_ref in (*(signature.inputs or []), *(signature.outputs or [])):
            tensor_ref.tensorIndex = tensor_map[int(tensor_ref.tensorIndex)]
    # Buffer 0 is the schema's empty sentinel; metadata keeps its buffers.
    kept = {0} | {int(t.buffer) for t in graph.tensors}
    kept |= {int(m.buffer) for m in model.metadata or []}
    order = sorted(kept)
    buffer_map = {old: new for new, old in enumerate(order)}
    model.buffers = [model.buffers[i] for i in order]
    for tensor in graph.tensors:
        tensor.buffer = buffer_map[int(tensor.buffer)]
    for metadata in model.metadata or []:
        metadata.buffer = buffer_map[int(metadata.buffer)]


def embedding_model(data: bytes) -> tuple[bytes, HeadInfo]:
    """The base model cut after its pooling: output = the int8 [1, D] embedding."""
    model = load(data)
    info = find_head(model)
    graph = model.subgraphs[0]
    graph.operators = graph.operators[: info.fc_op]
    graph.outputs = [info.embedding]
    model.signatureDefs = None  # an internal model: only the output index matters
    _prune(model)
    return pack(model), info


def _set_buffer(model: Any, tensor: Any, values: np.ndarray) -> None:
    schema = _schema()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1


def _set_quant(tensor: Any, scales: np.ndarray, zero_points: np.ndarray) -> None:
    schema = _schema()
    quantization = schema.QuantizationParametersT()
    quantization.scale = [float(s) for s in np.asarray(scales, dtype=np.float32)]
    quantization.zeroPoint = [int(z) for z in zero_points]
    quantization.quantizedDimension = 0
    tensor.quantization = quantization


def _set_shape(tensor: Any, shape: list[int]) -> None:
    tensor.shape = np.asarray(shape, dtype=np.int32)
    if tensor.shapeSignature is not None:
        signature = [int(d) for d in tensor.shapeSignature]
        tensor.shapeSignature = np.asarray([signature[0], *shape[1:]], dtype=np.int32)


def classifier_model(data: bytes, head: QuantizedHead) -> bytes:
    """The base model with `head` in place of its FULLY_CONNECTED; all-integer, uint8 output
    when the base had one (the QUANTIZE op is kept, its zero point moved with the output's)."""
    schema = _schema()
    model = load(data)
    info = find_head(model)
    graph = model.subgraphs[0]
    classes = int(head.weights.shape[0])
    if head.weights.shape != (classes, info.dim):
        raise ValueError(f"head weights {head.weights.shape}, base embedding {info.dim}")
    fc = graph.operators[info.fc_op]
    weights, bias, out = (graph.tensors[int(i)] for i in (*fc.inputs[1:3], fc.outputs[0]))
    _set_buffer(model, weights, head.weights.astype(np.int8))
    _set_shape(weights, [classes, info.dim])
    _set_quant(weights, head.weight_scales, np.zeros(classes, dtype=np.int64))
    weights.name = b"camclassd_head/weights"
    _set_buffer(model, bias, head.bias.astype("<i4"))
    _set_shape(bias, [classes])
    s_in = info.embedding_quantization[0]
    _set_quant(bias, s_in * head.weight_scales.astype(np.float64), np.zeros(classes, np.int64))
    bias.name = b"camclassd_head/bias"
    _set_shape(out, [1, classes])
    _set_quant(out, np.array([head.output_scale]), np.array([head.output_zero_point]))
    if info.fc_op + 1 < len(graph.operators):  # QUANTIZE int8 -> uint8: zero point + 128
        final = graph.tensors[int(graph.operators[info.fc_op + 1].outputs[0])]
        _set_shape(final, [1, classes])
        offset = 128 if final.type == schema.TensorType.UINT8 else 0
        zero_point = np.array([head.output_zero_point + offset])
        _set_quant(final, np.array([head.output_scale]), zero_point)
    model.description = DESCRIPTION
    _prune(model)  # the old weights' buffers go: 1000 x 1280 bytes and more
    return pack(model)


def float_classifier_model(data: bytes, weights: np.ndarray, bias: np.ndarray) -> bytes:
    """The float32 twin: the same int8 backbone, DEQUANTIZE, a float32 FULLY_CONNECTED and a
    float32 logits output (for `evaluate --compare`)."""
    schema = _schema()
    model = load(data)
    info = find_head(model)
    graph = model.subgraphs[0]
    classes = int(weights.shape[0])
    fc = graph.operators[info.fc_op]

    def new_tensor(name: bytes, shape: list[int], values: np.ndarray | None = None) -> int:
        tensor = schema.TensorT()
        tensor.name = name
        tensor.type = schema.TensorType.FLOAT32
        tensor.shape = np.asarray(shape, dtype=np.int32)
        tensor.buffer = 0
        graph.tensors.append(tensor)
        if values is not None:
            _set_buffer(model, tensor, values.astype("<f4"))
        return len(graph.tensors) - 1

    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.DEQUANTIZE
    code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
    code.version = 1
    model.operatorCodes.append(code)
    embedding = new_tensor(b"camclassd_head/embedding_float", [1, info.dim])
    dequantize = schema.OperatorT()
    dequantize.opcodeIndex = len(model.operatorCodes) - 1
    dequantize.inputs = [info.embedding]
    dequantize.outputs = [embedding]
    w = new_tensor(b"camclassd_head/weights", [classes, info.dim], weights)
    b = new_tensor(b"camclassd_head/bias", [classes], bias)
    logits = new_tensor(b"camclassd_head/logits", [1, classes])
    fc.inputs = [embedding, w, b]
    fc.outputs = [logits]
    graph.operators = [*graph.operators[: info.fc_op], dequantize, fc]
    graph.outputs = [logits]
    for signature in model.signatureDefs or []:
        for tensor_ref in signature.outputs or []:
            tensor_ref.tensorIndex = logits
    model.description = DESCRIPTION
    _prune(model)
    return pack(model)
