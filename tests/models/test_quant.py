"""Quantizers, calibration and the fake-quant wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lowbit.models.compression._intbias import REFINE_LIMIT, integer_layer
from lowbit.models.compression.quant import (
    QuantConv,
    QuantConv1d,
    QuantConv2d,
    QuantLinear,
    QuantMatMul,
    calibrate,
    calibrate_model,
    fake_quantize,
    qparams,
    quantize_weight,
    requantize_weights,
    ste_fake_quantize,
)

BITS = range(2, 9)


def _codes(x, scale, zero_point):
    """Integer codes of grid values x = (q − zp) · scale."""
    return x / scale + zero_point


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_weights_land_on_the_grid(bits: int, symmetric: bool, per_channel: bool) -> None:
    weight = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(bits))
    wq, scale, zp, qmin, qmax = quantize_weight(
        weight, bits=bits, symmetric=symmetric, per_channel=per_channel
    )
    assert qmax - qmin + 1 == 2**bits
    assert scale.shape == ((6,) if per_channel else ())
    shape = (-1, 1, 1, 1) if per_channel else ()
    codes = _codes(wq, scale.reshape(shape), zp.reshape(shape))
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.round().min() >= qmin and codes.round().max() <= qmax
    if symmetric:
        assert torch.all(zp == 0)
    # no more distinct values per channel than levels
    for channel in wq if per_channel else [wq]:
        assert channel.unique().numel() <= 2**bits


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("symmetric", "signed"), [(True, True), (True, False), (False, True)])
def test_error_at_most_half_a_step_inside_the_range(bits: int, symmetric: bool, signed: bool):
    lo, hi = torch.tensor(-0.7 if signed else 0.0), torch.tensor(1.3)
    scale, zp, qmin, qmax = qparams(lo, hi, bits=bits, symmetric=symmetric, signed=signed)
    x = torch.linspace(float(lo), float(hi), 5001)  # the observed range
    err = (fake_quantize(x, scale, zp, qmin, qmax) - x).abs()
    assert err.max() <= scale / 2 * (1 + 1e-4)  # float32 rounding at the clip edge
    assert fake_quantize(torch.zeros(3), scale, zp, qmin, qmax).eq(0).all()  # zero is exact


def test_per_channel_scales_follow_each_output_channel() -> None:
    weight = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    _, scale, *_ = quantize_weight(weight, bits=4, symmetric=True, per_channel=True)
    scaled = weight.clone()
    scaled[2] *= 10
    _, scale2, *_ = quantize_weight(scaled, bits=4, symmetric=True, per_channel=True)
    assert torch.allclose(scale2[2], scale[2] * 10)
    assert torch.equal(scale2[[0, 1, 3]], scale[[0, 1, 3]])
    # symmetric rule: max|w| / (2^(b−1) − ½)
    assert torch.allclose(scale, weight.abs().amax(dim=1) / 7.5)


def test_asymmetric_activation_grid_has_integer_zero_point() -> None:
    x = torch.linspace(-1.0, 3.0, 100)
    scale, zp, qmin, qmax = calibrate(x, bits=8, symmetric=False, method="minmax")
    assert (qmin, qmax) == (0, 255)
    assert torch.allclose(scale, torch.tensor(4.0 / 255))
    assert zp.dtype == torch.int64 and int(zp) == round(1.0 / (4.0 / 255))


def test_symmetric_activations_use_unsigned_grid_after_relu() -> None:
    x = torch.rand(1000)
    scale, zp, qmin, qmax = calibrate(x, bits=4, symmetric=True, method="minmax")
    assert (qmin, qmax, int(zp)) == (0, 15, 0)
    assert torch.allclose(scale, x.max() / 15)


def test_percentile_and_mse_clip_outliers() -> None:
    x = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    x[0] = 50.0  # one outlier
    ranges = {}
    for method in ("minmax", "percentile", "mse"):
        params = calibrate(x, bits=4, symmetric=True, method=method)
        ranges[method] = params
    assert ranges["percentile"][0] < ranges["minmax"][0] / 5
    assert ranges["mse"][0] < ranges["minmax"][0]

    def mse(params):
        return torch.mean((fake_quantize(x, *params) - x) ** 2)

    assert mse(ranges["mse"]) <= mse(ranges["minmax"])
    with pytest.raises(ValueError, match="unknown calibration"):
        calibrate(x, bits=4, symmetric=True, method="kl")


def test_straight_through_gradient_is_identity_inside_the_range() -> None:
    x = torch.linspace(-2.0, 2.0, 41, requires_grad=True)
    scale, zp, qmin, qmax = qparams(torch.tensor(-1.0), torch.tensor(1.0), bits=3, symmetric=True)
    out = ste_fake_quantize(x, scale, zp, qmin, qmax)
    assert torch.equal(out.detach(), fake_quantize(x.detach(), scale, zp, qmin, qmax))
    out.mul(torch.arange(41.0)).sum().backward()
    codes = torch.round(x.detach() / scale)
    inside = (codes >= qmin) & (codes <= qmax)
    assert 0 < int(inside.sum()) < 41
    assert torch.equal(x.grad[inside], torch.arange(41.0)[inside])  # identity (STE)
    assert torch.all(x.grad[~inside] == 0)  # clipped values get no gradient


@pytest.mark.parametrize(
    ("layer", "wrapper", "shape"),
    [
        (nn.Linear(12, 6), QuantLinear, (5, 12)),
        (nn.Conv2d(3, 6, 3, padding=1), QuantConv2d, (5, 3, 6, 6)),
        (nn.Conv1d(3, 6, 5, stride=2), QuantConv1d, (5, 3, 20)),
    ],
)
def test_wrappers_quantize_weights_and_inputs(layer, wrapper, shape) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape)
    q = wrapper.from_float(layer, w_bits=4, a_bits=8, symmetric=True, per_channel=True)
    assert isinstance(q, type(layer))  # still a Linear / Conv for hooks and exporters
    assert isinstance(q, QuantLinear) or isinstance(q, QuantConv)
    # the stored weight is on the 4-bit grid, per output channel
    codes = _codes(q.weight, q.weight_scale.reshape(-1, *[1] * (q.weight.dim() - 1)), 0)
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.abs().max() <= 8
    calibrate_model(q, x, methods={})
    assert q.act_scale is not None and int(q.act_zero_point) == 0
    xq = fake_quantize(x, q.act_scale, q.act_zero_point, q.act_qmin, q.act_qmax)
    expected = type(layer).forward(q, xq)  # float layer math on quantized input and weight
    assert torch.allclose(q(x), expected, atol=1e-6)
    assert not torch.equal(q(x), layer(x))


def test_training_forward_keeps_float_master_weight_and_requantize_snaps() -> None:
    torch.manual_seed(0)
    q = QuantLinear.from_float(
        nn.Linear(8, 4), w_bits=3, a_bits=None, symmetric=True, per_channel=True
    )
    x = torch.randn(2, 8)
    assert torch.equal(q.train()(x), q.eval()(x))  # fixed grid: re-quantizing is idempotent
    q.train()
    with torch.no_grad():
        q.weight.add_(0.01)  # off the grid now
    q(x).sum().backward()
    assert q.weight.grad is not None
    requantize_weights(q)
    codes = _codes(q.weight, q.weight_scale.reshape(-1, 1), 0)
    assert torch.allclose(codes, codes.round(), atol=1e-3)


def test_quant_matmul_quantizes_both_operands() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 5, 5, generator=g), torch.randn(2, 5, 7, generator=g)
    mm = QuantMatMul(a_bits=4, symmetric=True)
    mm.observed = [(a, b)]
    mm.set_activation_range((a, b), method="minmax")
    mm.observed = None
    assert (mm.act_qmin, mm.act_qmax) == (0, 15)  # a ≥ 0 (softmax-like): unsigned
    assert (mm.b_qmin, mm.b_qmax) == (-8, 7)
    expected = fake_quantize(a, mm.act_scale, mm.act_zero_point, 0, 15) @ fake_quantize(
        b, mm.b_scale, mm.b_zero_point, -8, 7
    )
    assert torch.allclose(mm(a, b), expected)
    assert mm.w_bits == mm.a_bits == 4


# --- the deployed integer form (models._intbias) ---------------------------------------------


def _golden_linear() -> QuantLinear:
    """Linear(4 -> 1), weights [1, -0.5, 0.25, 0], bias 0.1, 3-bit symmetric weights, 8-bit
    input grid calibrated on [0, 1] (scale 1/255), in eval mode."""
    layer = nn.Linear(4, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -0.5, 0.25, 0.0]]))
        layer.bias.fill_(0.1)
    q = QuantLinear.from_float(layer, w_bits=3, a_bits=8, symmetric=True, per_channel=True)
    q.set_activation_range(torch.linspace(0.0, 1.0, 11), method="minmax")
    return q.eval()


def test_integer_layer_refines_codes_and_rounds_the_bias_to_the_accumulator_grid() -> None:
    q = _golden_linear()
    form = integer_layer(q)
    # scale = 1 / 3.5 (max|w| / (2^2 - 1/2)); codes 3.5 -> 3 (clipped), -1.75 -> -2, 0.875 -> 1;
    # peak 3 -> k = 64 // 3 = 21 (REFINE_LIMIT)
    assert REFINE_LIMIT == 64
    assert form.codes.tolist() == [[63, -42, 21, 0]]
    assert torch.allclose(form.weight_scales.double() * form.codes, q.weight.double(), rtol=1e-6)
    # accumulator step s_x·s_w/k = 1 / (255 · 3.5 · 21); 0.1 / step = 1874.25 -> 1874
    assert form.bias_codes.tolist() == [1874]
    step = float(q.act_scale) * float(form.weight_scales[0])
    assert float(form.bias[0]) == pytest.approx(1874 * step, rel=1e-6)
    assert abs(float(form.bias[0]) - 0.1) <= step / 2


@pytest.mark.parametrize("bits", BITS)
def test_refinement_is_the_largest_factor_within_the_limit(bits: int) -> None:
    torch.manual_seed(bits)
    q = QuantConv2d.from_float(
        nn.Conv2d(3, 6, 3), w_bits=bits, a_bits=8, symmetric=bits % 2 == 0, per_channel=True
    )
    q.set_activation_range(torch.randn(100), method="minmax")
    form = integer_layer(q.eval())
    raw = q.weight_codes().flatten(1).abs().amax(1)
    refined = form.codes.flatten(1).abs().amax(1)
    k = refined // raw.clamp_min(1)
    assert torch.all(refined <= max(REFINE_LIMIT, int(raw.max())))  # 8-bit codes: k = 1
    assert torch.all(raw * (k + 1) > REFINE_LIMIT)  # k + 1 would exceed the limit
    assert torch.equal(form.codes, q.weight_codes().long() * k.reshape(-1, 1, 1, 1))


def _kernel(q: QuantLinear, x: torch.Tensor) -> torch.Tensor:
    """What QGemm computes (numpy, int64 accumulator): float32(Σ x_code·w_code + bias_code)
    times the float32 scale s_x·s_w[c]."""
    form = integer_layer(q)
    codes = np.clip(
        np.rint(x.numpy() / q.act_scale.numpy()) + int(q.act_zero_point), q.act_qmin, q.act_qmax
    ) - int(q.act_zero_point)
    acc = codes.astype(np.int64) @ form.codes.numpy().T + form.bias_codes.numpy()
    scale = np.float32(q.act_scale.numpy()) * form.weight_scales.numpy()
    return torch.from_numpy(acc.astype(np.float32) * scale)


def test_inference_computes_what_the_integer_kernel_computes() -> None:
    torch.manual_seed(0)
    q = QuantLinear.from_float(
        nn.Linear(48, 10), w_bits=4, a_bits=6, symmetric=False, per_channel=False
    )
    x = torch.randn(64, 48)
    calibrate_model(q, x, methods={})
    q.eval()
    with torch.no_grad():
        exact = q(x)
    assert torch.equal(exact, _kernel(q, x))  # bit for bit, as ONNX Runtime's float output
    # with gradients: float compute with the rounded bias (straight-through), equal up to
    # float32 rounding of the float products
    out = q(x)
    assert torch.allclose(out, exact, rtol=0, atol=1e-5 * float(exact.abs().max()))
    out.sum().backward()
    assert q.weight.grad is not None and q.bias.grad is not None
    # training (QAT) keeps the float bias
    q.train()
    xq = fake_quantize(x, q.act_scale, q.act_zero_point, q.act_qmin, q.act_qmax)
    assert torch.allclose(q(x), F.linear(xq, q.weight, q.bias), atol=1e-6)
