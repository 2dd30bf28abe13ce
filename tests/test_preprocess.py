"""Crop geometry (pure functions, with hypothesis) and the Preprocessor's output."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from camclassd.engine import Engine
from camclassd.preprocess import Preprocessor, center_square, letterbox_geometry, roi_box
from tests.conftest import FLOAT_MODEL, LABELS, UINT8_MODEL

sizes = st.integers(1, 4000)
unit = st.floats(0.0, 1.0, allow_nan=False)


@given(sizes, sizes)
def test_center_square_is_centred_square_inside(width: int, height: int) -> None:
    x1, y1, x2, y2 = center_square(width, height)
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert x2 - x1 == y2 - y1 == min(width, height)
    assert abs(x1 - (width - x2)) <= 1 and abs(y1 - (height - y2)) <= 1


@given(sizes, sizes, st.tuples(unit, unit, unit, unit))
def test_roi_box_inside_frame_and_nonempty(
    width: int, height: int, corners: tuple[float, float, float, float]
) -> None:
    x1f, x2f = sorted((corners[0], corners[2]))
    y1f, y2f = sorted((corners[1], corners[3]))
    x1, y1, x2, y2 = roi_box(width, height, (x1f, y1f, x2f, y2f))
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    # Within a pixel of the requested region (rounding), unless it had to grow to 1 pixel.
    assert abs(x1 - x1f * width) <= 1 and abs(y1 - y1f * height) <= 1


@given(sizes, sizes, st.integers(1, 512), st.integers(1, 512))
def test_letterbox_fits_and_keeps_aspect(width: int, height: int, tw: int, th: int) -> None:
    scaled_w, scaled_h, x, y = letterbox_geometry(width, height, (tw, th))
    assert scaled_w >= 1 and scaled_h >= 1
    assert x >= 0 and y >= 0 and x + scaled_w <= tw and y + scaled_h <= th
    assert scaled_w == tw or scaled_h == th or min(scaled_w, scaled_h) == 1
    if min(scaled_w, scaled_h) > 20:
        assert scaled_w / scaled_h == pytest.approx(width / height, rel=0.1)


def gradient(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[..., 0] = x[None, :]
    frame[..., 1] = y[:, None]
    return frame


def test_center_crop_resize_equals_manual() -> None:
    frame = gradient(640, 480)
    out = Preprocessor(size=(224, 224))(frame)
    manual = cv2.resize(frame[:, 80:560], (224, 224), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, manual)


def test_roi_squash_letterbox_shapes() -> None:
    frame = gradient(640, 480)
    roi = Preprocessor(size=(224, 224), crop="roi", roi=(0.5, 0.0, 1.0, 0.5))(frame)
    assert roi.shape == (224, 224, 3)
    assert roi[..., 0].min() >= 120  # only the right half of the red gradient
    squash = Preprocessor(size=(224, 224), crop="squash")(frame)
    assert squash[..., 0].min() <= 2 and squash[..., 0].max() >= 253  # whole width kept
    boxed = Preprocessor(size=(224, 224), crop="letterbox", pad_value=7)(frame)
    assert boxed.shape == (224, 224, 3)
    assert (boxed[:20] == 7).all() and (boxed[-20:] == 7).all()  # 4:3 -> bars top and bottom


def test_exact_size_is_passed_through_without_resize() -> None:
    frame = gradient(224, 224)
    np.testing.assert_array_equal(Preprocessor(size=(224, 224))(frame), frame)


@pytest.mark.parametrize("model", [UINT8_MODEL, FLOAT_MODEL], ids=["uint8", "float32"])
def test_pixels_then_the_engine_gives_the_model_input_dtype(model: object) -> None:
    engine = Engine(model, LABELS, num_threads=1)  # type: ignore[arg-type]
    pixels = Preprocessor(size=engine.input_size)(gradient(640, 480))
    assert pixels.dtype == np.uint8  # what a stage sees: plain pixels, whatever the model
    tensor = engine.to_input(pixels)
    assert tensor.dtype == engine.input_dtype
    assert tensor.shape == (engine.input_size[1], engine.input_size[0], 3)
    if engine.input_dtype == np.uint8:
        assert engine.takes_raw_pixels()  # raw pixels: no float work per frame
