"""The data movement ONNX Runtime runs as operators of its own, timed per element.

:func:`movement_session_costs` times a quantized graph's input quantization and output
dequantization, the layout transposes around its integer convolutions (both directions),
Concat and Split, its integer element-wise kernels (QLinearAdd, QLinearMul: a third of the
float Add's cost per element on uint8), and the reorders into and out of a float graph's
blocked conv layout (x86): each operator alone between a graph's input and output, on two
tensor sizes, so the Run call and the dispatch cancel in the slope; cost per element.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowbit.hwsim._memory_op_costs import INWARD_CHANNELS
from lowbit.models.hostcal.clock import active_track
from lowbit.models.hostcal.kernels import activation_pass_pairs, int8_softmax_slope
from lowbit.models.hostcal.quiet import quiet_only, timed_quiet

__all__ = [
    "MOVEMENT_OPS",
    "merged_spots",
    "spot_costs",
    "FLOAT_MOVEMENT_SHAPES",
    "MOVEMENT_ROUNDS",
    "MOVEMENT_SESSIONS",
    "MOVEMENT_SHAPES",
    "NCHWC_DOMAIN",
    "ROW_RUN",
    "SESSIONS",
    "movement_session_costs",
    "pooled_costs",
    "transpose_s_per_row",
]

#: the data-movement operators are timed on uint8 / float tensors of these two sizes
#: (channels, height, width): mid-network MobileNet-like tensors, 50 and 200 K elements
MOVEMENT_SHAPES = ((64, 28, 28), (64, 56, 56))
#: the float reorders into and out of the blocked layout are timed on these instead (25 and
#: 100 K floats): at MOVEMENT_SHAPES' 800 KB of floats in and as much out, near a 2 MB L2,
#: five runs in a row on an Intel Xeon spread 12-19 % (0.45-0.55 cycles an element); here
#: 2-3 % (0.30-0.35). A float graph reorders at its boundaries and around the operators the
#: blocked layout lacks (a channel shuffle: ~90 K floats in a ShuffleNetV2); a tensor that
#: overflows the L2 is the activation spill's (hwsim's ActivationSpill floor)
FLOAT_MOVEMENT_SHAPES = ((32, 28, 28), (32, 56, 56))
#: timings of :func:`movement_session_costs` per operator and size, spread over
#: :data:`MOVEMENT_SESSIONS` sessions of each (a round times every operator once per size
#: and session)
MOVEMENT_ROUNDS = 15
#: sessions of each operator and size, their times averaged: a session keeps the buffers
#: it was given, and some placements run slower -- the head-split transpose ran at 1.02-1.06
#: or at 1.18 cycles an element depending on the session, the same within one
MOVEMENT_SESSIONS = 3
#: operators timed in more sessions: the head-split transpose's placements differ most (on
#: an Intel Xeon, eight sessions 1.03-1.23 cycles an element, CV 5 %); its cost per run of
#: 32 bytes is the difference from the layout transpose's, which magnifies that 1.2x, and
#: with three sessions it moved 9-10 % between two calibrations in two pairs of ten
SESSIONS = {"TransposeRows": 9}


def _movement_model(op: str, shape: tuple[int, int, int]):
    """One data-movement operator between the graph's input and output: ``QuantizeLinear``
    (float -> uint8), ``DequantizeLinear`` (uint8 -> float), ``Transpose`` (uint8 NCHW ->
    NHWC: one axis moved), ``TransposeInward`` (uint8 NHWC -> NCHW, the layout change
    back before a float operator or the graph's output: 1.5-2.5x the other direction's cost
    per element on an Intel Xeon, more the more channels -- timed at 4x the channels and
    half the height and width, as many elements, as a deep layer's output has: 256),
    ``TransposeInwardNarrow`` (the same at 32 channels, a stem's or an early layer's:
    hwsim prices the channels between the two),
    ``TransposeRows`` (uint8, attention's head split: (tokens, heads, 32) -> (heads,
    tokens, 32), copied in runs of 32 -- each run's own cost on top of its elements),
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
    elif op in ("TransposeInward", "TransposeInwardNarrow"):  # channels-last back to NCHW
        node, elem = helper.make_node("Transpose", ["x"], ["y"], perm=[0, 3, 1, 2]), u8
        h, w, c = x_shape[1:] = _inward_shape(shape, narrow=op.endswith("Narrow"))
        outputs = [("y", u8, [1, c, h, w])]
    elif op == "ReorderInput":  # float NCHW -> blocked
        elem, outputs = f32, [("y", f32, None)]
        node = helper.make_node(op, ["x"], ["y"], domain=NCHWC_DOMAIN)
    elif op == "ReorderOutput":  # float blocked -> NCHW: the graph's input read as blocked
        elem, outputs = f32, [("y", f32, None)]
        node = helper.make_node(op, ["x"], ["y"], channels=c, domain=NCHWC_DOMAIN)
    elif op == "TransposeRows":  # (1, tokens, 4 heads, 32) -> (1, 4, tokens, 32)
        tokens = c * h * w // (4 * ROW_RUN)
        x_shape = [1, tokens, 4, ROW_RUN]
        node, elem = helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1, 3]), u8
        outputs = [("y", u8, [1, 4, tokens, ROW_RUN])]
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
    opsets = [helper.make_opsetid(d, 17 if d == "" else 1) for d in ("", "com.microsoft")]
    if op.startswith("Reorder"):
        opsets.append(helper.make_opsetid(NCHWC_DOMAIN, 1))
    return helper.make_model(graph, opset_imports=opsets)


