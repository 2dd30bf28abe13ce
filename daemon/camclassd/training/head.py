"""The new last layer: multinomial logistic (softmax) regression trained with numpy.

Class-balanced (each class weighs the same whatever its count) and L2-regularised; features
are standardised for the optimiser and the scaling is folded back into the weights, so the
result is a plain linear layer on the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from camclassd.training.blas import one_thread

DEFAULT_L2 = 1e-3
DEFAULT_STEPS = 300


@dataclass(frozen=True, slots=True)
class FloatHead:
    weights: np.ndarray  # float64 [K, D]
    bias: np.ndarray  # float64 [K]

    def logits(self, x: np.ndarray) -> np.ndarray:
        result: np.ndarray = x.astype(np.float64) @ self.weights.T + self.bias
        return result


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class _Adam:
    """Adam's moment estimates for one parameter array, updated in place."""

    def __init__(self, shape: tuple[int, ...], learning_rate: float) -> None:
        self.m: np.ndarray = np.zeros(shape, dtype=np.float32)
        self.v: np.ndarray = np.zeros(shape, dtype=np.float32)
        self.t = 0
        self.learning_rate = learning_rate

    def step(self, param: np.ndarray, grad: np.ndarray) -> None:
        beta1, beta2 = 0.9, 0.999
        self.t += 1
        self.m = beta1 * self.m + (1 - beta1) * grad
        self.v = beta2 * self.v + (1 - beta2) * grad * grad
        m_hat = self.m / (1 - beta1**self.t)
        v_hat = self.v / (1 - beta2**self.t)
        param -= self.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)


def fit(
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    *,
    l2: float = DEFAULT_L2,
    steps: int = DEFAULT_STEPS,
    learning_rate: float = 0.05,
) -> FloatHead:
    """Full-batch Adam on the weighted cross-entropy; deterministic (no random init).

    The loop runs in float32 on one BLAS thread (see blas.py); the result is float64.
    """
    mean = x.mean(axis=0, dtype=np.float64)
    # One scale for all channels, not one each: per-channel scaling let rarely-firing
    # channels take huge weights, which int8 (one scale per class over all 1280 inputs)
    # then rounded badly (int8/float agreement fell to 95% on new views).
    std = float(np.sqrt(np.mean((x - mean) ** 2))) or 1.0
    z = ((x - mean) / std).astype(np.float32)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    present = counts > 0
    sample_weight = (len(y) / (present.sum() * np.maximum(counts, 1.0)))[y]
    sample_weight /= sample_weight.sum()
    onehot = np.eye(classes, dtype=np.float32)[y]
    weight = sample_weight.astype(np.float32)[:, None]
    w = np.zeros((classes, z.shape[1]), dtype=np.float32)
    b = np.zeros(classes, dtype=np.float32)
    adam_w, adam_b = _Adam(w.shape, learning_rate), _Adam(b.shape, learning_rate)
    with one_thread():
        for _ in range(steps):
            error = (_softmax(z @ w.T + b) - onehot) * weight
            adam_w.step(w, error.T @ z + np.float32(l2) * w)
            adam_b.step(b, error.sum(axis=0))
    weights = w.astype(np.float64) / std
    bias = b.astype(np.float64) - weights @ mean
    # Softmax ignores a shift shared by all classes: centring makes every view's logits sum
    # to 0, so they can never be mistaken for probabilities (which sum to 1).
    weights -= weights.mean(axis=0, keepdims=True)
    bias -= bias.mean()
    return FloatHead(weights, bias)
