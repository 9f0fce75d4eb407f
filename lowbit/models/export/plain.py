"""A compressed model as a plain float network plus the grids its layers run on: what
:mod:`lowbit.models.export.deploy` exports to ONNX and quantizes.

:func:`deploy_copy` unwraps the quantization wrappers of a ``models.compress`` result into
plain ``Linear``/``Conv`` layers, folds BatchNorm into the preceding convolution, replaces
quantized residual adds and global pools by their float modules, and returns one
:class:`~lowbit.models.export.onnx_quant.LayerQuant` per quantized layer (the grids
:func:`~lowbit.models.export.onnx_quant.quantize_graph` writes) and one deploy.json row per
layer.

Folding BatchNorm keeps weights on a grid: a channel's codes are unchanged (their sign flips
with a negative BN scale) and its scale is multiplied by |γ/σ|, so a per-tensor grid becomes
a per-channel one with the same codes. The folded bias is rounded to the int32 accumulator
grid; the fake-quant model rounds it the same way
(:mod:`lowbit.models.compression._intbias`), and the codes, scales and bias written here
come from the same function, so the INT8 model computes what the search measured; the
fake-quant model also requantizes each integer layer's output and computes residual adds and
global pooling as ONNX Runtime's kernels do
(:mod:`lowbit.models.compression.quant_residual`), so the codes agree to the bit.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lowbit.models.compression._bn_fold import conv_bn_pairs, fold_batchnorm_float
from lowbit.models.compression._intbias import IntegerLayer, integer_layer, runs_integer
from lowbit.models.compression.quant import QuantLayer, QuantMatMul
from lowbit.models.compression.quant_residual import QuantAdd, QuantGlobalAvgPool
from lowbit.models.export.onnx_quant import ActGrid, ExportError, LayerQuant, WeightGrid
from lowbit.models.graph import COMPUTE_LAYERS, MatMulSite
from lowbit.models.zoo._base import Add

__all__ = ["act_grid", "deploy_copy"]


def act_grid(scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> ActGrid:
    """A :mod:`lowbit.models.compression.quant` activation grid as uint8 codes (signed grids shift
    by 128)."""
    shift = 128 if qmin < 0 else 0
    return ActGrid(float(scale), int(zero_point) + shift, qmin + shift, qmax + shift)


def _weight_grid(layer: QuantLayer, bn: nn.Module | None) -> tuple[WeightGrid, IntegerLayer]:
    """The grid of ``layer``'s quantized weights (``bn`` folded in) and its integer form."""
    w = layer.weight.detach().double()
    view = (-1,) + (1,) * (w.dim() - 1)
    scale = layer.weight_scale.double().reshape(view if layer.per_channel else ())
    if float((torch.round(w / scale) * scale - w).abs().max()) > 1e-5 * float(w.abs().max()):
        raise ExportError("a quantized layer's weights are off their grid (requantize first)")
    form = integer_layer(layer, batchnorm=bn)
    scales = form.weight_scales.double().numpy().copy()
    return WeightGrid(form.codes.numpy().copy(), scales, int(layer.w_bits)), form


@torch.no_grad()
def _set_integer_weights(plain: nn.Module, form: IntegerLayer) -> None:
    """Weights codes · scales and the int32 bias times its scale: the integer kernel's."""
    view = (-1,) + (1,) * (form.codes.dim() - 1)
    plain.weight.copy_(form.codes.double() * form.weight_scales.double().reshape(view))
    if form.bias is not None:
        plain.bias.copy_(form.bias)


