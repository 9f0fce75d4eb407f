"""Seconds per element of memory-bound float operators -- Add, Relu, LayerNorm, Softmax,
Gelu and MaxPool -- on zoo-sized tensors (split from :mod:`lowbit.models.hostcal.bench`):
each a chain of the operator at two depths (:func:`~lowbit.models.hostcal.bench.depth_slope`),
measured in :func:`~lowbit.models.hostcal.bench.chain_slopes` passes."""

from __future__ import annotations

import math

import numpy as np

from lowbit.models.hostcal.bench import PASSES, chain_slopes

__all__ = ["ELEMENTWISE_SHAPES", "elementwise_costs"]


#: memory-bound operators timed per element by :func:`elementwise_costs`, and the float
#: tensor each runs on: digits-vit at batch 64 (64 x 17 tokens x 32 features), and the
#: digits-cnn conv2 output at batch 64 for MaxPool (3x3, stride 1: the size is kept)
ELEMENTWISE_SHAPES = {
    "Add": (1088, 32),
    "Relu": (1088, 32),
    "LayerNormalization": (1088, 32),
    "Softmax": (1088, 32),
    "Gelu": (1088, 32),
    "MaxPool": (64, 32, 8, 8),
}


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
    extra = {"Add": ["gamma"], "LayerNormalization": ["gamma", "beta"]}.get(op, [])
    attrs = {"axis": -1} if op in ("LayerNormalization", "Softmax") else {}
    return [helper.make_node(op, [src, *extra], [dst], **attrs)]


def _elementwise_chain(op: str, depth: int):
    from onnx import TensorProto, helper, numpy_helper

    shape = ELEMENTWISE_SHAPES[op]
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


def elementwise_costs(*, repeats: int, passes: int = PASSES) -> dict[str, float]:
    """Seconds per (input) element of memory-bound operators (:data:`ELEMENTWISE_SHAPES`,
    two chain depths; ``repeats`` runs per round, shared by the
    :func:`~lowbit.models.hostcal.bench.chain_slopes` ``passes``). hwsim has no per-element
    compute cost for such layers: recorded for the engine's CPU model and ``lowbit
    validate``'s diagnostic."""

    ops = list(ELEMENTWISE_SHAPES)
    slopes = chain_slopes(
        ops,
        build=_elementwise_chain,
        inputs=lambda op: (
            np.random.default_rng(0).normal(size=ELEMENTWISE_SHAPES[op]).astype(np.float32)
        ),
        what=lambda op: f"{op} chain",
        repeats=max(repeats // passes, 5),
        passes=passes,
    )
    return {
        op: slope.per_layer_s / math.prod(ELEMENTWISE_SHAPES[op])
        for op, slope in zip(ops, slopes, strict=True)
    }
