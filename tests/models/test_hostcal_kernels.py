"""The depthwise kernel class: a closed-form fit that recovers known constants, and a real
measurement of a depthwise chain on this CPU."""

from __future__ import annotations

import math

import pytest

from lowbit.hwsim._cost_rules import DepthwiseKernel
from lowbit.hwsim.profile import DEPTHWISE_KEYS
from lowbit.models.hostcal.kernels import depthwise_sweep, fit_depthwise

CLOCK = 2.0e9


def _synthetic(
    per_mac: float,
    per_pixel: float,
    fixed: float,
    precision: str,
    *,
    per_row: float = 0.0,
    shapes=((16, 56), (32, 28), (128, 28), (576, 14), (960, 7)),
):
    rows = []
    for channels, spatial in shapes:
        macs, pixels = channels * spatial * spatial * 9, spatial * spatial
        cycles = fixed + per_mac * macs + per_pixel * pixels + per_row * channels * spatial
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
    assert DepthwiseKernel.of(o).cost(integer=True, channels=58) == (0.3, 21.0, 0.0)
    assert DepthwiseKernel.of(o).cost(integer=True, channels=64) == (0.09, 21.0, 0.0)


def test_float_fit_recovers_a_cost_per_channel_row_and_an_unaligned_rate():
    """FP32 chains generated with a cost per output row of each channel (the blocked float
    kernel's row loop) and 2x the rate off the 16-channel block: all three recovered, the
    integer side untouched by the row term."""
    aligned = _synthetic(0.11, 0.0, 800, "fp32", per_row=65.0)
    odd = _synthetic(0.2, 0.0, 800, "fp32", per_row=65.0, shapes=((24, 28), (72, 14), (200, 7)))
    ints = _synthetic(0.09, 21.0, 2600, "int8")
    fit = fit_depthwise(
        aligned + odd + ints,
        fixed_cycles={"int8": 2600, "fp32": 800},
        clock_hz=CLOCK,
        channel_multiple=16,
    )
    assert fit["fp32_depthwise_cycles_per_mac"] == pytest.approx(0.11, rel=1e-3)
    assert fit["fp32_depthwise_cycles_per_channel_row"] == pytest.approx(65.0, rel=1e-3)
    assert fit["fp32_depthwise_unaligned_cycles_per_mac"] == pytest.approx(0.2, rel=1e-3)
    assert fit["depthwise_cycles_per_mac"] == pytest.approx(0.09, rel=1e-3)
    assert fit["depthwise_unaligned_cycles_per_mac"] == 0.0  # no odd INT8 rows
    for row in aligned + odd:
        assert row["simulated_s"] == pytest.approx(row["layer_s"], rel=1e-3)


def _depthwise_cycles(channels: int, *, size: int, bits: int = 32, **over) -> int:
    """hwsim's compute cycles of one 3x3 depthwise conv (batch 2, stride 1) on the x86
    profile with ``over`` as its overheads."""
    from lowbit import hwsim
    from lowbit.hwsim.compression import Compression
    from lowbit.hwsim.workload import Conv2d, Workload

    profile = hwsim.load_profile(
        "cpu-x86-avx2", overrides={f"overheads.{k}": v for k, v in over.items()}
    )
    layer = Conv2d(
        name="dw", in_h=size, in_w=size, in_c=channels, out_c=channels, k_h=3, k_w=3,
        out_h=size, out_w=size, groups=channels, batch=2,
        compression=Compression(w_bits=bits, a_bits=bits),
    )  # fmt: skip
    return hwsim.simulate(Workload("w", (layer,)), profile).layers[0].compute_cycles


def test_a_float_depthwise_layer_pays_its_channel_rows():
    """hwsim: the cost per channel row times channels x output rows x batch, on top of the
    MACs; off the channel block at the unaligned rate."""

    def cycles(channels: int, **over) -> int:
        o = {"fp32_depthwise_cycles_per_mac": 0.1, "depthwise_channel_multiple": 16, **over}
        return _depthwise_cycles(channels, size=14, **o)

    base = cycles(32)
    assert cycles(32, fp32_depthwise_cycles_per_channel_row=10.0) - base == pytest.approx(
        10.0 * 32 * 14 * 2, abs=32
    )
    macs = 24 * 14 * 14 * 2 * 9
    unaligned = cycles(24, fp32_depthwise_unaligned_cycles_per_mac=0.3)
    assert unaligned - cycles(24) == pytest.approx(0.2 * macs, rel=0.01)


