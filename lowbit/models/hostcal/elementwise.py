"""Seconds per element of memory-bound float operators -- Add, Relu, LayerNorm, Softmax,
Gelu and MaxPool -- on zoo-sized tensors (split from :mod:`lowbit.models.hostcal.bench`),
and per row of those that normalize row by row (LayerNorm, Softmax): each a chain of the
operator at two depths (:func:`~lowbit.models.hostcal.bench.depth_slope`), measured in
:func:`~lowbit.models.hostcal.bench.chain_slopes` passes."""

from __future__ import annotations

import math

import numpy as np

from lowbit.models.hostcal.bench import chain_slopes, lower_median

__all__ = ["ELEMENTWISE_SHAPES", "ROW_SHAPES", "elementwise_costs"]


#: memory-bound operators timed per element by :func:`elementwise_costs`, and the float
#: tensor each runs on: digits-vit at batch 64 (64 x 17 tokens x 32 features), and the
#: digits-cnn conv2 output at batch 64 for MaxPool (3x3, stride 1: the size is kept). The
#: Add is a residual one (two tensors of the shape: a bias add is fused into its GEMM or
#: conv; one broadcast along rows of 32 cost ONNX Runtime 4x as much per element)
ELEMENTWISE_SHAPES = {
    "Add": (1088, 32),
    "Relu": (1088, 32),
    "LayerNormalization": (1088, 32),
    "Softmax": (1088, 32),
    "Gelu": (1088, 32),
    "MaxPool": (64, 32, 8, 8),
}
#: the operators that normalize row by row, timed again on as many elements in rows 8x
#: as long: the two give a cost per row and one per element
ROW_SHAPES = {"LayerNormalization": (136, 256), "Softmax": (136, 256)}
#: passes over the shapes of :func:`elementwise_costs` (the median pass kept per shape)
ELEMENTWISE_PASSES = 5


def _elementwise_node(op: str, src: str, dst: str) -> list:
    """The node(s) of one operator; Gelu is the erf form the TorchScript exporter writes
    (ONNX Runtime fuses it into one Gelu kernel)."""
    from onnx import helper

    if op == "Gelu":
        return [
            helper.make_node("Div", [src, "sqrt2"], [f"{dst}_d"]),
            helper.make_node("Erf", [f"{dst}_d"], [f"{dst}_e"]),
            helper.make_node("Add", [f"{dst}_e", "one"], [f"{dst}_a"]),
            helper.make_node("Mul", [src, f"{dst}_a"], [f"{dst}_m"]),
            helper.make_node("Mul", [f"{dst}_m", "half"], [dst]),
        ]
    if op == "MaxPool":
        return [helper.make_node(op, [src], [dst], kernel_shape=[3, 3], pads=[1] * 4)]
    if op == "Add":  # a residual add: the chain's input again
        return [helper.make_node(op, [src, "x"], [dst])]
    extra = {"LayerNormalization": ["gamma", "beta"]}.get(op, [])
    attrs = {"axis": -1} if op in ("LayerNormalization", "Softmax") else {}
    return [helper.make_node(op, [src, *extra], [dst], **attrs)]


