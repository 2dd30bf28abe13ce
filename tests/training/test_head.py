"""The pieces in-process on cached embeddings of real photos: surgery, head, quantization,
validation."""

from __future__ import annotations

import numpy as np
import pytest

from camclassd.classify import read_rgb
from camclassd.engine import Engine
from camclassd.preprocess import Preprocessor
from camclassd.training import surgery
from camclassd.training.embed import Embedder
from camclassd.training.head import fit
from camclassd.training.quantize import int8_logits, quantize_head
from camclassd.training.validate import Views, assign_folds, cross_validate, fold_count
from tests.conftest import LABELS, SAMPLES, UINT8_MODEL

Cached = tuple[Views, tuple[str, ...]]


def test_the_shipped_model_has_the_expected_head() -> None:
    info = surgery.find_head(surgery.load(UINT8_MODEL.read_bytes()))
    assert (info.dim, info.classes, info.input_size) == (1280, 1000, (224, 224))
    assert info.embedding_quantization[1] == -128


def test_the_embedding_model_rebuilds_the_shipped_logits(embedder: Embedder) -> None:
    """The shipped FULLY_CONNECTED applied (in numpy) to our embedding gives the shipped top-5."""

    model = surgery.load(UINT8_MODEL.read_bytes())
    graph = model.subgraphs[0]
    fc = graph.operators[surgery.find_head(model).fc_op]
    w, b = graph.tensors[fc.inputs[1]], graph.tensors[fc.inputs[2]]
    weights = np.frombuffer(model.buffers[w.buffer].data.tobytes(), np.int8).reshape(1000, 1280)
    scales = np.asarray(w.quantization.scale, np.float64)
    bias = (
        np.frombuffer(model.buffers[b.buffer].data.tobytes(), "<i4")
        * scales
        * embedder.quantization[0]
    )
    engine = Engine(UINT8_MODEL, LABELS)
    preprocess = Preprocessor(size=engine.input_size)
    pixels = preprocess(read_rgb(SAMPLES / "coffee.jpg"))
    scale, zero = embedder.quantization
    logits = ((embedder(pixels).astype(np.float64) - zero) * scale) @ (
        weights * scales[:, None]
    ).T + bias
    shipped = engine.infer(pixels[np.newaxis])[0]
    assert list(np.argsort(-logits)[:5]) == list(np.argsort(-shipped)[:5])


def test_head_fits_and_int8_agrees(state_views: Cached) -> None:
    views, classes = state_views
    y = views.image_labels[views.image]
    head = fit(views.features, y, len(classes))
    float_pred = head.logits(views.features).argmax(axis=1)
    assert np.mean(float_pred == y) >= 0.95
    logits = head.logits(views.features)
    assert np.allclose(logits.sum(axis=1), 0.0, atol=1e-6)  # centred: never sums to 1
    quantized = quantize_head(head, views.quantization, views.features)
    assert quantized.weights.dtype == np.int8 and quantized.bias.dtype == np.int32
    assert np.abs(quantized.weights).max() == 127
    int8 = int8_logits(quantized, views.embeddings, views.quantization)
    assert np.mean(int8.argmax(axis=1) == float_pred) >= 0.99
    assert np.abs(int8 - logits).max() < 4 * quantized.output_scale


def test_class_balance_matters(state_views: Cached) -> None:
    """With one class cut to a fifth, balanced weights keep its recall up."""
    views, classes = state_views
    y = views.image_labels[views.image]
    keep = (y == 1) | (views.image % 5 == 0)
    head = fit(views.features[keep], y[keep], len(classes))
    predicted = head.logits(views.features).argmax(axis=1)
    assert np.mean(predicted[y == 0] == 0) >= 0.8


def test_folds_are_stratified_and_keep_an_images_views_together(state_views: Cached) -> None:
    views, classes = state_views
    k = fold_count(views.image_labels, 5)
    assert k == 5
    folds = assign_folds(views.image_labels, k, seed=0)
    for fold in range(k):
        counts = np.bincount(views.image_labels[folds == fold], minlength=len(classes))
        assert counts.min() >= 2
    assert (assign_folds(views.image_labels, k, seed=0) == folds).all()
    assert fold_count(np.array([0, 0, 1]), 5) == 0  # a class with one image: no validation


def test_cross_validation_report(state_views: Cached) -> None:
    views, classes = state_views

    def quick(x: np.ndarray, y: np.ndarray) -> object:
        return fit(x, y, len(classes), steps=100)

    result = cross_validate(views, classes, quick, folds=3, seed=0)  # type: ignore[arg-type]
    assert result is not None
    assert result["method"] == "stratified 3-fold"
    assert result["views"] == len(views.image)
    assert sum(map(sum, result["confusion"])) == len(views.image)
    assert result["accuracy"] >= 0.85 and result["int8_float_agreement"] >= 0.97
    sizes = [point["per_class"] for point in result["learning_curve"]]
    assert sizes == sorted(sizes) and sizes[0] == 1


def test_a_wrong_graph_is_named() -> None:
    cut, _ = surgery.embedding_model(UINT8_MODEL.read_bytes())
    with pytest.raises(surgery.BaseModelError, match="last layer is MEAN"):
        surgery.find_head(surgery.load(cut))
    with pytest.raises(surgery.BaseModelError, match="TFL3"):
        surgery.load(b"not a model at all")
