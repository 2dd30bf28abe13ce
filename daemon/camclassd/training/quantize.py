"""Float head -> int8 FULLY_CONNECTED parameters, and an exact numpy model of that layer.

Weights: symmetric per output channel (zero point 0, scale max|w|/127). Bias: int32 at
s_in * s_w. Output: asymmetric int8 over the logit range seen on the calibration views.
"""

from __future__ import annotations

import numpy as np

from camclassd.training.head import FloatHead
from camclassd.training.surgery import QuantizedHead

CALIBRATION_MARGIN = 0.1  # views at run time go a little past what calibration saw


def quantize_head(
    head: FloatHead, input_quantization: tuple[float, int], calibration: np.ndarray
) -> QuantizedHead:
    """`calibration`: float embeddings of the training views, to size the output range."""
    s_in = input_quantization[0]
    largest = np.abs(head.weights).max(axis=1)
    scales = np.where(largest > 0, largest / 127.0, 1e-8).astype(np.float32)
    weights = np.clip(np.rint(head.weights / scales[:, None].astype(np.float64)), -127, 127)
    bias_scale = s_in * scales.astype(np.float64)
    info = np.iinfo(np.int32)
    bias = np.clip(np.rint(head.bias / bias_scale), info.min, info.max)
    logits = head.logits(calibration)
    low = min(float(logits.min()), 0.0)
    high = max(float(logits.max()), 0.0)
    span = (high - low) * (1.0 + 2 * CALIBRATION_MARGIN) or 1.0
    low -= (high - low) * CALIBRATION_MARGIN
    output_scale = float(np.float32(span / 255.0))
    zero_point = int(np.clip(round(-128 - low / output_scale), -128, 127))
    return QuantizedHead(
        weights=weights.astype(np.int8),
        weight_scales=scales,
        bias=bias.astype(np.int32),
        output_scale=output_scale,
        output_zero_point=zero_point,
    )


def int8_logits(
    head: QuantizedHead, embeddings: np.ndarray, input_quantization: tuple[float, int]
) -> np.ndarray:
    """What the int8 FULLY_CONNECTED computes on int8 embeddings, dequantized [N, K].

    Integer accumulation as TFLite does it; the requantization is done in float64 where
    TFLite uses a fixed-point multiplier (they differ by one step at most, rarely).
    """
    s_in, zp_in = input_quantization
    centred = embeddings.astype(np.int64) - zp_in
    accumulator = centred @ head.weights.astype(np.int64).T + head.bias.astype(np.int64)
    real = accumulator * (s_in * head.weight_scales.astype(np.float64))
    q = np.clip(np.rint(real / head.output_scale) + head.output_zero_point, -128, 127)
    result: np.ndarray = (q - head.output_zero_point) * head.output_scale
    return result


def dequantize(embeddings: np.ndarray, input_quantization: tuple[float, int]) -> np.ndarray:
    scale, zero_point = input_quantization
    result: np.ndarray = (embeddings.astype(np.float32) - zero_point) * np.float32(scale)
    return result
