"""The ``layers`` section of a firmware config: what each compute layer of a compressed model
runs, as :mod:`lowbit.models.export.firmware` documents it (precision, kept channels,
sparsity, low rank, and per weight tensor its shape, conv geometry and quantization grids;
integer-kernel tensors in their deployed integer form, BatchNorm folded, bias as int32).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lowbit.models.compression._intbias import integer_layer, runs_integer
from lowbit.models.compression.lowrank import LOWRANK_LAYERS, LowRankConv, LowRankLinear
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.compression.quant import QuantLayer, QuantMatMul
from lowbit.models.export._firmware_schema import INT8_QMAX, INT8_QMIN
from lowbit.models.graph import COMPUTE_LAYERS, MatMulSite

__all__ = ["layer_entries"]


def _indices(value: Any) -> list[int] | None:
    return None if value is None else [int(i) for i in torch.as_tensor(value).reshape(-1)]


def _floats(value: torch.Tensor) -> list[float]:
    return [float(v) for v in value.detach().reshape(-1)]


def _weight_grid(layer: nn.Module) -> dict[str, Any] | None:
    """The trained weight grid of a QuantLayer (per channel or per tensor), or None."""
    if not isinstance(layer, QuantLayer) or layer.w_bits is None:
        return None
    return {
        "bits": layer.w_bits,
        "granularity": "per_channel" if layer.per_channel else "per_tensor",
        "symmetric": layer.symmetric,
        "qmin": int(layer.weight_qmin),
        "qmax": int(layer.weight_qmax),
        "scale": _floats(layer.weight_scale),
        "zero_point": [int(v) for v in layer.weight_zero_point.reshape(-1)],
    }


def _int8_zero_points(levels: torch.Tensor, name: str) -> torch.Tensor:
    """Per-channel zero points storing ``levels`` (output channels first) as int8: 0 unless
    a channel's levels need a shift to fit (a −128 code negated by a folded BatchNorm, an
    asymmetric 8-bit grid), the rule ``models.onnx_quant`` stores ``s8`` weights by."""
    flat = levels.reshape(levels.shape[0], -1)
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    if int((hi - lo).max()) > INT8_QMAX - INT8_QMIN:
        raise ValueError(f"{name}: weight levels span more than 8 bits")
    zero = torch.zeros_like(lo)
    return torch.minimum(torch.maximum(zero, INT8_QMIN - lo), INT8_QMAX - hi)


def _integer_form(name: str, layer: nn.Module, names: dict[int, str]) -> dict[str, Any]:
    """Weight grid, int32 bias and folded BatchNorm of a layer that runs on integer kernels,
    as deployed (:func:`lowbit.models.compression._intbias.integer_layer`, the form the exporter
    writes)."""
    bn = layer.folded_batchnorm
    if bn is not None and id(bn) not in names:
        raise ValueError(f"{name}: its folded BatchNorm is not a module of the model")
    form = integer_layer(layer, batchnorm=bn)
    zero_points = _int8_zero_points(form.codes, name)
    weight = {
        "bits": layer.w_bits,
        "granularity": "per_channel",
        "symmetric": layer.symmetric,
        "qmin": INT8_QMIN,
        "qmax": INT8_QMAX,
        "scale": _floats(form.weight_scales),
        "zero_point": [int(v) for v in zero_points],
    }
    bias = None
    if form.bias_codes is not None:
        # the accumulator grid s_x·s_w[c] in float32, as models.onnx_quant writes the bias
        # scale (and models._intbias rounds the bias to it)
        step = (layer.act_scale.detach().float().double() * form.weight_scales.double()).float()
        bias = {"bits": 32, "scale": _floats(step), "codes": [int(v) for v in form.bias_codes]}
    return {
        "runs_as": "int8",
        "folded_batchnorm": None if bn is None else names[id(bn)],
        "weight": weight,
        "bias": bias,
    }


def _act_grid(bits, scale, zero_point, qmin, qmax) -> dict[str, Any] | None:
    """An activation grid (per tensor), or None when float or not calibrated."""
    if bits is None or scale is None:
        return None
    return {
        "bits": bits,
        "qmin": int(qmin),
        "qmax": int(qmax),
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def _tensor(name: str, layer: nn.Module, names: dict[int, str]) -> dict[str, Any]:
    """One weight tensor a layer runs: shape, geometry, how it runs, grids and bias."""
    entry: dict[str, Any] = {"name": name, "weight_shape": list(layer.weight.shape)}
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        entry.update(
            kernel_size=list(layer.kernel_size),
            stride=list(layer.stride),
            padding=list(layer.padding) if not isinstance(layer.padding, str) else layer.padding,
            dilation=list(layer.dilation),
            groups=layer.groups,
        )
    quant = isinstance(layer, QuantLayer)
    if quant and runs_integer(layer):
        entry.update(_integer_form(name, layer, names))
    else:  # float compute: the trained grid (if any) and the float bias stay as they are
        entry.update(runs_as="float", folded_batchnorm=None, weight=_weight_grid(layer), bias=None)
    entry["input"] = (
        _act_grid(
            layer.a_bits, layer.act_scale, layer.act_zero_point, layer.act_qmin, layer.act_qmax
        )
        if quant
        else None
    )
    return entry


def _kind(layer: nn.Module) -> str:
    if isinstance(layer, (nn.Linear, LowRankLinear)):
        return "linear"
    inner = layer.first if isinstance(layer, LowRankConv) else layer
    return "conv1d" if isinstance(inner, nn.Conv1d) else "conv2d"


def _sparsity(parts: list[nn.Module], spec_nm) -> dict[str, Any]:
    masks = [p.weight_mask for p in parts if getattr(p, "weight_mask", None) is not None]
    if not masks:
        return {"nm": None, "density": 1.0}
    kept = sum(float(m.sum()) for m in masks)
    return {
        "nm": list(spec_nm) if spec_nm else None,
        "density": kept / sum(m.numel() for m in masks),
    }


def layer_entries(model: nn.Module, plan: CompressionPlan) -> list[dict[str, Any]]:
    out, inside = [], set()
    names = {id(m): n for n, m in model.named_modules()}
    for name, module in model.named_modules():
        if not name or any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(module, MatMulSite):
            a_bits = getattr(module, "a_bits", None)
            grids = (None, None)
            if isinstance(module, QuantMatMul):
                grids = (
                    _act_grid(
                        a_bits,
                        module.act_scale,
                        module.act_zero_point,
                        module.act_qmin,
                        module.act_qmax,
                    ),
                    _act_grid(
                        a_bits, module.b_scale, module.b_zero_point, module.b_qmin, module.b_qmax
                    ),
                )
            out.append(
                {
                    "name": name,
                    "kind": "matmul",
                    "w_bits": a_bits,
                    "a_bits": a_bits,
                    "tensors": [
                        {
                            "name": name,
                            "runs_as": "int8" if None not in grids else "float",
                            "input": grids[0],
                            "input_b": grids[1],
                        }
                    ],
                }
            )
            continue
        if not isinstance(module, (*COMPUTE_LAYERS, *LOWRANK_LAYERS)):
            continue
        inside.add(name)
        parts = (
            [(f"{name}.first", module.first), (f"{name}.second", module.second)]
            if isinstance(module, LOWRANK_LAYERS)
            else [(name, module)]
        )
        first, last = parts[0][1], parts[-1][1]
        out.append(
            {
                "name": name,
                "kind": _kind(module),
                "w_bits": getattr(first, "w_bits", None),
                "a_bits": getattr(first, "a_bits", None),
                "in_channels": int(first.weight.shape[1] * getattr(first, "groups", 1)),
                "out_channels": int(last.weight.shape[0]),
                "kept_out_channels": _indices(getattr(module, "kept_out_channels", None)),
                "kept_in_channels": _indices(getattr(module, "kept_in_channels", None)),
                "low_rank": (
                    {"rank": int(module.rank)} if isinstance(module, LOWRANK_LAYERS) else None
                ),
                "sparsity": _sparsity([p for _, p in parts], plan.resolve(name).nm),
                "tensors": [_tensor(part_name, part, names) for part_name, part in parts],
            }
        )
    return out