def test_float_rows_off_the_layout_multiple_give_the_grouped_cost_alone():
    """FP32 chains of 18 and 58 channels (not multiples of 4) run the grouped path: fitted
    as one cost per output element, apart from the aligned rows' costs, which come out as
    without them; INT8 rows of those counts stay in the INT8 fit; no layout multiple, no
    grouped cost."""
    fp32 = _synthetic(0.07, 4.0, 800, "fp32", per_row=60.0)
    grouped = _synthetic(0.0, 0.0, 800, "fp32", shapes=((18, 28), (58, 28), (58, 14)))
    for row in grouped:
        row["layer_s"] += (8.0 * row["channels"] * row["pixels"] + 1200 * row["channels"]) / CLOCK
    int8 = _synthetic(0.09, 21.0, 2600, "int8", shapes=((16, 56), (32, 28), (58, 28), (128, 14)))
    fixed = {"int8": 2600, "fp32": 800}
    kwargs = dict(fixed_cycles=fixed, clock_hz=CLOCK, channel_multiple=2)
    fit = fit_depthwise(fp32 + grouped + int8, layout_multiple=4, **kwargs)
    alone = fit_depthwise(fp32 + int8, layout_multiple=4, **kwargs)
    assert fit["fp32_depthwise_generic_cycles_per_output"] == pytest.approx(8.0, rel=1e-3)
    assert fit["fp32_depthwise_generic_cycles_per_channel"] == pytest.approx(1200, rel=1e-3)
    for key in DEPTHWISE_KEYS:
        if "generic" not in key:
            assert fit[key] == alone[key]
        else:
            assert alone[key] == 0.0
    assert fit["mean_abs_pct_error_fp32_depthwise"] < 0.1
    for row in grouped:
        assert row["simulated_s"] == pytest.approx(row["layer_s"], rel=1e-3)
    assert fit_depthwise(fp32 + grouped, **kwargs)["fp32_depthwise_generic_cycles_per_output"] == 0
    # two such rows: exactly determined by two costs -- one cost per output
    two = fit_depthwise(fp32 + grouped[:2], layout_multiple=4, **kwargs)
    assert two["fp32_depthwise_generic_cycles_per_channel"] == 0.0
    assert two["fp32_depthwise_generic_cycles_per_output"] > 8.0


def test_a_float_depthwise_layer_off_the_layout_multiple_runs_the_grouped_path():
    """hwsim: an FP32 depthwise conv whose channels are not a multiple of
    fp32_depthwise_layout_multiple costs fp32_depthwise_generic_cycles_per_output per output
    element and fp32_depthwise_generic_cycles_per_channel per channel and image instead of
    its kernel's costs; one on the multiple, or an INT8 one, is left alone."""

    def cycles(channels: int, bits: int = 32, **over) -> int:
        o = {"fp32_depthwise_cycles_per_mac": 0.1, "depthwise_cycles_per_mac": 0.2, **over}
        return _depthwise_cycles(channels, size=28, bits=bits, **o)

    generic = {
        "fp32_depthwise_layout_multiple": 4,
        "fp32_depthwise_generic_cycles_per_output": 9.0,
        "fp32_depthwise_generic_cycles_per_channel": 1000.0,
    }
    for channels in (58, 29, 18):
        outputs = channels * 28 * 28 * 2
        expected = 9.0 * outputs + 1000.0 * channels * 2  # a GEMM per channel and image
        assert cycles(channels, **generic) == pytest.approx(expected, rel=1e-6)
        assert cycles(channels, **generic) > 5 * cycles(channels)
        assert cycles(channels, 8, **generic) == cycles(channels, 8)  # integer: its own kernel
    for channels in (60, 28, 12):
        assert cycles(channels, **generic) == cycles(channels)


def test_few_aligned_float_rows_leave_the_channel_row_cost_out():
    """A quick calibration's two aligned FP32 chains cannot tell three costs apart: the cost
    per channel row is not fitted (0) and the other two fit them exactly."""
    rows = _synthetic(0.11, 4.0, 800, "fp32", shapes=((32, 28), (128, 14)))
    fit = fit_depthwise(rows, fixed_cycles={"fp32": 800}, clock_hz=CLOCK, channel_multiple=16)
    assert fit["fp32_depthwise_cycles_per_channel_row"] == 0.0
    assert fit["fp32_depthwise_cycles_per_mac"] == pytest.approx(0.11, rel=1e-3)
    assert fit["fp32_depthwise_cycles_per_pixel"] == pytest.approx(4.0, rel=1e-3)


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


def test_a_fused_relu6_costs_its_float_conv_a_pass_measured_on_this_cpu():
    from lowbit.models.export.ort import kernel_census
    from lowbit.models.hostcal.kernels import _activation_chain, activation_pass_pairs
    from lowbit.models.hostcal.movement import pooled_costs

    # ONNX Runtime fuses each ReLU6 into its conv: no Clip runs as an operator of its own
    census = kernel_census(_activation_chain(32, 8, 3, relu6=True))
    assert "Clip" not in census and census.get("Conv") == 3
    # the pass over the output is paid per element: well under a cycle's worth of ns
    pass_s = pooled_costs([{"ActivationPass": activation_pass_pairs(repeats=5)}])
    assert 0 <= pass_s["ActivationPass"] < 1e-8


