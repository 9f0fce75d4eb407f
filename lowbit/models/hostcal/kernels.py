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

:func:`movement_costs` times the data movement ONNX Runtime runs as operators of their own
(a quantized graph's input quantization and output dequantization, the layout transposes
around its integer convolutions, Concat and Split) and its integer element-wise kernels
(QLinearAdd, QLinearMul: a third of the float Add's cost per element on uint8): each
operator alone between a graph's
input and output, on two tensor sizes, so the Run call and the dispatch cancel in the
slope; cost per element. :func:`activation_pass_s_per_element` times the second pass a float
conv makes over its output for a fused ReLU6.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.models.hostcal.bench import PASSES, Slope, chain_slopes, depth_slope

__all__ = [
    "DEPTHWISE_SWEEP",
    "MOVEMENT_OPS",
    "MOVEMENT_SHAPES",
    "QUICK_DEPTHWISE_SWEEP",
    "activation_pass_s_per_element",
    "depthwise_sweep",
    "fit_depthwise",
    "int8_softmax_s_per_element",
    "int8_softmax_slope",
    "movement_costs",
]

#: (channels, spatial) of the depthwise 3x3 chains: MobileNet/ShuffleNet-like channel
#: counts and map sizes (stride 1: a chain keeps its shape)
DEPTHWISE_SWEEP = (
    (16, 56), (24, 28), (32, 112), (32, 28), (48, 56), (64, 56), (128, 28), (192, 28),
    (256, 14), (576, 14), (960, 7), (40, 28), (72, 14), (120, 14), (200, 7),
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
    shapes=DEPTHWISE_SWEEP, *, repeats: int, passes: int = PASSES
) -> list[dict[str, Any]]:
    """Per-layer seconds of depthwise 3x3 chains, INT8 and FP32: rows of ``channels,
    spatial, precision, macs, pixels, layer_s, spread`` (``repeats`` runs per round, shared
    by the :func:`~lowbit.models.hostcal.bench.chain_slopes` ``passes``)."""
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
    rows, *, fixed_cycles: dict[str, float], clock_hz: float, channel_multiple: int = 1
) -> dict[str, Any]:
    """Cycles per MAC and per output pixel of each precision's depthwise kernel.

    ``fixed_cycles``: what the profile already charges each such layer per precision (its
    dispatch, and an integer GEMM's fixed cost), taken off the measured layer time first.
    Non-negative least squares of the relative error; each row gains ``simulated_s``.
    INT8 rows whose channels are not a multiple of ``channel_multiple`` (the kernel's SIMD
    block) give ``depthwise_unaligned_cycles_per_mac``, the aligned ones the rest.
    Returns the profile keys (:data:`lowbit.hwsim.profile.DEPTHWISE_KEYS`) and the mean
    absolute error per precision (``mean_abs_pct_error_<precision>_depthwise``)."""
    from scipy.optimize import nnls

    out: dict[str, Any] = {}

    def solve(sel, fixed: float, per_pixel: float | None):
        """(per MAC, per pixel, simulated cycles); ``per_pixel`` given: fit per MAC only."""
        measured = np.array([r["layer_s"] * clock_hz for r in sel])
        weight = 1.0 / measured
        cols = (
            [[r["macs"]] for r in sel]
            if per_pixel is not None
            else [[r["macs"], r["pixels"]] for r in sel]
        )
        target = measured - fixed - (per_pixel or 0.0) * np.array([r["pixels"] for r in sel])
        solved, _ = nnls(np.array(cols, float) * weight[:, None], target * weight)
        pp = per_pixel if per_pixel is not None else float(solved[1])
        simulated = np.array([float(solved[0]) * r["macs"] + pp * r["pixels"] + fixed for r in sel])
        for row, cycles in zip(sel, simulated, strict=True):
            row["simulated_s"] = float(cycles / clock_hz)
        return float(solved[0]), pp, simulated / measured - 1

    for precision, prefix in (("int8", ""), ("fp32", "fp32_")):
        sel = [r for r in rows if r["precision"] == precision]
        if not sel:
            continue
        split = precision == "int8" and channel_multiple > 1
        odd = [r for r in sel if split and r["channels"] % channel_multiple]
        even = [r for r in sel if r not in odd] or odd
        per_mac, per_pixel, errors = solve(even, fixed_cycles[precision], None)
        if odd and even is not odd:
            unaligned, _, odd_errors = solve(odd, fixed_cycles[precision], per_pixel)
            out["depthwise_unaligned_cycles_per_mac"] = float(f"{unaligned:.4g}")
            errors = np.concatenate([errors, odd_errors])
        elif precision == "int8":
            out["depthwise_unaligned_cycles_per_mac"] = 0.0
        out[f"{prefix}depthwise_cycles_per_mac"] = float(f"{per_mac:.4g}")
        out[f"{prefix}depthwise_cycles_per_pixel"] = float(f"{per_pixel:.4g}")
        out[f"mean_abs_pct_error_{precision}_depthwise"] = float(np.mean(np.abs(errors)) * 100)
    return out