def _inward_shape(shape: tuple[int, int, int], *, narrow: bool = False) -> tuple[int, int, int]:
    """The channels-last (height, width, channels) a ``TransposeInward`` of ``shape``'s
    element count reads: 4x the channels, half the height and width (as many as
    :data:`~lowbit.hwsim._memory_op_costs.INWARD_CHANNELS`' wide end); ``narrow``
    (``TransposeInwardNarrow``): its narrow end's channels, the width widened to match."""
    c, h, w = shape
    if narrow:
        few = INWARD_CHANNELS[0]
        return h, w * c // few, few
    return h // 2, w // 2, 4 * c


#: the contiguous run (uint8 elements) of the ``TransposeRows`` probe: a head's features
ROW_RUN = 32


def _input_for(op: str, shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    if op in ("TransposeInward", "TransposeInwardNarrow"):
        shape = _inward_shape(shape, narrow=op.endswith("Narrow"))
    elif op == "TransposeRows":
        shape = (int(np.prod(shape)) // (4 * ROW_RUN), 4, ROW_RUN)
    if op in ("QuantizeLinear", "ReorderInput", "ReorderOutput"):
        return rng.normal(size=(1, *shape)).astype(np.float32)
    return rng.integers(0, 255, size=(1, *shape), dtype=np.uint8)


#: the operators :func:`movement_session_costs` times: data movement, and the integer element-wise
#: kernels of a QDQ graph (uint8 in, uint8 out)
MOVEMENT_OPS = (
    "QuantizeLinear",
    "DequantizeLinear",
    "Transpose",
    "TransposeInward",
    "TransposeInwardNarrow",
    "TransposeRows",
    "TransposeStrided",
    "Concat",
    "QLinearConcat",
    "Split",
    "QLinearAdd",
    "QLinearMul",
    "ReorderInput",
    "ReorderOutput",
)
#: ONNX Runtime's domain of its blocked-layout (NCHWc) operators, registered on x86 builds
NCHWC_DOMAIN = "com.microsoft.nchwc"


def pooled_costs(rounds: list[dict[str, list[float]]]) -> dict[str, float]:
    """Seconds per element of each operator over several :func:`movement_session_costs`
    rounds (timed at different times of a calibration): the median of every session of
    every round, never below zero. A slow spell that covers one round moves less than half
    of them; a session whose buffers landed badly is one of many."""
    if not rounds:
        raise ValueError("need at least one round")
    return {op: max(float(np.median([v for r in rounds for v in r[op]])), 0.0) for op in rounds[0]}


def movement_session_costs(
    *, repeats: int, rounds: int = MOVEMENT_ROUNDS
) -> dict[str, list[float]]:
    """Seconds per element (of the larger of input and output) of each data-movement
    operator (:func:`_movement_model`), as ONNX Runtime runs it: the slope between its two
    shapes (:func:`_shapes`; so the Run call and the dispatch cancel), per session
    (:data:`MOVEMENT_SESSIONS` of each, :data:`SESSIONS` of some): each size's time is the
    session's median round, ``rounds`` rounds of ``repeats`` runs (at least 50) in all,
    and a round times every operator in turn, so a disturbance that passes during one
    operator's measurement moves none of them (a calibration once measured the
    DequantizeLinear 70 % slow, all five of its rounds back to back). The median, not the
    least: each round's times are converted to the reference clock by the clock read
    beside them, and the least of several picks the round whose conversion erred lowest --
    on an Intel Xeon, five runs in a row of this function spread 3-36 % per operator with
    the least of 5 rounds, 6-21 % with the least of 25, and 1-4 % with the median of 15
    (the float reorders on in-L2 shapes). The blocked layout's
    reorders are each timed alone (a ReorderOutput reads the graph's input as a blocked
    tensor: timed after a ReorderInput, as the difference, it moved 29 % between two
    calibrations); 0 where ONNX Runtime has no blocked layout (Arm). Under a clock track
    with a vector probe, only the rounds timed on a quiet core count (all of a size's, if
    none was: :meth:`~lowbit.models.hostcal.clock.ClockTrack.quiet`): on an AMD Zen 3 under
    KVM the transposes' costs moved 25-48 % between two calibrations without it."""
    from lowbit.models.export.ort import ort_session
    from lowbit.models.hostcal.timing import bind, run_times_s, warm_up

    sessions: dict[str, list[list[tuple[Any, Any]]]] = {}  # op -> per session: (small, large)
    for op in MOVEMENT_OPS:
        if op.startswith("Reorder") and not _has_blocked_layout():
            continue
        sessions[op] = []
        for _ in range(SESSIONS.get(op, MOVEMENT_SESSIONS)):
            pair = []
            for shape in _shapes(op):
                session = ort_session(_movement_model(op, shape))
                binding = bind(session, x=_input_for(op, shape))
                warm_up(session, binding=binding, runs=10)
                pair.append((session, binding))
            sessions[op].append(pair)
    # op -> session -> size -> each round's (median, the probe's least ratio beside it)
    medians = {op: [[[], []] for _ in each] for op, each in sessions.items()}
    track = active_track()
    for _ in range(max(rounds // MOVEMENT_SESSIONS, 1)):
        for op, each in sessions.items():
            for k, pair in enumerate(each):
                for i, (session, binding) in enumerate(pair):
                    times, ratio = timed_quiet(
                        lambda s=session, b=binding: run_times_s(
                            s, binding=b, runs=max(repeats, 50)
                        )
                    )
                    medians[op][k][i].append((float(np.median(times)), ratio))

    def quiet_median(rounds: list[tuple[float, float | None]]) -> float:
        return float(np.median(quiet_only(rounds, track=track)))

    out = {}
    for op, per_session in medians.items():
        factor = 2 if "Concat" in op else 1  # a Concat writes twice its input
        elements = [factor * int(np.prod(shape)) for shape in _shapes(op)]
        out[op] = [
            (quiet_median(session[1]) - quiet_median(session[0])) / (elements[1] - elements[0])
            for session in per_session
        ]
    for op in MOVEMENT_OPS:
        out.setdefault(op, [0.0])
    return out


def _shapes(op: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The two tensor shapes ``op`` is timed on: :data:`MOVEMENT_SHAPES`, or for the float
    reorders :data:`FLOAT_MOVEMENT_SHAPES`."""
    return FLOAT_MOVEMENT_SHAPES if op.startswith("Reorder") else MOVEMENT_SHAPES


def _has_blocked_layout() -> bool:
    """Does this ONNX Runtime build run float convs in its blocked layout? Its optimized
    graph of one 32-channel float conv has a ReorderInput (x86); the nchwc operators are
    registered on every build, the graph rewrite only where MLAS has a channel block."""
    from lowbit.models.export.ort import kernel_census
    from lowbit.models.hostcal.graphs import GraphBuilder

    n = GraphBuilder("probe", (32, 8, 8), seed=0)
    model = n.model(n.conv("x", 32, 3))
    try:
        return kernel_census(model).get("ReorderInput", 0) > 0
    except Exception:  # noqa: BLE001 -- onnxruntime's own error types vary by build
        return False


def transpose_s_per_row(movement: dict[str, float]) -> float:
    """Seconds per contiguous run of a Transpose that keeps the innermost axis (each run one
    copy; ONNX Runtime's attention head split), on top of the layout transpose's cost per
    element: from the ``TransposeRows`` probe's cost per element in ``movement`` (a
    calibration's :func:`pooled_costs`; 0 when it has none or it is not dearer)."""
    rows = movement.get("TransposeRows", 0.0)
    return max(rows - movement.get("Transpose", 0.0), 0.0) * ROW_RUN


def spot_costs(*, repeats: int) -> tuple[dict[str, list[float]], Any]:
    """(seconds per element of the data-movement operators, per session, and of the float
    ReLU6 pass, per pair of chains; the INT8 softmax's slope)."""
    runs = max(repeats // 3, 5)
    movement = movement_session_costs(repeats=runs)
    movement["ActivationPass"] = activation_pass_pairs(repeats=runs)
    return movement, int8_softmax_slope(repeats=runs)


def merged_spots(spots: list[tuple[dict[str, list[float]], Any]]) -> tuple[dict, Any]:
    """(seconds per element of each data-movement operator and of the ReLU6 pass, the INT8
    softmax's slope) of several :func:`spot_costs` rounds: every session (every pair) of
    every round pooled per operator (:func:`pooled_costs`:
    the median; the least of three rounds' means had the head-split transpose's cost per
    run 9-10 % apart in two pairs of calibrations of ten, the least of three rounds'
    medians the ReLU6 pass's 6 % in two); the softmax the least disturbed round's."""
    movement = pooled_costs([spot[0] for spot in spots])
    return movement, min((spot[1] for spot in spots), key=lambda slope: slope.long_s)