def test_the_relu6_pass_is_one_difference_per_pair_of_chains(monkeypatch):
    """Each pair (a ReLU chain, then the ReLU6 one) gives one difference per element, in
    pair order; the cost is their median, never below zero -- the calibration pools the
    pairs of its three rounds the same way."""
    from lowbit.models.hostcal import kernels
    from lowbit.models.hostcal.movement import pooled_costs

    slopes = iter([1.0, 1.5, 2.0, 2.0, 1.0, 9.0, 3.0, 2.5])  # (ReLU, ReLU6) per shape and pair
    monkeypatch.setattr(kernels, "_activation_slope_s", lambda *a: next(slopes) * 1e-6)
    monkeypatch.setattr(kernels, "ACTIVATION_PASS_SHAPES", ((10, 10), (1, 10)))
    pairs = kernels.activation_pass_pairs(repeats=5, pairs=2)
    assert pairs == pytest.approx([5e-10, 0.0, 8e-9, -5e-9])
    slopes = iter([1.0, 0.5] * 3)  # the ReLU6 chain faster every time: noise, clipped
    monkeypatch.setattr(kernels, "_activation_slope_s", lambda *a: next(slopes) * 1e-6)
    monkeypatch.setattr(kernels, "ACTIVATION_PASS_SHAPES", ((10, 10),))
    pairs = {"ActivationPass": kernels.activation_pass_pairs(repeats=5, pairs=3)}
    assert pooled_costs([pairs]) == {"ActivationPass": 0.0}


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


def test_a_row_cost_and_an_element_cost_come_apart_on_two_row_lengths():
    # synthetic timings from known costs (75 ns a row, 0.5 ns an element) on rows of 32 and
    # of 256, as many elements each: both recovered; noise that makes the per-row cost
    # negative leaves everything per element, never a negative cost
    from lowbit.models.hostcal.elementwise import per_row_and_element

    def timing(rows: int, elements: int) -> tuple[float, int, int]:
        return 75e-9 * rows + 0.5e-9 * elements, rows, elements

    per_row, per_element = per_row_and_element(timing(1088, 34816), timing(136, 34816))
    assert per_row == pytest.approx(75e-9) and per_element == pytest.approx(0.5e-9)
    assert per_row_and_element((1e-6, 1088, 34816), (2e-6, 136, 34816)) == (0.0, 1e-6 / 34816)


def test_elementwise_rounds_keep_each_operators_middle_round():
    """Of three rounds, per operator, the middle cost: a round slowed by a spell and an
    oddly fast one both lose; of two, the faster is kept. A row-by-row operator's two
    timings (short rows, long rows) each take their own middle, and its costs are solved
    from those: one round's disturbed short-row timing does not reach the cost per row."""
    from lowbit.models.hostcal.elementwise import (
        ELEMENTWISE_SHAPES,
        ROW_SHAPES,
        middle_round,
        per_row_and_element,
    )

    row_op = next(iter(ROW_SHAPES))

    def costs(add: float, short_s: float, long_s: float):
        """A round's costs from its Add cost and the row operator's two timings."""
        timings = [
            (seconds, math.prod(shape[:-1]), math.prod(shape))
            for seconds, shape in (
                (short_s, ELEMENTWISE_SHAPES[row_op]),
                (long_s, ROW_SHAPES[row_op]),
            )
        ]
        per_row, per_element = per_row_and_element(*timings)
        return {"Add": add, row_op: per_element}, {row_op: per_row}

    calm = costs(1.0e-9, 60e-6, 50e-6)
    spell = costs(1.8e-9, 80e-6, 51e-6)  # the short rows' timing disturbed (and Add)
    faster = costs(0.9e-9, 61e-6, 49e-6)
    # of two, the faster timing of each (here all calm's)
    per_element, per_row = middle_round([spell, calm])
    assert per_element == pytest.approx(calm[0], rel=1e-12)
    assert per_row == pytest.approx(calm[1], rel=1e-12)
    per_element, per_row = middle_round([spell, calm, faster])
    # Add: 1.0 is the middle of 0.9, 1.0, 1.8; the row operator: the short rows' middle is
    # 61 us (faster's), the long rows' 50 us (calm's): solved from those two
    expected = costs(1.0e-9, 61e-6, 50e-6)
    assert per_element == pytest.approx(expected[0], rel=1e-12)
    assert per_row == pytest.approx(expected[1], rel=1e-12)
    # the old rule (both costs from the round whose long-row timing was the middle) would
    # have taken calm's costs: a different cost per row
    assert per_row[row_op] != pytest.approx(calm[1][row_op], rel=1e-3)
    with pytest.raises(ValueError):
        middle_round([])