#: the data-movement operators are timed on uint8 / float tensors of these two sizes
#: (channels, height, width): mid-network MobileNet-like tensors, 50 and 200 K elements
MOVEMENT_SHAPES = ((64, 28, 28), (64, 56, 56))


def _movement_model(op: str, shape: tuple[int, int, int]):
    """One data-movement operator between the graph's input and output: ``QuantizeLinear``
    (float -> uint8), ``DequantizeLinear`` (uint8 -> float), ``Transpose`` (uint8 NCHW ->
    NHWC: one axis moved), ``TransposeInward`` (uint8 NHWC -> NCHW, the layout change
    back before a float operator or the graph's output: 1.5-2.5x the other direction's cost
    per element on an Intel Xeon, more the more channels -- timed at 4x the channels and
    half the height and width, as many elements, as a deep layer's output has),
    ``TransposeStrided`` (uint8, the channel and width axes swapped:
    the innermost axis moves, ONNX Runtime's element-wise path -- a channel shuffle with the
    layout transpose merged in), ``Concat`` (uint8, the input twice along channels),
    ``QLinearConcat`` (the same, each input on another grid than the output: requantized
    element by element, as a QDQ Concat of two branches runs),
    ``Split`` (uint8, in two),
    ``QLinearAdd`` / ``QLinearMul`` (uint8 + / x uint8 of the same shape: the kernels ONNX
    Runtime runs for an Add or Mul between Q/DQ pairs -- a residual add, a linear layer's
    bias after its QLinearMatMul, GELU's products -- not the float Add's)."""
    from onnx import TensorProto, helper, numpy_helper

    c, h, w = shape
    x_shape = [1, c, h, w]
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(128, np.uint8), "z"),
        numpy_helper.from_array(np.array([c // 2, c - c // 2], np.int64), "half"),
    ]
    u8, f32 = TensorProto.UINT8, TensorProto.FLOAT
    outputs = [("y", u8, [1, c, h, w])]
    if op in ("QLinearAdd", "QLinearMul"):  # uint8 (x, x) -> uint8: a residual add's kernel
        node = helper.make_node(op, ["x", "s", "z"] * 2 + ["s", "z"], ["y"], domain="com.microsoft")
        elem = u8
    elif op == "QuantizeLinear":
        node, elem = helper.make_node(op, ["x", "s", "z"], ["y"]), f32
    elif op == "DequantizeLinear":
        node, elem, outputs = (
            helper.make_node(op, ["x", "s", "z"], ["y"]),
            u8,
            [("y", f32, [1, c, h, w])],
        )
    elif op == "Transpose":
        node, elem = helper.make_node(op, ["x"], ["y"], perm=[0, 2, 3, 1]), u8
        outputs = [("y", u8, [1, h, w, c])]
    elif op == "TransposeInward":  # channels-last back to NCHW, at 4x the channels
        node, elem = helper.make_node("Transpose", ["x"], ["y"], perm=[0, 3, 1, 2]), u8
        h, w, c = x_shape[1:] = _inward_shape(shape)
        outputs = [("y", u8, [1, c, h, w])]
    elif op == "TransposeStrided":  # the innermost axis and another swapped: element-wise
        node, elem = helper.make_node("Transpose", ["x"], ["y"], perm=[0, 3, 2, 1]), u8
        outputs = [("y", u8, [1, w, h, c])]
    elif op == "Concat":
        node, elem = helper.make_node(op, ["x", "x"], ["y"], axis=1), u8
        outputs = [("y", u8, [1, 2 * c, h, w])]
    elif op == "QLinearConcat":  # inputs on other grids than the output's: requantized
        inits.append(numpy_helper.from_array(np.array(0.07, np.float32), "s2"))
        node = helper.make_node(
            op, ["s2", "z", "x", "s", "z", "x", "s", "z"], ["y"], axis=1, domain="com.microsoft"
        )
        elem, outputs = u8, [("y", u8, [1, 2 * c, h, w])]
    else:
        node, elem = helper.make_node("Split", ["x", "half"], ["y", "y2"], axis=1), u8
        outputs = [("y", u8, [1, c // 2, h, w]), ("y2", u8, [1, c - c // 2, h, w])]
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info(*o) for o in outputs],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _inward_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The channels-last (height, width, channels) a ``TransposeInward`` of ``shape``'s
    element count reads: 4x the channels, half the height and width."""
    c, h, w = shape
    return h // 2, w // 2, 4 * c


def _input_for(op: str, shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    if op == "TransposeInward":
        shape = _inward_shape(shape)
    if op == "QuantizeLinear":
        return rng.normal(size=(1, *shape)).astype(np.float32)
    return rng.integers(0, 255, size=(1, *shape), dtype=np.uint8)


#: the operators :func:`movement_costs` times: data movement, and the integer element-wise
#: kernels of a QDQ graph (uint8 in, uint8 out)
MOVEMENT_OPS = (
    "QuantizeLinear",
    "DequantizeLinear",
    "Transpose",
    "TransposeInward",
    "TransposeStrided",
    "Concat",
    "QLinearConcat",
    "Split",
    "QLinearAdd",
    "QLinearMul",
)


def movement_costs(*, repeats: int, rounds: int = 5) -> dict[str, float]:
    """Seconds per element (of the larger of input and output) of each data-movement
    operator (:func:`_movement_model`), as ONNX Runtime runs it: the slope between the two
    :data:`MOVEMENT_SHAPES` (so the Run call and the dispatch cancel); never below zero.
    Each size's time is the least of ``rounds`` medians of ``repeats`` runs (at least 50),
    and a round times every operator in turn, so a disturbance that passes during one
    operator's measurement moves none of them (a calibration once measured the
    DequantizeLinear 70 % slow, all five of its rounds back to back)."""
    from lowbit.models.export.ort import ort_session
    from lowbit.models.hostcal.bench import bind, run_times_s

    sessions = {}
    for op in MOVEMENT_OPS:
        sessions[op] = []
        for shape in MOVEMENT_SHAPES:
            session = ort_session(_movement_model(op, shape))
            binding = bind(session, x=_input_for(op, shape))
            run_times_s(session, binding=binding, runs=10)
            sessions[op].append((session, binding))
    best = {op: [np.inf] * len(MOVEMENT_SHAPES) for op in MOVEMENT_OPS}
    for _ in range(rounds):
        for op, pairs in sessions.items():
            for i, (session, binding) in enumerate(pairs):
                median = float(
                    np.median(run_times_s(session, binding=binding, runs=max(repeats, 50)))
                )
                best[op][i] = min(best[op][i], median)
    out = {}
    for op, (small, large) in best.items():
        factor = 2 if "Concat" in op else 1  # a Concat writes twice its input
        elements = [factor * int(np.prod(shape)) for shape in MOVEMENT_SHAPES]
        out[op] = max((large - small) / (elements[1] - elements[0]), 0.0)
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


#: (channels, spatial) of the float 1x1 conv chains :func:`activation_pass_s_per_element`
#: times: MobileNet-like expansions
ACTIVATION_PASS_SHAPES = ((64, 28), (96, 14))


def _activation_chain(channels: int, spatial: int, depth: int, *, relu6: bool):
    from lowbit.models.hostcal.graphs import GraphBuilder

    net = GraphBuilder("activation", (channels, spatial, spatial), seed=channels)
    x = "x"
    for _ in range(depth):
        x = net.conv(x, channels, 1, relu=not relu6)
        x = net.relu6(x) if relu6 else x
    return net.model(x)


def activation_pass_s_per_element(*, repeats: int, passes: int = PASSES) -> float:
    """Seconds per output element of the pass a float conv makes for a fused ReLU6 (ONNX
    Runtime applies ReLU in the kernel's registers, Clip after it): the per-layer time of a
    chain of 1x1 convs with ReLU6 less that of the same chain with ReLU, per element, the
    median over :data:`ACTIVATION_PASS_SHAPES`; never below zero. Each chain's per-layer
    time is that of its least disturbed pass (:func:`~lowbit.models.hostcal.bench.chain_slopes`)."""
    items = [(c, s, relu6) for c, s in ACTIVATION_PASS_SHAPES for relu6 in (False, True)]
    slopes = chain_slopes(
        items,
        build=lambda item, depth: _activation_chain(item[0], item[1], depth, relu6=item[2]),
        inputs=lambda item: _map(item[0], item[1]),
        what=lambda item: f"float conv + {'ReLU6' if item[2] else 'ReLU'} {item[0]}x{item[1]}",
        repeats=max(repeats, 20),  # a quick calibration's 5 runs: too few here
        depths=(1, 3),
        passes=passes,
    )
    costs = [
        (slopes[2 * i + 1].per_layer_s - slopes[2 * i].per_layer_s) / (channels * spatial**2)
        for i, (channels, spatial) in enumerate(ACTIVATION_PASS_SHAPES)
    ]
    return max(float(np.median(costs)), 0.0)