def _plain(layer: nn.Module, *, bias: bool) -> nn.Module:
    """A plain float Linear/Conv with ``layer``'s geometry and weights."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=bias)
    else:
        kind = nn.Conv1d if isinstance(layer, nn.Conv1d) else nn.Conv2d
        new = kind(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=bias,
            padding_mode=layer.padding_mode,
        )
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if new.bias is not None:
            new.bias.copy_(layer.bias if layer.bias is not None else torch.zeros(new.bias.shape))
    return new.eval()


def deploy_copy(
    compressed: nn.Module,
) -> tuple[nn.Module, list[LayerQuant], list[dict[str, Any]]]:
    """A plain float copy of a compressed model plus the grids its layers run on.

    Returns:
        (float module with BatchNorm folded and wrappers removed, one :class:`LayerQuant`
        per quantized layer, one row per compute layer and per quantized residual add or
        global pool for deploy.json).
    """
    model = copy.deepcopy(compressed).eval()
    pairs = conv_bn_pairs(model, torch.zeros(1, *model.input_shape))
    quants: list[LayerQuant] = []
    rows: list[dict[str, Any]] = []
    for name, module in list(model.named_modules()):
        if isinstance(module, (QuantAdd, QuantGlobalAvgPool)):
            quant = _residual_site(module, name)
            if quant is not None:
                quants.append(quant)
                rows.append(_row(name, quant.kind, None, module, True))
            if isinstance(module, QuantAdd):
                model.set_submodule(name, Add())
            else:
                model.set_submodule(name, nn.AdaptiveAvgPool2d(module.output_size))
            continue
        if isinstance(module, MatMulSite):
            grids = (None, None)
            if isinstance(module, QuantMatMul) and module.a_bits is not None:
                grids = (
                    act_grid(
                        module.act_scale, module.act_zero_point, module.act_qmin, module.act_qmax
                    ),
                    act_grid(module.b_scale, module.b_zero_point, module.b_qmin, module.b_qmax),
                )
                quants.append(LayerQuant(name, "matmul", grids))
                model.set_submodule(name, MatMulSite())
            rows.append(_row(name, "matmul", None, module, grids[0] is not None))
            continue
        if not isinstance(module, COMPUTE_LAYERS):
            continue
        bn_name = pairs.get(name)
        bn = model.get_submodule(bn_name) if bn_name is not None else None
        quant = isinstance(module, QuantLayer)
        plain = _plain(module, bias=module.bias is not None or bn is not None)
        grid = form = None
        if quant and module.w_bits is not None:
            grid, form = _weight_grid(module, bn)
        if form is not None and runs_integer(module):
            _set_integer_weights(plain, form)
        elif bn is not None:
            fold_batchnorm_float(plain, bn)
        if bn_name is not None:
            model.set_submodule(bn_name, nn.Identity())
        model.set_submodule(name, plain)
        a = None
        if quant and module.a_bits is not None and module.act_scale is not None:
            a = act_grid(module.act_scale, module.act_zero_point, module.act_qmin, module.act_qmax)
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        if quant:
            quants.append(LayerQuant(name, kind, (a,), grid))
        rows.append(_row(name, kind, plain, module, a is not None and grid is not None))
    return model.eval(), quants, rows


def _residual_site(module: QuantAdd | QuantGlobalAvgPool, name: str) -> LayerQuant | None:
    """The grids of a quantized residual add (inputs a, b) or global pool (input), with
    their output grid; None if it stays float."""
    if module.a_bits is None or module.act_scale is None:
        return None
    prefixes = ("act", "b") if isinstance(module, QuantAdd) else ("act",)
    inputs = tuple(act_grid(*module.grid(p)) for p in prefixes)
    kind = "add" if isinstance(module, QuantAdd) else "pool"
    return LayerQuant(name, kind, inputs, output=act_grid(*module.grid("out")))


def _row(name: str, kind: str, plain: nn.Module | None, module: nn.Module, integer: bool):
    w_bits = getattr(module, "w_bits", None)
    a_bits = getattr(module, "a_bits", None)
    if integer:
        runs_as = "int8"
    elif w_bits is None and a_bits is None:
        runs_as = "float"
    else:
        runs_as = "float (quantized values, float compute)"
    row: dict[str, Any] = {"name": name, "kind": kind, "w_bits": w_bits, "a_bits": a_bits}
    if plain is not None:
        row["weight_shape"] = list(plain.weight.shape)
        kept = getattr(module, "kept_out_channels", None)
        if kept is not None:
            row["kept_out_channels"] = len(kept)
    row["runs_as"] = runs_as
    return row
