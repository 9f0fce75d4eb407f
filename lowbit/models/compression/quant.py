"""Uniform affine fake quantization: quantizers, activation calibration, layer wrappers.

Grid (b bits, 2^b levels), value = (q − zero_point) · scale:

* symmetric weights: signed levels −2^(b−1) … 2^(b−1)−1, zero point 0, scale =
  max|w| / (2^(b−1) − ½) (PyTorch's symmetric observer rule: the whole observed range
  [−max|w|, max|w|] lies within scale/2 of a level; +max|w| clips by at most scale/2).
* symmetric activations: zero point 0; signed as above if the calibrated range has negative
  values, else unsigned levels 0 … 2^b−1 with scale = hi / (2^b − 1) (after a ReLU no level is
  wasted on negatives).
* asymmetric (weights and activations): unsigned levels 0 … 2^b−1, range widened to include 0,
  scale = (hi − lo) / (2^b − 1), integer zero point = round(−lo / scale). Zero is exact on
  every grid, so pruned weights stay zero after quantization.

Weights use min/max ranges, per output channel or per tensor; activations are per tensor with
a range from the calibration batch: ``minmax``, ``percentile`` (the 0.1th / 99.9th
percentiles, |x| at 99.9 for a symmetric grid) or ``mse`` (grid search over clipping ratios
of the min/max range minimising the quantization MSE).

The wrappers subclass the layers they replace (``QuantLinear`` is an ``nn.Linear``), so shape
hooks and isinstance checks keep working. Weight grids are fixed when a wrapper is made (from
the weights then). At inference ``weight`` already holds fake-quantized values on the grid; in
training mode the wrappers quantize the float ``weight`` in forward with a straight-through
estimator, and :func:`requantize_weights` snaps it back to the grid afterwards
(``models.qat.finetune`` does this).

In eval mode a layer that runs on integer kernels once deployed (weights and input
quantized) computes what the kernel computes: its bias (with a folded BatchNorm's shift,
:mod:`lowbit.models.compression._bn_fold`) rounded to the int32 accumulator grid
(:mod:`lowbit.models.compression._intbias`), and
in inference the exact integer accumulator (:meth:`QuantLayer.forward`). Training (QAT)
keeps the float bias. The grid arithmetic is in :mod:`lowbit.models.compression._grid` (re-exported
here); the wrappers of activation-only operators are
:mod:`lowbit.models.compression.quant_matmul` (attention products) and
:mod:`lowbit.models.compression.quant_residual` (residual adds, global pools).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lowbit.models.compression._grid import (
    MSE_RATIOS,
    PERCENTILE,
    calibrate,
    fake_quantize,
    qparams,
    ste_fake_quantize,
)
from lowbit.models.compression._intbias import (
    bias_rounded,
    integer_inference,
    integer_layer,
    output_grid,
    requantize,
)
from lowbit.models.compression.quant_matmul import QuantMatMul
from lowbit.models.compression.quant_residual import QuantAdd, QuantGlobalAvgPool

__all__ = [
    "PERCENTILE",
    "MSE_RATIOS",
    "qparams",
    "fake_quantize",
    "ste_fake_quantize",
    "quantize_weight",
    "calibrate",
    "QuantLayer",
    "QuantLinear",
    "QuantConv",
    "QuantConv1d",
    "QuantConv2d",
    "QuantMatMul",
    "QuantAdd",
    "QuantGlobalAvgPool",
    "quantized_layers",
    "calibrate_model",
    "requantize_weights",
]


def _channel_shape(weight: torch.Tensor) -> tuple[int, ...]:
    return (-1,) + (1,) * (weight.dim() - 1)


def quantize_weight(
    weight: torch.Tensor, *, bits: int, symmetric: bool, per_channel: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """(fake-quantized weight, scale, zero_point, qmin, qmax) from min/max ranges.

    Per channel = one scale per output channel (weight dim 0); scale has shape (out,) then,
    else shape ().
    """
    w = weight.detach()
    if per_channel:
        flat = w.reshape(w.shape[0], -1)
        lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    else:
        lo, hi = w.min(), w.max()
    scale, zero_point, qmin, qmax = qparams(lo, hi, bits=bits, symmetric=symmetric)
    shape = _channel_shape(w) if per_channel else ()
    wq = fake_quantize(weight, scale.reshape(shape), zero_point.reshape(shape), qmin, qmax)
    return wq, scale, zero_point, qmin, qmax


class QuantLayer:
    """Mixin for a Conv/Linear whose weight and input are fake-quantized.

    Attributes (read by exporters): ``w_bits``, ``a_bits`` (None = float), ``symmetric``,
    ``per_channel``, ``weight_scale`` / ``weight_zero_point`` (shape (out,) per channel, else
    ()), ``weight_qmin``/``weight_qmax``, ``act_scale`` / ``act_zero_point`` (shape ()),
    ``act_qmin``/``act_qmax``, optional ``weight_mask`` (1 = kept weight),
    ``folded_batchnorm`` (the BatchNorm reading the output once it is folded into the layer,
    see :mod:`lowbit.models.compression._bn_fold`; None before and for other layers),
    ``output_readers`` (the quantized inputs that alone read the output, set by
    :func:`lowbit.models.compression.compress`).
    """

    def _setup_quant(
        self, *, w_bits: int | None, a_bits: int | None, symmetric: bool, per_channel: bool
    ) -> None:
        self.w_bits, self.a_bits = w_bits, a_bits
        self.symmetric, self.per_channel = symmetric, per_channel
        self.weight_qmin = self.weight_qmax = self.act_qmin = self.act_qmax = 0
        for name in ("weight_scale", "weight_zero_point", "act_scale", "act_zero_point"):
            self.register_buffer(name, None)
        self.observed: list[torch.Tensor] | None = None
        if w_bits is not None:
            with torch.no_grad():
                wq, scale, zp, self.weight_qmin, self.weight_qmax = quantize_weight(
                    self._masked_weight(), bits=w_bits, symmetric=symmetric, per_channel=per_channel
                )
                self.weight.copy_(wq)
            self.weight_scale, self.weight_zero_point = scale, zp

    def extra_repr(self) -> str:
        grid = "symmetric" if self.symmetric else "asymmetric"
        granularity = "per_channel" if self.per_channel else "per_tensor"
        return (
            f"{super().extra_repr()}, w_bits={self.w_bits}, a_bits={self.a_bits}, "
            f"{grid}, {granularity}"
        )

    def _masked_weight(self) -> torch.Tensor:
        mask = getattr(self, "weight_mask", None)
        return self.weight if mask is None else self.weight * mask

    def _weight_grid(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` on this layer's (fixed) weight grid, with a straight-through gradient."""
        shape = _channel_shape(weight) if self.per_channel else ()
        return ste_fake_quantize(
            weight,
            self.weight_scale.reshape(shape),
            self.weight_zero_point.reshape(shape),
            self.weight_qmin,
            self.weight_qmax,
        )

    @torch.no_grad()
    def weight_codes(self) -> torch.Tensor:
        """Integer codes q − zero_point of the weight on its grid (float64, weight's shape),
        rounded as forward rounds them (in training mode from the float master weight)."""
        w = self._masked_weight().detach()
        shape = _channel_shape(w) if self.per_channel else ()
        zp = self.weight_zero_point.reshape(shape)
        q = torch.round(w / self.weight_scale.reshape(shape)) + zp
        return (q.clamp(self.weight_qmin, self.weight_qmax) - zp).double()

    @property
    def folded_batchnorm(self) -> nn.Module | None:
        return self.__dict__.get("_folded_batchnorm")  # kept outside the module tree

    @property
    def output_readers(self) -> tuple[tuple[nn.Module, str], ...]:
        """(module, grid prefix) of each quantized input reading this layer's output
        (:func:`lowbit.models.compression._dataflow.output_readers`), kept outside the
        module tree; empty if others read it too or nobody told the layer."""
        return self.__dict__.get("_output_readers", ())

    def set_output_readers(self, readers: tuple[tuple[nn.Module, str], ...]) -> None:
        object.__setattr__(self, "_output_readers", tuple(readers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float compute on the grids; in eval mode, on a layer that runs on integer kernels
        once deployed, what those kernels compute: exactly so in inference
        (:meth:`_integer_forward`), else with the rounded bias (differentiable, equal up to
        float32 rounding; a folded BatchNorm adds the rounding of the folded bias)."""
        if integer_inference(self):
            return self._integer_forward(x)
        bias = self.bias
        if bias is not None and self.folded_batchnorm is None and bias_rounded(self):
            bias = bias + (integer_layer(self).bias.to(bias.dtype) - bias).detach()
        return self._compute(self._quant_input(x), self._quant_weight(), bias)

    def _integer_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference as the integer kernel computes it (:mod:`lowbit.models.compression._intbias`),
        a folded BatchNorm included: the int32 accumulator Σ x_code·w_code + bias_code,
        exact (float32 if it stays below 2^24, float64 else). With an output grid
        (:func:`~lowbit.models.compression._intbias.output_grid`),
        requantized onto it as the fused kernel does (one float32 multiplier s_x·s_w/s_y,
        :func:`~lowbit.models.compression._intbias.requantize`) and returned dequantized;
        else converted to float32 and times the float32 scale s_x·s_w[c], which a float
        output (the logits) computes bit for bit."""
        zero = int(self.act_zero_point)
        codes = torch.clamp(torch.round(x / self.act_scale) + zero, self.act_qmin, self.act_qmax)
        form = integer_layer(self, batchnorm=self.folded_batchnorm)
        bias = form.bias_codes
        # |acc| <= max |x code| · Σ|w codes| + |bias code|, per channel
        bound = max(self.act_qmax - zero, zero - self.act_qmin) * form.codes.flatten(1).abs().sum(1)
        bound = bound + (0 if bias is None else bias.abs())
        dtype = torch.float32 if int(bound.max()) < 2**24 else torch.float64
        bias = None if bias is None else bias.to(dtype)
        acc = self._compute((codes - zero).to(dtype), form.codes.to(dtype), bias)
        scale = (self.act_scale.float() * form.weight_scales).reshape(self._channel_view(acc))
        grid = output_grid(self, x)
        return acc.float() * scale if grid is None else requantize(acc, scale, *grid)

    @torch.no_grad()
    def requantize(self) -> None:
        """Snap the float weight (masked) back onto its grid (after finetuning updates).

        The grid (scales, zero points) is fixed when the wrapper is made, so snapping is
        idempotent and matches what the training-mode forward computed.
        """
        if self.w_bits is not None:
            self.weight.copy_(self._weight_grid(self._masked_weight()))

    def set_activation_range(self, samples: torch.Tensor, *, method: str) -> None:
        """Calibrate the input grid from observed inputs (no-op for float activations)."""
        if self.a_bits is None:
            return
        scale, zp, self.act_qmin, self.act_qmax = calibrate(
            samples, bits=self.a_bits, symmetric=self.symmetric, method=method
        )
        self.act_scale, self.act_zero_point = scale, zp

    def _quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.observed is not None:
            self.observed.append(x.detach())
            return x
        if self.a_bits is None or self.act_scale is None:
            return x
        return ste_fake_quantize(
            x, self.act_scale, self.act_zero_point, self.act_qmin, self.act_qmax
        )

    def _quant_weight(self) -> torch.Tensor:
        if not self.training or self.w_bits is None:
            return self.weight  # already on the grid (see requantize)
        return self._weight_grid(self._masked_weight())

    @classmethod
    def from_float(
        cls,
        module: nn.Module,
        *,
        w_bits: int | None,
        a_bits: int | None,
        symmetric: bool,
        per_channel: bool,
    ) -> QuantLayer:
        """A wrapper with ``module``'s weights, mask and public attributes, quantized."""
        if isinstance(module, nn.Linear):
            args = (module.in_features, module.out_features)
            kwargs = {"bias": module.bias is not None}
        else:
            args = (module.in_channels, module.out_channels, module.kernel_size)
            kwargs = {
                "stride": module.stride,
                "padding": module.padding,
                "dilation": module.dilation,
                "groups": module.groups,
                "bias": module.bias is not None,
                "padding_mode": module.padding_mode,
            }
        new = nn.utils.skip_init(cls, *args, **kwargs)  # no random init: weights copied below
        with torch.no_grad():
            new.weight.copy_(module.weight)
            if module.bias is not None:
                new.bias.copy_(module.bias)
        if getattr(module, "weight_mask", None) is not None:
            new.register_buffer("weight_mask", module.weight_mask.clone())
        for key, value in vars(module).items():  # e.g. kept_out_channels from pruning
            if not key.startswith("_") and key not in vars(new):
                setattr(new, key, value)
        new.train(module.training)
        new._setup_quant(w_bits=w_bits, a_bits=a_bits, symmetric=symmetric, per_channel=per_channel)
        return new


class QuantLinear(QuantLayer, nn.Linear):
    """nn.Linear with fake-quantized weight and input."""

    def _compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        return F.linear(x, weight, bias)

    def _channel_view(self, out: torch.Tensor) -> tuple[int, ...]:
        return (-1,)  # features last


class QuantConv(QuantLayer):
    """Base of the quantized convolutions (isinstance target for Conv1d and Conv2d)."""

    def _compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        return self._conv_forward(x, weight, bias)

    def _channel_view(self, out: torch.Tensor) -> tuple[int, ...]:
        return (-1,) + (1,) * (out.dim() - 2)  # channels first


class QuantConv1d(QuantConv, nn.Conv1d):
    """nn.Conv1d with fake-quantized weight and input."""


class QuantConv2d(QuantConv, nn.Conv2d):
    """nn.Conv2d with fake-quantized weight and input."""


_QUANTIZED = (QuantLayer, QuantMatMul, QuantAdd, QuantGlobalAvgPool)


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The quantized modules of ``model`` by name: QuantLayer, QuantMatMul and the residual
    adds and global pools of :mod:`lowbit.models.compression.quant_residual`."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _QUANTIZED)}


@torch.no_grad()
def calibrate_model(
    model: nn.Module, calib: torch.Tensor, *, methods: dict[str, str], batch_size: int = 128
) -> None:
    """Observe every quantized layer's input on ``calib`` and set its activation grid.

    ``methods`` maps a quantized layer name to its calibration method (default: the
    module's own ``calibration``, else ``minmax``). The pass runs with float activations and
    quantized weights, ``batch_size`` samples at a time (the observed samples are the same
    whatever the batch; small batches keep a layer's activations in cache).
    """
    layers = quantized_layers(model)
    for m in layers.values():
        m.observed = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(calib), batch_size):
            model(calib[start : start + batch_size])
    finally:
        observed = {name: m.observed for name, m in layers.items()}
        for m in layers.values():
            m.observed = None
        model.train(was_training)
    for name, m in layers.items():
        if not observed[name]:
            continue  # layer not reached by forward
        method = methods.get(name, getattr(m, "calibration", "minmax"))
        first = observed[name][0]
        if isinstance(first, tuple):  # several operands (MatMul, add, pool input and output)
            samples = tuple(
                torch.cat([s[i].reshape(-1) for s in observed[name]]) for i in range(len(first))
            )
            m.set_activation_range(samples, method=method)
        else:
            m.set_activation_range(
                torch.cat([s.reshape(-1) for s in observed[name]]), method=method
            )


def requantize_weights(model: nn.Module) -> None:
    """Snap every quantized layer's weight back to its grid (after float weight updates)."""
    for m in quantized_layers(model).values():
        if isinstance(m, QuantLayer):
            m.requantize()
