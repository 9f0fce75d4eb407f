"""Layer by layer: do the fake-quant model and the INT8 ONNX model round to the same codes?

Each integer layer reads uint8 activation codes. ONNX Runtime's are the inputs of the
DequantizeLinear nodes feeding each Conv/Gemm/MatMul, residual Add (``QLinearAdd``) and
GlobalAveragePool (exposed as extra graph outputs; the logits must stay bit-identical, so
the exposure did not change what ONNX Runtime fused). The fake-quant model's are what each
quantized layer rounds its input to (signed grids shifted by 128, as
:func:`lowbit.models.export.deploy.act_grid` stores them); an add's second input is named
``"<name>:b"`` like a MatMul's.

End to end, one code that differs upstream changes many codes downstream (8-bit layers
amplify it most). ``teacher_forced=True`` feeds every quantized layer ONNX Runtime's input
codes instead, so a layer's agreement measures only the computation between it and the
integer layers before it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit.models.graph import run_hooked

__all__ = ["code_agreement", "fake_quant_codes", "int8_codes"]

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
    from lowbit.models.export.onnx_quant import ExportError
    from lowbit.models.export.ort import INPUT_NAME

    outs = sessions[0].run(None, {INPUT_NAME: x})
    if not np.array_equal(outs[0], sessions[1].run(None, {INPUT_NAME: x})[0]):
        raise ExportError("exposing intermediate codes changed the INT8 model's outputs")
    return {name: out.astype(np.int64) for name, out in zip(names, outs[1:], strict=True)}


def int8_codes(int8: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Input codes of every integer Conv/Gemm/MatMul/Add/GlobalAveragePool of QDQ model
    ``int8`` run by ONNX Runtime on ``x``, by torch module name (a second activation operand
    under ``":b"``)."""
    from lowbit.models.export.ort import ort_session

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
    from lowbit.models.export.ort import ort_session

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