def _elementwise_chain(op: str, shape: tuple[int, ...], depth: int):
    from onnx import TensorProto, helper, numpy_helper

    scalars = {"sqrt2": 2**0.5, "one": 1.0, "half": 0.5}
    inits = [
        numpy_helper.from_array(np.ones(shape[-1], np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(shape[-1], np.float32), "beta"),
        *(numpy_helper.from_array(np.array(v, np.float32), k) for k, v in scalars.items()),
    ]
    nodes = []
    for i in range(depth):
        nodes += _elementwise_node(op, "x" if i == 0 else f"a{i}", f"a{i + 1}")
    graph = helper.make_graph(
        nodes,
        "elementwise",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(f"a{depth}", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def per_row_and_element(
    short: tuple[float, int, int], long: tuple[float, int, int]
) -> tuple[float, float]:
    """(seconds per row, per element) of an operator timed at (seconds, rows, elements) on
    short rows and on long ones: the two lines' solution, each part at least 0 (a per-row
    cost that comes out negative -- noise -- leaves the short rows' time all per element)."""
    (t1, r1, e1), (t2, r2, e2) = short, long
    det = r1 * e2 - r2 * e1
    per_row = (t1 * e2 - t2 * e1) / det if det else 0.0
    if per_row <= 0:
        return 0.0, t1 / e1
    per_element = (t1 - per_row * r1) / e1
    if per_element < 0:
        return t1 / r1, 0.0
    return per_row, per_element


def elementwise_costs(
    *, repeats: int, passes: int = ELEMENTWISE_PASSES
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per (input) element of memory-bound operators (:data:`ELEMENTWISE_SHAPES`,
    two chain depths; ``repeats`` runs per round, shared by the
    :func:`~lowbit.models.hostcal.bench.chain_slopes` ``passes``, the median pass kept),
    and per row of the row-by-row ones (:data:`ROW_SHAPES`: :func:`per_row_and_element`).
    The median, not the least disturbed pass: on an Intel Xeon, four runs in a row spread
    4-8 % (softmax and LayerNorm per row, LayerNorm per element) with the least of three
    passes, 1-3.5 % with the median of five."""

    items = [(op, shape) for op, shape in ELEMENTWISE_SHAPES.items()]
    items += [(op, shape) for op, shape in ROW_SHAPES.items()]
    slopes = chain_slopes(
        items,
        build=lambda item, depth: _elementwise_chain(item[0], item[1], depth),
        inputs=lambda item: np.random.default_rng(0).normal(size=item[1]).astype(np.float32),
        what=lambda item: f"{item[0]} chain {'x'.join(map(str, item[1]))}",
        repeats=max(repeats // passes, 5),
        passes=passes,
        median=True,
    )
    seconds = {item: slope.per_layer_s for item, slope in zip(items, slopes, strict=True)}
    per_element = {
        op: seconds[op, shape] / math.prod(shape) for op, shape in ELEMENTWISE_SHAPES.items()
    }
    per_row = {}
    for op, shape in ROW_SHAPES.items():
        short = ELEMENTWISE_SHAPES[op]
        per_row[op], per_element[op] = per_row_and_element(
            (seconds[op, short], math.prod(short[:-1]), math.prod(short)),
            (seconds[op, shape], math.prod(shape[:-1]), math.prod(shape)),
        )
    return per_element, per_row


def middle_round(
    rounds: list[tuple[dict[str, float], dict[str, float]]],
) -> tuple[dict[str, float], dict[str, float]]:
    """(per element, per row) of several :func:`elementwise_costs` rounds timed at different
    times of a calibration: per operator, the middle round's cost (the lower middle of an
    even count: of two, the faster). A slow spell can outlast a round's passes: on an Intel
    Xeon one round of a calibration measured every operator 1.2-1.8x slower than the round
    a minute before. A row-by-row operator's two costs are solved again
    (:func:`per_row_and_element`) from the middle of each of its two timings -- the short
    rows' and the long rows', each rebuilt from a round's costs -- taken apart: its cost
    per row is the small difference of the two, and one round's disturbed short-row timing
    alone made LayerNorm's 150-160 cycles a row where the other calibrations on the same
    AMD EPYC Zen 3 gave 91-102 (with the two costs kept from one round)."""
    if not rounds:
        raise ValueError("need at least one round")
    per_element, per_row = {}, {}
    for op in rounds[0][0]:
        if op in ROW_SHAPES and all(op in rows for _, rows in rounds):
            timings = []
            for shape in (ELEMENTWISE_SHAPES[op], ROW_SHAPES[op]):
                lines, elements = math.prod(shape[:-1]), math.prod(shape)
                seconds = [e[op] * elements + r[op] * lines for e, r in rounds]
                timings.append((lower_median(seconds, key=float), lines, elements))
            per_row[op], per_element[op] = per_row_and_element(*timings)
        else:
            per_element[op] = lower_median([e[op] for e, _ in rounds], key=float)
    return per_element, per_row
