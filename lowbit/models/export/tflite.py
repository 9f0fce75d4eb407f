"""A compressed model as a fully-integer TFLite model, checked in the LiteRT interpreter.

:func:`build_tflite` writes the TFLite flatbuffer directly from lowbit's own integer model,
the QDQ INT8 ONNX graph (:mod:`lowbit.models.export._tflite_graph`: every layer's int8
weight codes per output channel, int32 bias, activation grids; pruned channels already
removed, low-rank layers already two layers, sub-8-bit codes stored in int8). Nothing is
recalibrated except the int8 grid of the logits, which lowbit leaves in float: it spans
the fake-quant logits on the ``val`` split (:func:`logits_grid`).

Activations are int8 (lowbit's uint8 codes − 128: the same values), NHWC; the classifier
runs 16x8 with int16 logits (:func:`logits_grid`). With ``io="int8"`` (the default, what
TFLite Micro / Ethos-U firmware feeds) the input is an int8 tensor and the output the int16
logits: quantize the input as ``clamp(round(x / scale) + zero_point, -128, 127)`` (round
half to even, like ONNX Runtime's QuantizeLinear) and read the logits as
``(code − zero_point) · scale``; with ``io="float"`` a QUANTIZE / DEQUANTIZE pair does it.

:func:`check_tflite` runs the model in the LiteRT interpreter (builtin int8 kernels, no
delegate) on the ``test`` split against the INT8 ONNX model: accuracies, argmax agreement
and, on the first images, how many activation codes of each integer layer agree. TFLite's
builtin kernels (like TensorFlow Lite Micro's) requantize with a fixed-point multiplier in
two roundings, the product and then the shift, ties away from zero, where ONNX Runtime
multiplies in float and rounds once, to even: outputs just short of a half, by up to about
``2^-(shift+1)``, round differently (0.05-0.1 % of a layer's codes; one step apart, which a
4-bit grid makes a large step for the layers after it).

An attention model (the zoo's ViT) is converted from its structure instead
(:mod:`lowbit.models.export._tflite_vit`): its linear and matmul layers on lowbit's int8
grids, what lowbit computes in float (residual stream, LayerNorm, softmax, GELU) as int16
builtin ops on grids calibrated on the export's calibration images.

The writer and the interpreter come from LiteRT (``ai-edge-litert``), the ``edge`` extra
(``pip install 'lowbit[edge]'``); without it these functions raise :class:`EdgeExtraMissing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit.models.export._extras import EdgeExtraMissing, litert_schema, require_extra
from lowbit.models.export._qdq_grids import ExportError

__all__ = [
    "EdgeExtraMissing",
    "TFLiteModel",
    "build_tflite",
    "check_tflite",
    "litert_schema",
    "logits_grid",
    "require_extra",
    "run_tflite",
]

#: images of the test split whose per-layer codes are compared (as the ONNX check)
CODE_SAMPLES = 1000
_BATCH = 250


@dataclass(frozen=True, slots=True)
class TFLiteModel:
    """A TFLite flatbuffer and what its users need: ``input``/``output`` (name, shape, dtype,
    int8 scale and zero point, layout), the int8 (scale, zero point) of the logits (also
    with float I/O), operator counts, ``probes``: integer layer → (tensor index, layout
    back to the ONNX tensor) for the code check, and what its activations are."""

    content: bytes
    io: str
    input: dict[str, Any]
    output: dict[str, Any]
    logits_grid: tuple[float, int, str]
    operators: dict[str, int]
    probes: dict[str, tuple[int, tuple]]
    activations: str = "int8 per tensor"


def logits_grid(compressed: Any, *, samples: int = 2000) -> tuple[float, int, str]:
    """int16 (scale, zero point 0, ``"int16"``) of the logits, which lowbit leaves in float:
    the one grid the TFLite model adds. It spans twice the largest |logit| of the fake-quant
    model on the first ``samples`` images of ``val``, in 65,535 steps: an int8 grid's 255
    steps would tie close top logits (on ``mnist1d-mlp`` W8A8 one test image in 80 changed
    its argmax), so the classifier runs 16x8 (int16 input and output, int8 weights)."""
    import torch

    from lowbit.models.accuracy import as_model_input, logits
    from lowbit.models.data import load_split

    x, _ = load_split(compressed.dataset, "val")
    with torch.no_grad():
        out = logits(compressed, as_model_input(compressed, x[:samples])).numpy()
    peak = 2.0 * max(float(np.abs(out).max()), 1e-6)
    return float(np.float32(peak / 32767.0)), 0, "int16"


def _tensor_info(t: Any, *, layout: bool = True) -> dict[str, Any]:
    info: dict[str, Any] = {"name": t.name, "shape": ["batch", *t.shape[1:]], "dtype": t.dtype}
    if t.dtype in ("int8", "int16"):
        info["scale"] = float(t.scale[0])
        info["zero_point"] = int(t.zero_point[0])
    if layout:
        info["layout"] = "NHWC" if t.layout[0] == "nhwc" else "features"
    return info


def build_tflite(
    *, compressed: Any, qdq: Any, io: str = "int8", calib: Any | None = None
) -> TFLiteModel:
    """The fully-integer TFLite model of ``compressed`` from its QDQ ONNX graph ``qdq``
    (:func:`lowbit.models.export.onnx_quant.quantize_graph`'s output, before the ONNX
    Runtime kernel passes); an attention model (the zoo's ViT) from its structure
    (:mod:`lowbit.models.export._tflite_vit`), the int16 grids of the tensors lowbit keeps in
    float calibrated on ``calib`` (model inputs: the export's calibration images; default
    the whole val split). Raises :class:`ExportError` for operators TFLite's integer kernels
    do not cover here or layers running in float."""
    from lowbit.models.export._tflite_graph import convert, has_float_blocks
    from lowbit.models.export._tflite_vit import convert_vit
    from lowbit.models.export._tflite_write import serialize

    litert_schema()  # fail early, in one line, without the extra
    grid = logits_grid(compressed)
    if has_float_blocks(qdq):
        if calib is None:
            from lowbit.models.export.calib_subset import calibration_inputs

            calib = calibration_inputs(compressed)
        graph = convert_vit(compressed, calib=calib, logits_grid=grid, io=io)
        activations = (
            "int8 per tensor on lowbit's grids; int16 (calibrated) where lowbit computes in "
            "float: residual stream, LayerNorm, attention scores and softmax, GELU"
        )
    else:
        activations = "int8 per tensor"
        graph = convert(qdq, input_shape=tuple(compressed.input_shape), logits_grid=grid, io=io)
    content = serialize(graph, description=f"lowbit {getattr(compressed, 'zoo_name', '')}")
    operators: dict[str, int] = {}
    for op in graph.ops:
        operators[op.code] = operators.get(op.code, 0) + 1
    probes = {name: (idx, graph.tensors[idx].layout) for name, idx in graph.probes.items()}
    return TFLiteModel(
        content,
        io,
        _tensor_info(graph.tensors[graph.inputs[0]]),
        _tensor_info(graph.tensors[graph.outputs[0]]),
        grid,
        dict(sorted(operators.items())),
        probes,
        activations,
    )


def _interpreter(model: TFLiteModel, *, preserve: bool) -> Any:
    mod = require_extra(
        "ai_edge_litert.interpreter", package="ai-edge-litert", what="running a TFLite model"
    )
    return mod.Interpreter(
        model_content=model.content,
        num_threads=1,
        experimental_preserve_all_tensors=preserve,
        experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )


def _to_nhwc(x: np.ndarray) -> np.ndarray:
    if x.ndim == 4:
        return x.transpose(0, 2, 3, 1)
    if x.ndim == 3:
        return x.transpose(0, 2, 1)[:, None]
    return x


def _to_onnx(codes: np.ndarray, layout: tuple) -> np.ndarray:
    """TFLite int8 codes → lowbit's uint8 codes in the ONNX tensor's order, per sample."""
    codes = codes.astype(np.int64) + 128
    n = codes.shape[0]
    if layout[0] == "nhwc":
        return codes.transpose(0, 3, 1, 2).reshape(n, -1)
    flat = codes.reshape(n, -1)
    if layout[1] is None:
        return flat
    out = np.empty_like(flat)
    out[:, layout[1]] = flat
    return out


def run_tflite(
    model: TFLiteModel, x: np.ndarray, *, probes: bool = False, batch_size: int = _BATCH
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(float logits, per-layer uint8 input codes in ONNX order when ``probes``) of ``model``
    in the LiteRT interpreter on NCHW float inputs ``x``."""
    interp = _interpreter(model, preserve=probes)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    xs = _to_nhwc(np.asarray(x, np.float32))
    if model.io == "int8":
        s, z = model.input["scale"], model.input["zero_point"]
        xs = np.clip(np.round(xs / np.float32(s)) + z, -128, 127).astype(np.int8)
    logits, codes = [], {}
    for start in range(0, len(xs), batch_size):
        chunk = np.ascontiguousarray(xs[start : start + batch_size])
        interp.resize_tensor_input(inp["index"], list(chunk.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if model.io == "int8":
            y = (y.astype(np.float32) - model.output["zero_point"]) * model.output["scale"]
        logits.append(y.reshape(len(chunk), -1))
        for name, (idx, layout) in model.probes.items() if probes else ():
            codes.setdefault(name, []).append(_to_onnx(interp.get_tensor(idx), layout))
    merged = {name: np.concatenate(parts) for name, parts in codes.items()}
    return np.concatenate(logits), merged


def check_tflite(
    *,
    compressed: Any,
    model: TFLiteModel,
    int8: Any,
    qdq: Any,
    code_samples: int = CODE_SAMPLES,
    tolerance_pt: float = 0.5,
) -> dict[str, Any]:
    """TFLite (LiteRT) vs the INT8 ONNX model ``int8`` on the test split; per-layer code
    agreement against ``qdq`` (the graph before the ONNX Runtime passes: lowbit's channels
    and layer order) on its first ``code_samples`` images. Raises :class:`ExportError` when
    the accuracies differ by more than ``tolerance_pt`` points."""
    from lowbit.models.accuracy import EVAL_BATCH_SIZE, as_model_input
    from lowbit.models.data import load_split
    from lowbit.models.export._codecheck import int8_codes
    from lowbit.models.export.ort import ort_session, run_batched

    x, y = load_split(compressed.dataset, "test")
    xn = as_model_input(compressed, x).numpy()
    labels = y.numpy()
    onnx_logits = run_batched(ort_session(int8), xn, batch_size=EVAL_BATCH_SIZE)
    tfl_logits, _ = run_tflite(model, xn)
    head = xn[:code_samples]
    _, tfl_codes = run_tflite(model, head, probes=True)
    onnx_codes = int8_codes(qdq, head)
    agreement = {
        name: float((codes == onnx_codes[name].reshape(len(head), -1)).mean())
        for name, codes in tfl_codes.items()
        if name in onnx_codes
    }
    acc_tfl = float((tfl_logits.argmax(1) == labels).mean())
    acc_onnx = float((onnx_logits.argmax(1) == labels).mean())
    result = {
        "split": "test",
        "samples": len(labels),
        "runtime": "LiteRT interpreter, builtin int8 kernels, no delegate",
        "accuracy_tflite": acc_tfl,
        "accuracy_onnx_int8": acc_onnx,
        "accuracy_diff_pt": round(100 * (acc_tfl - acc_onnx), 4),
        "argmax_agreement": float((tfl_logits.argmax(1) == onnx_logits.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(tfl_logits - onnx_logits).max()),
        "logit_step": model.logits_grid[0],
        "code_check_samples": len(head),
        "min_code_agreement": min(agreement.values(), default=1.0),
        "code_agreement": agreement,
    }
    if abs(acc_tfl - acc_onnx) * 100 > tolerance_pt:
        raise ExportError(
            f"TFLite accuracy {acc_tfl:.2%} differs from the INT8 ONNX model's {acc_onnx:.2%} "
            f"by more than {tolerance_pt} points on test (a bug in the TFLite export)"
        )
    return result
