"""The depthwise kernel class: a closed-form fit that recovers known constants, and a real
measurement of a depthwise chain on this CPU."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit.hwsim._cost_rules import DepthwiseKernel
from lowbit.hwsim.profile import DEPTHWISE_KEYS
from lowbit.models.hostcal.kernels import depthwise_sweep, fit_depthwise

CLOCK = 2.0e9


def _synthetic(per_mac: float, per_pixel: float, fixed: float, precision: str):
    rows = []
    for channels, spatial in ((16, 56), (32, 28), (128, 28), (576, 14), (960, 7)):
        macs, pixels = channels * spatial * spatial * 9, spatial * spatial
        cycles = fixed + per_mac * macs + per_pixel * pixels
        rows.append(
            {
                "channels": channels,
                "spatial": spatial,
                "precision": precision,
                "macs": macs,
                "pixels": pixels,
                "layer_s": cycles / CLOCK,
            }
        )
    return rows


def test_fit_recovers_the_constants_it_was_generated_from():
    rows = _synthetic(0.09, 21.0, 2600, "int8") + _synthetic(0.07, 4.0, 800, "fp32")
    fit = fit_depthwise(rows, fixed_cycles={"int8": 2600, "fp32": 800}, clock_hz=CLOCK)
    assert set(DEPTHWISE_KEYS) <= set(fit)
    assert fit["depthwise_cycles_per_mac"] == pytest.approx(0.09, rel=1e-3)
    assert fit["depthwise_cycles_per_pixel"] == pytest.approx(21.0, rel=1e-3)
    assert fit["fp32_depthwise_cycles_per_mac"] == pytest.approx(0.07, rel=1e-3)
    assert fit["fp32_depthwise_cycles_per_pixel"] == pytest.approx(4.0, rel=1e-3)
    assert fit["mean_abs_pct_error_int8_depthwise"] < 0.1
    for row in rows:
        assert row["simulated_s"] == pytest.approx(row["layer_s"], rel=1e-3)


def test_fit_gives_unaligned_channel_counts_their_own_rate():
    aligned = [r for r in _synthetic(0.09, 21.0, 2600, "int8") if r["channels"] % 16 == 0]
    odd = []
    for channels, spatial in ((24, 28), (58, 28), (116, 14)):
        macs, pixels = channels * spatial * spatial * 9, spatial * spatial
        cycles = 2600 + 0.3 * macs + 21.0 * pixels
        odd.append(
            {
                "channels": channels,
                "spatial": spatial,
                "precision": "int8",
                "macs": macs,
                "pixels": pixels,
                "layer_s": cycles / CLOCK,
            }
        )
    fit = fit_depthwise(
        aligned + odd, fixed_cycles={"int8": 2600}, clock_hz=CLOCK, channel_multiple=16
    )
    assert fit["depthwise_cycles_per_mac"] == pytest.approx(0.09, rel=1e-3)
    assert fit["depthwise_unaligned_cycles_per_mac"] == pytest.approx(0.3, rel=1e-3)
    from lowbit.hwsim.profile import Overheads

    o = Overheads(
        depthwise_cycles_per_mac=0.09,
        depthwise_cycles_per_pixel=21.0,
        depthwise_unaligned_cycles_per_mac=0.3,
        depthwise_channel_multiple=16,
    )
    assert DepthwiseKernel.of(o).cost(integer=True, channels=58) == (0.3, 21.0)
    assert DepthwiseKernel.of(o).cost(integer=True, channels=64) == (0.09, 21.0)


def test_fit_never_goes_negative():
    # measurements below the fixed cost: the fit clamps at zero instead of running away
    rows = _synthetic(0.0, 0.0, 100, "int8")
    fit = fit_depthwise(rows, fixed_cycles={"int8": 5000}, clock_hz=CLOCK)
    assert fit["depthwise_cycles_per_mac"] == 0.0 and fit["depthwise_cycles_per_pixel"] == 0.0


def test_depthwise_chain_is_measured_on_this_cpu():
    rows = depthwise_sweep(((32, 14),), repeats=5)
    assert [r["precision"] for r in rows] == ["int8", "fp32"]
    for row in rows:
        assert row["layer_s"] > 0 and row["macs"] == 32 * 14 * 14 * 9 and row["pixels"] == 196


def test_the_inward_transpose_reads_channels_last_and_writes_nchw():
    from lowbit.models.export.ort import ort_session
    from lowbit.models.hostcal.kernels import _input_for, _movement_model

    shape = (8, 6, 6)  # timed as (32, 3, 3): as many elements, 4x the channels
    x = _input_for("TransposeInward", shape)
    (y,) = ort_session(_movement_model("TransposeInward", shape)).run(None, {"x": x})
    assert x.shape == (1, 3, 3, 32) and x.size == np.prod(shape)
    assert np.array_equal(y, x.transpose(0, 3, 1, 2))


def test_movement_costs_are_measured_per_element_on_this_cpu():
    from lowbit.models.hostcal.kernels import movement_costs

    costs = movement_costs(repeats=5, rounds=2)
    assert set(costs) == {
        "QuantizeLinear", "DequantizeLinear", "Transpose", "TransposeInward",
        "TransposeStrided", "Concat", "QLinearConcat", "Split", "QLinearAdd", "QLinearMul",
    }  # fmt: skip
    assert all(v >= 0 for v in costs.values())
    # a byte copy costs well under a microsecond per element on any CPU this runs on
    assert all(v < 1e-6 for v in costs.values())
    # element by element (the innermost axis moved) is slower than a layout change, which
    # moves one axis with contiguous runs (~60x on an Intel Xeon with AMX-INT8)
    assert costs["TransposeStrided"] > 2 * costs["Transpose"]
    # requantizing each element (inputs on other grids than the output's) is slower than
    # copying it (~10x on an Intel Xeon with AVX-512)
    assert costs["QLinearConcat"] > 2 * costs["Concat"]


def test_movement_layers_are_free_unless_the_profile_prices_them():
    from dataclasses import replace

    from lowbit import hwsim
    from lowbit.hwsim.profiles import load_profile
    from lowbit.hwsim.workload import FLOAT_PASS_KINDS, MOVEMENT_KINDS, Compression, Elementwise

    cpu = load_profile("cpu-x86-avx2")
    for kind in MOVEMENT_KINDS:
        layer = Elementwise(
            name=kind, elements=200_704, kind=kind, compression=Compression(w_bits=8, a_bits=8)
        )
        free = hwsim.simulate_layer(layer, cpu)
        assert free.total_cycles == 0 and free.dram_read_bytes == 0
        priced = replace(
            cpu, overheads=replace(cpu.overheads, elementwise_cycles_per_element=((kind, 0.25),))
        )
        cost = hwsim.simulate_layer(layer, priced)
        if kind in FLOAT_PASS_KINDS:
            # a float kernel's own pass: free at 8 bits (the integer graph folds it), and
            # inside its conv's operator at float (no dispatch of its own)
            assert cost.total_cycles == 0
            wide = replace(layer, compression=Compression(w_bits=None, a_bits=None))
            cost = hwsim.simulate_layer(wide, priced)
            assert cost.overhead_cycles == cpu.overheads.tile_cycles  # no layer_cycles
            assert cost.compute_cycles == 0.25 * 200_704
        else:
            assert cost.total_cycles >= 0.25 * 200_704 + cpu.overheads.layer_cycles


def test_a_fused_relu6_costs_its_float_conv_a_pass_measured_on_this_cpu():
    from lowbit.models.export.ort import kernel_census
    from lowbit.models.hostcal.kernels import (
        _activation_chain,
        activation_pass_s_per_element,
    )

    # ONNX Runtime fuses each ReLU6 into its conv: no Clip runs as an operator of its own
    census = kernel_census(_activation_chain(32, 8, 3, relu6=True))
    assert "Clip" not in census and census.get("Conv") == 3
    # the pass over the output is paid per element: well under a cycle's worth of ns
    assert 0 <= activation_pass_s_per_element(repeats=5) < 1e-8


def test_int8_softmax_is_fused_and_measured():
    from lowbit.models.export.ort import kernel_census
    from lowbit.models.hostcal.kernels import _int8_softmax_chain, int8_softmax_s_per_element

    assert kernel_census(_int8_softmax_chain(3)).get("QLinearSoftmax") == 3
    assert 0 < int8_softmax_s_per_element(repeats=5, op_s=0.0) < 1e-6


def test_int8_softmax_cost_applies_to_8_bit_activations_only():
    from dataclasses import replace

    from lowbit import hwsim
    from lowbit.hwsim.profiles import load_profile
    from lowbit.hwsim.workload import Compression, Elementwise

    cpu = load_profile("cpu-x86-avx2")
    priced = replace(
        cpu,
        overheads=replace(
            cpu.overheads, elementwise_cycles_per_element=(("softmax", 1.0), ("softmax_int8", 8.0))
        ),
    )
    n = 16_384
    for bits, per_element in ((8, 8.0), (32, 1.0)):
        layer = Elementwise(
            name="sm", elements=n, kind="softmax", compression=Compression(w_bits=bits, a_bits=bits)
        )
        assert hwsim.simulate_layer(layer, priced).compute_cycles == per_element * n


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
def test_the_integer_elementwise_probe_is_the_kernel_onnx_runtime_runs(op):
    """The QLinearAdd / QLinearMul probe of :func:`movement_costs` runs as that kernel on
    uint8 and computes it: x + x (or x * x) requantized on the same grid."""
    import numpy as np

    from lowbit.models.export.ort import kernel_census, ort_session
    from lowbit.models.hostcal.kernels import _input_for, _movement_model

    model = _movement_model(op, (4, 3, 3))
    assert kernel_census(model).get(op) == 1
    x = _input_for(op, (4, 3, 3))
    (y,) = ort_session(model).run(None, {"x": x})
    real = (x.astype(np.float64) - 128) * 0.05
    expected = real + real if op == "QLinearAdd" else real * real
    codes = np.clip(np.round(expected / 0.05) + 128, 0, 255)
    assert y.dtype == np.uint8
    assert np.abs(y.astype(int) - codes).max() <= 1


def test_the_requantizing_concat_probe_is_the_kernel_onnx_runtime_runs():
    """The QLinearConcat probe of :func:`movement_costs` joins its input twice, each copy
    requantized from the input's grid (step 0.05) to the output's (step 0.07)."""
    import numpy as np

    from lowbit.models.export.ort import kernel_census, ort_session
    from lowbit.models.hostcal.kernels import _input_for, _movement_model

    model = _movement_model("QLinearConcat", (4, 3, 3))
    assert kernel_census(model).get("QLinearConcat") == 1
    x = _input_for("QLinearConcat", (4, 3, 3))
    (y,) = ort_session(model).run(None, {"x": x})
    real = (x.astype(np.float64) - 128) * 0.05
    codes = np.clip(np.round(real / 0.07) + 128, 0, 255)
    assert y.shape == (1, 8, 3, 3) and y.dtype == np.uint8
    assert np.abs(y.astype(int) - np.concatenate([codes, codes], axis=1)).max() <= 1


@pytest.mark.parametrize("kind", ["add", "mul", "concat"])
def test_an_integer_kernel_cost_applies_to_8_bit_activations_only(kind):
    from dataclasses import replace

    from lowbit import hwsim
    from lowbit.hwsim.profiles import load_profile
    from lowbit.hwsim.workload import Compression, Elementwise

    cpu = load_profile("cpu-x86-avx2")
    rates = {kind: 0.25, f"{kind}_int8": 0.75}
    priced = replace(
        cpu,
        overheads=replace(
            cpu.overheads, elementwise_cycles_per_element=tuple(sorted(rates.items()))
        ),
    )
    for bits, per_element in ((8, 0.75), (32, 0.25)):
        layer = Elementwise(
            name=kind, elements=4096, kind=kind, compression=Compression(w_bits=bits, a_bits=bits)
        )
        assert hwsim.simulate_layer(layer, priced).compute_cycles == per_element * 4096
