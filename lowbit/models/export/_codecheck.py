"""Layer by layer: do the fake-quant model and the INT8 ONNX model round to the same codes?

Each integer layer reads uint8 activation codes. ONNX Runtime's are the inputs of the
DequantizeLinear nodes feeding each Conv/Gemm/MatMul, residual Add (``QLinearAdd``) and
GlobalAveragePool (exposed as extra graph outputs; the logits must stay bit-identical, so
the exposure did not change what ONNX Runtime fused). The fake-quant model's are what each
quantized layer rounds its input to (signed grids shifted by 128, as
:func:`lowbit.models.export.plain.act_grid` stores them); an add's second input is named
``"<name>:b"`` like a MatMul's.

End to end, one code that differs upstream changes many codes downstream (8-bit layers
amplify it most). ``teacher_forced=True`` feeds every quantized layer ONNX Runtime's input
codes instead, so a layer's agreement measures only the computation between it and the
integer layers before it.

:func:`check_export` runs both models on the test split: outputs, accuracies and, on its
first :data:`CODE_CHECK_SAMPLES` images, the code agreement (deploy.json's ``check``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit.models.export.onnx_quant import ExportError
from lowbit.models.export.ort import INPUT_NAME, ort_session, run_batched
from lowbit.models.graph import run_hooked

__all__ = [
    "CODE_CHECK_SAMPLES",
    "check_export",
    "code_agreement",
    "fake_quant_codes",
    "int8_codes",
]

_COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool")


def _codes(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int) -> np.ndarray:
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    return (q + (128 if qmin < 0 else 0)).to(torch.int64).numpy()


@torch.no_grad()
def fake_quant_codes(
    model: nn.Module, x: torch.Tensor, *, force: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Input codes of every quantized layer of ``model`` on ``x`` (a MatMul site's or
    residual add's second operand under ``"<name>:b"``); with ``force`` (codes by the same
    names), each layer then reads the forced codes instead of its own."""
    from lowbit.models.compression.quant import (
        QuantAdd,
        QuantGlobalAvgPool,
        QuantLayer,
        QuantMatMul,
    )

    codes: dict[str, np.ndarray] = {}

    def grid_of(mod: nn.Module, second: bool) -> tuple:
        if second:
            return mod.b_scale, mod.b_zero_point, mod.b_qmin, mod.b_qmax
        return mod.act_scale, mod.act_zero_point, mod.act_qmin, mod.act_qmax

    def visit(mod: nn.Module, name: str, value: torch.Tensor, second: bool) -> torch.Tensor:
        scale, zero, qmin, qmax = grid_of(mod, second)
        codes[name] = _codes(value, scale, zero, qmin, qmax)
        if force is None or name not in force:
            return value
        forced = torch.from_numpy(force[name].reshape(value.shape)) - (128 if qmin < 0 else 0)
        return ((forced - zero) * scale).to(value.dtype)

    handles = []
    for name, m in model.named_modules():
        if getattr(m, "a_bits", None) is None or getattr(m, "act_scale", None) is None:
            continue
        if isinstance(m, (QuantLayer, QuantGlobalAvgPool)):

            def pre(mod, args, n=name):
                return (visit(mod, n, args[0], False),)

        elif isinstance(m, (QuantMatMul, QuantAdd)):

            def pre(mod, args, n=name):
                return visit(mod, n, args[0], False), visit(mod, n + ":b", args[1], True)

        else:
            continue
        handles.append(m.register_forward_pre_hook(pre))
    run_hooked(model, x, handles=handles)
    return codes


def _exposed(int8: Any) -> tuple[Any, dict[str, str]]:
    """A copy of QDQ model ``int8`` with the input codes of every integer
    Conv/Gemm/MatMul/Add/GlobalAveragePool as extra outputs, and layer name (a second
    activation operand under ``":b"``) -> exposed tensor."""
    import onnx
    from onnx import helper

    from lowbit.models.export.onnx_quant import scope_of

    model = onnx.ModelProto()
    model.CopyFrom(int8)
    made = {out: node for node in model.graph.node for out in node.output}
    inits = {t.name for t in model.graph.initializer}
    exposed: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in _COMPUTE_OPS:
            continue
        for idx, suffix in ((0, ""), (1, ":b")):
            src = made.get(node.input[idx]) if idx < len(node.input) else None
            if src is not None and src.op_type == "DequantizeLinear" and src.input[0] not in inits:
                exposed[scope_of(node) + suffix] = src.input[0]
    for tensor in exposed.values():
        info = helper.make_tensor_value_info(tensor, onnx.TensorProto.UINT8, None)
        model.graph.output.append(info)
    return model, exposed


