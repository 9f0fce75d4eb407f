"""The integer form of a quantized layer once deployed, and the int32 bias it adds.

ONNX Runtime's integer Conv/Gemm kernels (QLinearConv, QGemm) accumulate
``acc = Σ x_code·w_code + bias_code`` in int32 and scale ``acc`` by ``s_x·s_w[c]``: the bias
is an int32 on the accumulator grid ``s_x·s_w[c]``, not a float. A BatchNorm that reads a
conv's output is folded into the conv first (weights·f, bias·f + shift, f = γ/√(σ²+ε) per
channel), so its shift is rounded to that grid too. :func:`integer_layer` computes this form
in one place: the fake-quant model's inference computes with exactly these codes and this
bias (:meth:`lowbit.models.compression.quant.QuantLayer.forward`,
:mod:`lowbit.models.compression._bn_fold`) and the
exporter writes exactly them (:mod:`lowbit.models.export.deploy`), so the search measures what the
INT8 model computes.

The rounding is small (in the digits-cnn demo configs at most 0.033 of the next layer's
grid step) but matters: with low-bit inputs and weights a channel's accumulator takes few
distinct values, and a constant input patch (the digits' zero background, zero padding)
gives the same value everywhere, so one rounding decision is shared by many elements. With a
float bias, 0.04-10 % of a layer's activation codes differed from ONNX Runtime's.

Refinement: a channel's weight codes are multiplied by the largest integer k with
``|code·k| <= REFINE_LIMIT`` and its scale divided by k (the same weight values on a k-times
finer integer scale, so a k-times finer bias grid). The limit is the same on every host so
the bias grid, and thus the measured accuracy, does not depend on the CPU: 64 keeps u8·s8
products summed in pairs in int16 (AVX2 without VNNI, ``vpmaddubsw``) from saturating,
2·255·64 = 32640 <= 32767.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "REFINE_LIMIT",
    "IntegerLayer",
    "batchnorm_affine",
    "bias_rounded",
    "integer_inference",
    "integer_layer",
    "output_grid",
    "requantize",
    "runs_integer",
]

#: largest |weight code| after refinement (module docstring)
REFINE_LIMIT = 64
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True, slots=True)
class IntegerLayer:
    """A quantized layer as its integer kernel runs it; output channels first.

    Attributes:
        codes: weight codes (int64, the weight's shape) with a folded BatchNorm's sign and
            the refinement applied: weight = codes · weight_scales[c].
        weight_scales: float32 (out,) per-channel scales, as stored in the ONNX model.
        bias: float64 (out,) the bias the kernel adds, bias_codes · s_x · weight_scales[c]
            with s_x the input scale; None without bias and BatchNorm or input grid.
        bias_codes: int64 (out,) the int32 bias codes; None likewise.
        float_bias: float64 (out,) the bias before rounding (BatchNorm folded); None without
            bias and BatchNorm.
    """

    codes: torch.Tensor
    weight_scales: torch.Tensor
    bias: torch.Tensor | None
    bias_codes: torch.Tensor | None
    float_bias: torch.Tensor | None


def runs_integer(layer: nn.Module) -> bool:
    """``layer`` runs on integer kernels once deployed: weights and input quantized and the
    input grid calibrated."""
    return (
        getattr(layer, "w_bits", None) is not None
        and getattr(layer, "a_bits", None) is not None
        and getattr(layer, "act_scale", None) is not None
    )


def bias_rounded(layer: nn.Module) -> bool:
    """The fake-quant forward of ``layer`` uses the deployed (rounded) bias: in eval mode, on
    integer layers, not while calibrating. Training (QAT) keeps the float bias, as PyTorch's
    QAT leaves bias quantization to the conversion: the rounding moves a value by at most
    half an accumulator step, far below the output grid's step the straight-through
    estimator works at, and the training steps stay as cheap as before."""
    return not layer.training and layer.observed is None and runs_integer(layer)


def integer_inference(layer: nn.Module) -> bool:
    """Inference computes ``layer`` (with its folded BatchNorm) as the integer kernel does:
    the rounded bias applies, no gradient is needed and a folded BatchNorm uses its running
    statistics (see :meth:`lowbit.models.compression.quant.QuantLayer.forward`)."""
    bn = getattr(layer, "folded_batchnorm", None)
    return bias_rounded(layer) and not torch.is_grad_enabled() and (bn is None or not bn.training)


def batchnorm_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(factor, shift) in float64 with eval-mode ``bn(y) = factor·y + shift`` per channel."""
    factor = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * factor
    if bn.affine:
        factor = factor * bn.weight.detach().double()
        shift = shift * bn.weight.detach().double() + bn.bias.detach().double()
    return factor, shift


@torch.no_grad()
def integer_layer(
    layer: nn.Module, *, batchnorm: nn.modules.batchnorm._BatchNorm | None = None
) -> IntegerLayer:
    """The integer form of quantized ``layer`` (with ``batchnorm`` folded into it, if given).

    Args:
        layer: a :class:`lowbit.models.compression.quant.QuantLayer` with quantized weights; the
        bias is
            rounded only if it :func:`runs_integer` (else ``bias`` is None).
        batchnorm: the BatchNorm reading ``layer``'s output, folded as the exporter folds it;
            a channel with factor 0 keeps its scale and gets zero codes.
    Returns:
        The codes, scales and rounded bias (see :class:`IntegerLayer`).
    """
    codes = layer.weight_codes()
    out = codes.shape[0]
    view = (-1,) + (1,) * (codes.dim() - 1)
    scales = layer.weight_scale.detach().double().reshape(-1).expand(out)
    bias = None if layer.bias is None else layer.bias.detach().double()
    if batchnorm is not None:
        factor, shift = batchnorm_affine(batchnorm)
        codes = codes * torch.sign(factor).reshape(view)  # sign(0) = 0: a dead channel
        scales = torch.where(factor == 0, scales, scales * factor.abs())
        bias = shift if bias is None else bias * factor + shift
    peak = codes.abs().reshape(out, -1).amax(dim=1).clamp_min(1)
    k = torch.clamp(REFINE_LIMIT // peak, min=1)
    codes = codes * k.reshape(view)
    # float32 per-channel scales as the ONNX model stores them (rounded before and after /k,
    # as models.onnx_quant computes them)
    weight_scales = (scales.float().double() / k).float()
    if bias is None or not runs_integer(layer):  # no bias, or no input grid to round it on
        return IntegerLayer(codes.long(), weight_scales, None, None, bias)
    step = (layer.act_scale.detach().float().double() * weight_scales.double()).float().double()
    bias_codes = torch.round(bias / step).clamp(_INT32_MIN, _INT32_MAX)
    return IntegerLayer(codes.long(), weight_scales, bias_codes * step, bias_codes.long(), bias)


def requantize(
    acc: torch.Tensor, scale: torch.Tensor, s_y: torch.Tensor, zero_point: int, qmin: int, qmax: int
) -> torch.Tensor:
    """The output of a fused integer Conv/Gemm with a quantized output, dequantized: the
    exact accumulator ``acc`` requantized onto grid (s_y, zero_point, qmin, qmax) as ONNX
    Runtime does it (``QLinearConv``/``QGemm`` compute one float32 multiplier per channel,
    ``fl(fl(s_x·s_w[c]) / s_y)``, and ``MlasRequantizeOutput`` rounds
    ``fl(fl(acc) · multiplier)`` half to even, clamped to the uint8 codes; a sub-8-bit grid
    then clamps to its codes, the exporter's Clip). ``scale`` is ``fl(s_x·s_w[c])`` shaped to
    broadcast against ``acc``; codes and clamps are in the uint8 space the model stores
    (a signed grid shifted by 128)."""
    shift = 128 if qmin < 0 else 0
    zp = zero_point + shift
    s_y = s_y.float()
    codes = torch.round(acc.float() * (scale / s_y))
    codes = torch.clamp(codes, -zp, 255 - zp) + zp
    codes = torch.clamp(codes, qmin + shift, qmax + shift)
    return (codes - zp) * s_y


def output_grid(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int, int, int] | None:
    """(scale, zero_point, qmin, qmax) of the grid ONNX Runtime's fused kernel writes
    ``layer``'s output on when ``layer`` reads ``x``: the grid all its ``output_readers``
    share (:func:`lowbit.models.compression._dataflow.output_readers`), if they do and the
    layer exports as a Conv or Gemm (a Linear on 2-D input); else None."""
    readers = getattr(layer, "output_readers", ())
    if not readers or (isinstance(layer, nn.Linear) and x.dim() != 2):
        return None
    grids = []
    for reader, prefix in readers:
        scale = getattr(reader, f"{prefix}_scale", None)
        if getattr(reader, "a_bits", None) is None or scale is None:
            return None
        zp, qmin, qmax = (getattr(reader, f"{prefix}_{k}") for k in ("zero_point", "qmin", "qmax"))
        grids.append((scale, int(zp), qmin, qmax))
    return grids[0] if len({(float(g[0].float()), *g[1:]) for g in grids}) == 1 else None
