"""Layer by layer: do the fake-quant model and the INT8 ONNX model round to the same codes?

Each integer layer reads uint8 activation codes. ONNX Runtime's are the inputs of the
DequantizeLinear nodes feeding each Conv/Gemm/MatMul (exposed as extra graph outputs; the
logits must stay bit-identical, so the exposure did not change what ONNX Runtime fused).
The fake-quant model's are what each quantized layer rounds its input to (signed grids
shifted by 128, as :func:`lowbit.models.export.deploy.act_grid` stores them).

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

_COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


def _codes(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int) -> np.ndarray:
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    return (q + (128 if qmin < 0 else 0)).to(torch.int64).numpy()


@torch.no_grad()
def fake_quant_codes(
    model: nn.Module, x: torch.Tensor, *, force: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Input codes of every quantized layer of ``model`` on ``x`` (a MatMul site's second
    operand under ``"<name>:b"``); with ``force`` (codes by the same names), each layer
    then reads the forced codes instead of its own."""
    from lowbit.models.compression.quant import QuantLayer, QuantMatMul

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
        if isinstance(m, QuantLayer):

            def pre(mod, args, n=name):
                return (visit(mod, n, args[0], False),)

        elif isinstance(m, QuantMatMul):

            def pre(mod, args, n=name):
                return visit(mod, n, args[0], False), visit(mod, n + ":b", args[1], True)

        else:
            continue
        handles.append(m.register_forward_pre_hook(pre))
    run_hooked(model, x, handles=handles)
    return codes


def int8_codes(int8: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Input codes of every integer Conv/Gemm/MatMul of QDQ model ``int8`` run by ONNX
    Runtime on ``x``, by torch module name (a second activation operand under ``":b"``)."""
    import onnx
    from onnx import helper

    from lowbit.models.export.onnx_quant import ExportError, scope_of
    from lowbit.models.export.ort import INPUT_NAME, ort_session

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
    outs = ort_session(model).run(None, {INPUT_NAME: x})
    plain = ort_session(int8).run(None, {INPUT_NAME: x})[0]
    if not np.array_equal(outs[0], plain):
        raise ExportError("exposing intermediate codes changed the INT8 model's outputs")
    return {name: out.astype(np.int64) for name, out in zip(exposed, outs[1:], strict=True)}


def code_agreement(
    model: nn.Module, int8: Any, x: torch.Tensor, *, teacher_forced: bool = False
) -> dict[str, float]:
    """Fraction of equal input codes per integer layer, fake-quant ``model`` vs ``int8``
    (end to end, or ``teacher_forced``: see the module docstring)."""
    real = int8_codes(int8, x.numpy())
    fake = fake_quant_codes(model, x, force=real if teacher_forced else None)
    return {
        name: float(np.mean(fake[name].reshape(codes.shape) == codes))
        for name, codes in real.items()
        if name in fake
    }