def _run_codes(sessions: tuple[Any, Any], names: list[str], x: np.ndarray):
    """Codes by layer name from the exposing session, checked against the plain one."""
    outs = sessions[0].run(None, {INPUT_NAME: x})
    if not np.array_equal(outs[0], sessions[1].run(None, {INPUT_NAME: x})[0]):
        raise ExportError("exposing intermediate codes changed the INT8 model's outputs")
    return {name: out.astype(np.int64) for name, out in zip(names, outs[1:], strict=True)}


def int8_codes(int8: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Input codes of every integer Conv/Gemm/MatMul/Add/GlobalAveragePool of QDQ model
    ``int8`` run by ONNX Runtime on ``x``, by torch module name (a second activation operand
    under ``":b"``)."""
    model, exposed = _exposed(int8)
    return _run_codes((ort_session(model), ort_session(int8)), list(exposed), x)


def code_agreement(
    model: nn.Module,
    int8: Any,
    x: torch.Tensor,
    *,
    teacher_forced: bool = False,
    batch_size: int = 256,
) -> dict[str, float]:
    """Fraction of equal input codes per integer layer, fake-quant ``model`` vs ``int8``
    (end to end, or ``teacher_forced``: see the module docstring), counted over ``x`` in
    batches of ``batch_size`` samples (every layer's codes of a whole split at once would
    not fit in memory for 28×28 images)."""
    exposing, exposed = _exposed(int8)
    sessions = (ort_session(exposing), ort_session(int8))
    equal: dict[str, int] = {}
    total: dict[str, int] = {}
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        real = _run_codes(sessions, list(exposed), chunk.numpy())
        fake = fake_quant_codes(model, chunk, force=real if teacher_forced else None)
        for name, codes in real.items():
            if name in fake:
                same = int((fake[name].reshape(codes.shape) == codes).sum())
                equal[name] = equal.get(name, 0) + same
                total[name] = total.get(name, 0) + codes.size
    return {name: equal[name] / total[name] for name in equal}


#: test images the per-layer code comparison and the QDQ-vs-kernel-pass equality run on
#: (the first of the split): each exposes every layer's codes, several times the cost of
#: a forward pass; the accuracies and the logit comparison use the whole split
CODE_CHECK_SAMPLES = 1000


@torch.no_grad()
def check_export(
    compressed: nn.Module,
    int8: Any,
    fp32: Any,
    *,
    qdq: Any,
    code_samples: int = CODE_CHECK_SAMPLES,
) -> dict[str, Any]:
    """INT8 ONNX vs fake-quant torch outputs (and FP32 ONNX accuracy) on the test split, and
    on its first ``code_samples`` images the fraction of equal activation codes per integer
    layer, end to end and with each layer fed ONNX Runtime's input codes (``_forced``,
    :mod:`lowbit.models.export._codecheck`). The codes are read from ``qdq``, the INT8 graph
    before channel padding and
    :func:`~lowbit.models.export._onnx_layout.flatten_channels_last` (the fake-quant model's
    channels and layer order); ``int8`` must compute exactly what it does (checked on the
    same images). Every forward runs in batches of
    :data:`~lowbit.models.accuracy.EVAL_BATCH_SIZE` (cache-sized; same results)."""
    from lowbit.models.accuracy import EVAL_BATCH_SIZE, as_model_input, logits
    from lowbit.models.data import load_split

    x, y = load_split(compressed.dataset, "test")
    x = as_model_input(compressed, x)
    fake = logits(compressed, x).numpy()
    xn = x.numpy()
    real = run_batched(ort_session(int8), xn, batch_size=EVAL_BATCH_SIZE)
    flt = run_batched(ort_session(fp32), xn, batch_size=EVAL_BATCH_SIZE)
    labels = y.numpy()
    head = x[:code_samples]
    unpadded = run_batched(ort_session(qdq), head.numpy(), batch_size=EVAL_BATCH_SIZE)
    if not np.array_equal(real[: len(head)], unpadded):
        raise ExportError(
            "the INT8 graph after the export's kernel passes (channel padding, channels-last "
            "flatten) does not compute what the QDQ graph does"
        )
    codes = code_agreement(compressed, qdq, head)
    forced = code_agreement(compressed, qdq, head, teacher_forced=True)
    return {
        "split": "test",
        "samples": len(labels),
        "code_check_samples": len(head),
        "argmax_agreement": float((fake.argmax(1) == real.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(fake - real).max()),
        "logit_range": float(np.abs(fake).max()),
        "accuracy_int8": float((real.argmax(1) == labels).mean()),
        "accuracy_fake_quant": float((fake.argmax(1) == labels).mean()),
        "accuracy_fp32_onnx": float((flt.argmax(1) == labels).mean()),
        "min_code_agreement": min(codes.values(), default=1.0),
        "min_code_agreement_forced": min(forced.values(), default=1.0),
        "code_agreement": codes,
        "code_agreement_forced": forced,
    }
