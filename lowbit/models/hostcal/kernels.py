"""Kernel classes a CPU runs outside its GEMM path, measured and fitted in closed form.

ONNX Runtime runs a depthwise convolution (one input channel per group) with a kernel of
its own, INT8 and FP32 alike, not as a GEMM: its cost follows the MACs (the window's taps
per output element) and the output pixels (all channels of one position: gather, and at
INT8 the requantization), with a per-channel-count efficiency that the GEMM model cannot
express. Measured here on Zen 4 (AVX-512 VNNI): INT8 runs 3-10 MACs per cycle and is slower
than FP32 below ~200 channels -- the case where INT8 does not pay.

:func:`depthwise_sweep` times chains of identical depthwise 3x3 convs (two depths, so the
dispatch and the Run call cancel; :func:`lowbit.models.hostcal.bench.depth_slope`), INT8
(quantized by ONNX Runtime's own ``quantize_static``) and FP32; :func:`fit_depthwise` solves
``layer cycles - fixed cycles = per_mac * MACs + per_pixel * pixels`` by non-negative least
squares on the relative error, per precision: a closed form, no starting point, no runaway.
The float kernel also costs each output row of each channel (its row loop over the blocked
layout), and either precision costs more per MAC when the channels are not a multiple of the
kernel's channel block (:attr:`lowbit.models.hostcal.isa.Isa.depthwise_channel_block`).

:func:`activation_pass_pairs` times the second pass a float conv makes over its
output for a fused ReLU6 (data movement: :mod:`lowbit.models.hostcal.movement`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.models.hostcal.bench import CHAIN_PASSES, PASSES, Slope, chain_slopes, depth_slope

__all__ = [
    "DEPTHWISE_SWEEP",
    "QUICK_DEPTHWISE_SWEEP",
    "activation_pass_pairs",
    "depthwise_sweep",
    "fit_depthwise",
    "int8_softmax_s_per_element",
    "int8_softmax_slope",
]

#: (channels, spatial) of the depthwise 3x3 chains: MobileNet/ShuffleNet-like channel
#: counts and map sizes (stride 1: a chain keeps its shape)
DEPTHWISE_SWEEP = (
    (16, 56), (24, 28), (32, 112), (32, 28), (48, 56), (64, 56), (128, 28), (192, 28),
    (256, 14), (576, 14), (960, 7), (40, 28), (72, 14), (120, 14), (200, 7),
    # channels off the float layout's multiple of 4 (ShuffleNetV2's 58): a grouped conv in
    # FP32 (Isa.float_layout_channel_multiple), off the channel block in INT8
    (18, 28), (58, 14), (30, 7),
)  # fmt: skip
QUICK_DEPTHWISE_SWEEP = ((32, 28), (128, 14), (24, 14))


def _chain(channels: int, spatial: int, depth: int, *, int8: bool, tmp: Path):
    from lowbit.models.hostcal.graphs import GraphBuilder, quantize_int8

    net = GraphBuilder("depthwise", (channels, spatial, spatial), seed=channels)
    x = "x"
    for _ in range(depth):
        x = net.conv(x, channels, 3, groups=channels, relu=False)
    model = net.model(x)
    if not int8:
        return model
    import onnx

    fp32 = tmp / f"dw{channels}-{spatial}-{depth}.onnx"
    onnx.save(model, str(fp32))
    return onnx.load(str(quantize_int8(fp32, fp32.with_suffix(".int8.onnx"))))


def _map(channels: int, spatial: int) -> np.ndarray:
    """The seeded input of a chain on a ``channels`` x ``spatial``² map (batch 1)."""
    return np.random.default_rng(0).normal(size=(1, channels, spatial, spatial)).astype(np.float32)


def depthwise_sweep(
    shapes=DEPTHWISE_SWEEP, *, repeats: int, passes: int = CHAIN_PASSES
) -> list[dict[str, Any]]:
    """Per-layer seconds of depthwise 3x3 chains, INT8 and FP32: rows of ``channels,
    spatial, precision, macs, pixels, layer_s, spread`` (``repeats`` runs per round, shared
    by the :func:`~lowbit.models.hostcal.bench.chain_slopes` ``passes``, the median pass
    kept, as for the GEMM and conv chains)."""
    items = [(c, s, int8) for c, s in shapes for int8 in (True, False)]
    with tempfile.TemporaryDirectory() as tmp:
        slopes = chain_slopes(
            items,
            build=lambda item, depth: _chain(item[0], item[1], depth, int8=item[2], tmp=Path(tmp)),
            inputs=lambda item: _map(item[0], item[1]),
            what=lambda item: f"{'int8' if item[2] else 'fp32'} depthwise {item[0]}x{item[1]}",
            repeats=max(repeats // passes, 5),
            depths=(1, 3),
            passes=passes,
            median=True,
        )
    return [
        {
            "channels": channels,
            "spatial": spatial,
            "precision": "int8" if int8 else "fp32",
            "macs": channels * spatial * spatial * 9,
            "pixels": spatial * spatial,
            "layer_s": slope.per_layer_s,
            "spread": slope.spread,
        }
        for (channels, spatial, int8), slope in zip(items, slopes, strict=True)
    ]


def fit_depthwise(
    rows,
    *,
    fixed_cycles: dict[str, float],
    clock_hz: float,
    channel_multiple: int = 1,
    layout_multiple: int = 1,
) -> dict[str, Any]:
    """Cycles per MAC, per output pixel and (FP32) per output row of one channel of each
    precision's depthwise kernel.

    ``fixed_cycles``: what the profile already charges each such layer per precision (its
    dispatch, and an integer GEMM's fixed cost), taken off the measured layer time first.
    Non-negative least squares of the relative error; each row gains ``simulated_s``. Rows
    whose channels are not a multiple of ``channel_multiple`` (the kernel's SIMD block) give
    the ``*_unaligned_cycles_per_mac`` (the other costs as the aligned ones'), the aligned
    ones the rest. FP32 rows whose channels are not a multiple of ``layout_multiple`` run a
    grouped conv instead (:class:`lowbit.hwsim._depthwise.DepthwiseKernel`): they give
    ``fp32_depthwise_generic_cycles_per_output`` and ``..._per_channel`` alone (per output
    only from two such rows or fewer; 0 without them). The chains
    are stride 1, batch 1: a row's output rows are its ``spatial``. Returns the profile
    keys (:data:`lowbit.hwsim.profile.DEPTHWISE_KEYS`)
    and the mean absolute error per precision (``mean_abs_pct_error_<precision>_depthwise``)."""
    from scipy.optimize import nnls

    out: dict[str, Any] = {}

    def solve(sel, fixed: float, per_row: bool, given: tuple[float, float] | None):
        """((per MAC, per pixel, per channel row), relative errors of ``sel``); ``given``
        (per pixel, per channel row): fit per MAC only."""
        measured = np.array([r["layer_s"] * clock_hz for r in sel])
        weight = 1.0 / measured
        extra = np.array([[r["pixels"], r["channels"] * r["spatial"]] for r in sel], float)
        macs = np.array([[r["macs"]] for r in sel], float)
        if given is None:
            cols = np.hstack([macs, extra[:, :2] if per_row else extra[:, :1]])
            solved, _ = nnls(cols * weight[:, None], (measured - fixed) * weight)
            costs = (float(solved[0]), float(solved[1]), float(solved[2]) if per_row else 0.0)
        else:
            target = measured - fixed - extra @ np.array(given)
            solved, _ = nnls(macs * weight[:, None], target * weight)
            costs = (float(solved[0]), *given)
        simulated = np.hstack([macs, extra]) @ np.array(costs) + fixed
        for row, cycles in zip(sel, simulated, strict=True):
            row["simulated_s"] = float(cycles / clock_hz)
        return costs, simulated / measured - 1

    def key(value: float) -> float:
        return float(f"{value:.4g}")

    def generic(row) -> bool:
        return (
            row["precision"] == "fp32"
            and layout_multiple > 1
            and bool(row["channels"] % layout_multiple)
        )

    grouped = [r for r in rows if generic(r)]
    out["fp32_depthwise_generic_cycles_per_output"] = 0.0
    out["fp32_depthwise_generic_cycles_per_channel"] = 0.0
    grouped_errors = np.zeros(0)
    if grouped:
        measured = np.array([r["layer_s"] * clock_hz for r in grouped])
        # per output element and per channel (a GEMM call each); per output alone where the
        # rows do not outnumber the two costs
        cols = np.array([[r["channels"] * r["pixels"], r["channels"]] for r in grouped], float)
        cols = cols if len(grouped) > 2 else cols[:, :1]
        weight = 1.0 / measured
        solved, _ = nnls(cols * weight[:, None], (measured - fixed_cycles["fp32"]) * weight)
        costs = [float(v) for v in solved] + [0.0] * (2 - len(solved))
        out["fp32_depthwise_generic_cycles_per_output"] = key(costs[0])
        out["fp32_depthwise_generic_cycles_per_channel"] = key(costs[1])
        simulated = cols @ np.array(costs[: cols.shape[1]]) + fixed_cycles["fp32"]
        for row, cycles in zip(grouped, simulated, strict=True):
            row["simulated_s"] = float(cycles / clock_hz)
        grouped_errors = simulated / measured - 1
    for precision, prefix in (("int8", ""), ("fp32", "fp32_")):
        sel = [r for r in rows if r["precision"] == precision and not generic(r)]
        if not sel:
            continue
        odd = [r for r in sel if channel_multiple > 1 and r["channels"] % channel_multiple]
        even = [r for r in sel if r not in odd] or odd
        # the float kernel's cost per channel row, where the aligned rows outnumber the
        # three costs (a quick calibration's two do not)
        per_row = precision == "fp32" and len(even) > 3
        (per_mac, per_pixel, row_cost), errors = solve(even, fixed_cycles[precision], per_row, None)
        unaligned = 0.0
        if odd and even is not odd:
            (unaligned, *_), odd_errors = solve(
                odd, fixed_cycles[precision], per_row, (per_pixel, row_cost)
            )
            errors = np.concatenate([errors, odd_errors])
        out[f"{prefix}depthwise_unaligned_cycles_per_mac"] = key(unaligned)
        out[f"{prefix}depthwise_cycles_per_mac"] = key(per_mac)
        out[f"{prefix}depthwise_cycles_per_pixel"] = key(per_pixel)
        if precision == "fp32":  # the row cost 0 where not fitted; the grouped rows' errors
            out["fp32_depthwise_cycles_per_channel_row"] = key(row_cost)
            errors = np.concatenate([errors, grouped_errors])
        out[f"mean_abs_pct_error_{precision}_depthwise"] = float(np.mean(np.abs(errors)) * 100)
    return out


#: the attention scores the INT8 softmax chain runs on: (heads, tokens, tokens)
SOFTMAX_SHAPE = (4, 64, 64)


def _int8_softmax_chain(depth: int):
    """``depth`` softmaxes over the last axis, each between a DequantizeLinear and a
    QuantizeLinear (ONNX Runtime fuses each into one QLinearSoftmax on uint8)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "ps"),
    ]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q0"])]
    for i in range(depth):
        scale = "s" if i == 0 else "ps"
        nodes += [
            helper.make_node("DequantizeLinear", [f"q{i}", scale, "z"], [f"d{i}"]),
            helper.make_node("Softmax", [f"d{i}"], [f"p{i}"], axis=-1),
            helper.make_node("QuantizeLinear", [f"p{i}", "ps", "z"], [f"q{i + 1}"]),
        ]
    nodes.append(helper.make_node("DequantizeLinear", [f"q{depth}", "ps", "z"], ["y"]))
    shape = [1, *SOFTMAX_SHAPE]
    graph = helper.make_graph(
        nodes,
        "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def int8_softmax_slope(*, repeats: int) -> Slope:
    """The per-layer time of a chain of ONNX Runtime's INT8 softmax (QLinearSoftmax),
    measured in turn ``PASSES`` times, the least disturbed kept (one calibration's single
    measurement came out 50 % above the next's)."""
    x = np.random.default_rng(0).normal(size=(1, *SOFTMAX_SHAPE)).astype(np.float32)
    return min(
        (
            depth_slope(
                _int8_softmax_chain,
                x,
                depths=(1, 3),
                repeats=repeats,
                what="INT8 softmax chain",
            )
            for _ in range(PASSES)
        ),
        key=lambda slope: slope.long_s,
    )


def int8_softmax_s_per_element(*, repeats: int, op_s: float, slope: Slope | None = None) -> float:
    """Seconds per element of ONNX Runtime's INT8 softmax, less the dispatch ``op_s`` of
    the operator (``slope``: an :func:`int8_softmax_slope` already measured)."""
    slope = slope if slope is not None else int8_softmax_slope(repeats=repeats)
    return max(slope.per_layer_s - op_s, 0.0) / int(np.prod(SOFTMAX_SHAPE))


#: (channels, spatial) of the float 1x1 conv chains :func:`activation_pass_pairs`
#: times: few channels on large maps, so the pass is a large share of each layer (on 64
#: and 96 channels -- a third of it -- two calibrations in a row differed by 13 %)
ACTIVATION_PASS_SHAPES = ((16, 56), (32, 28))
#: ReLU / ReLU6 chain pairs per shape that :func:`activation_pass_pairs` times
ACTIVATION_PASS_PAIRS = 7


def _activation_chain(channels: int, spatial: int, depth: int, *, relu6: bool):
    from lowbit.models.hostcal.graphs import GraphBuilder

    net = GraphBuilder("activation", (channels, spatial, spatial), seed=channels)
    x = "x"
    for _ in range(depth):
        x = net.conv(x, channels, 1, relu=not relu6)
        x = net.relu6(x) if relu6 else x
    return net.model(x)


def activation_pass_pairs(*, repeats: int, pairs: int = ACTIVATION_PASS_PAIRS) -> list[float]:
    """Seconds per output element of the pass a float conv makes for a fused ReLU6 (ONNX
    Runtime applies ReLU in the kernel's registers, Clip after it): the per-layer time of a
    chain of 1x1 convs with ReLU6 less that of the same chain with ReLU, per element --
    the two timed one right after the other (a drift of the machine cancels in their
    difference), ``pairs`` times per shape of :data:`ACTIVATION_PASS_SHAPES`: each pair's
    difference (their median leaves out the disturbed ones). (Each chain's least disturbed
    of three passes, differenced, spread 16-25 % over five runs in a row on an Intel Xeon;
    the median of seven pairs per shape 2 %.)"""
    costs = []
    for _ in range(max(pairs, 1)):
        for channels, spatial in ACTIVATION_PASS_SHAPES:
            relu, relu6 = (
                _activation_slope_s(channels, spatial, clip, repeats) for clip in (False, True)
            )
            costs.append((relu6 - relu) / (channels * spatial**2))
    return costs


def _activation_slope_s(channels: int, spatial: int, relu6: bool, repeats: int) -> float:
    """Per-layer seconds of the 1x1 conv chain with ReLU6 (or ReLU)."""
    return depth_slope(
        lambda depth: _activation_chain(channels, spatial, depth, relu6=relu6),
        _map(channels, spatial),
        depths=(1, 3),
        repeats=max(repeats, 20),  # a quick calibration's 5 runs: too few here
        what=f"float conv + {'ReLU6' if relu6 else 'ReLU'} {channels}x{spatial}",
    ).per_layer_s
