"""The rows the ONNX importer gives a LayerNorm or softmax (``Elementwise.rows``): the
pieces it normalizes one at a time, by its ``axis``."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.hwsim.onnx_workload import load_onnx_workload


def _one_op(op: str, shape: tuple[int, ...], opset: int = 17, **attrs) -> onnx.ModelProto:
    inputs, inits = ["x"], []
    if op == "LayerNormalization":
        axis = attrs.get("axis", -1) % len(shape)
        normalized = list(shape[axis:])
        inits = [
            numpy_helper.from_array(np.ones(normalized, np.float32), "g"),
            numpy_helper.from_array(np.zeros(normalized, np.float32), "b"),
        ]
        inputs += ["g", "b"]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], **attrs)],
        op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(
    ("op", "shape", "attrs", "rows"),
    [
        ("LayerNormalization", (1, 17, 32), {}, 17),  # a ViT's tokens: one row each
        ("LayerNormalization", (2, 3, 4), {"axis": 1}, 2),  # the axes from 1 on, together
        ("Softmax", (1, 4, 64, 64), {}, 4 * 64),  # attention scores: a row per head and query
        ("Softmax", (2, 3, 4), {"axis": 1}, 2 * 4),  # opset 13: the one axis
        ("LogSoftmax", (8, 10), {"axis": -1}, 8),
    ],
)
def test_rows_follow_the_normalized_axis(tmp_path, op, shape, attrs, rows):
    onnx.save(_one_op(op, shape, **attrs), tmp_path / "m.onnx")
    (layer,) = load_onnx_workload(tmp_path / "m.onnx").layers
    assert layer.rows == rows and layer.elements == math.prod(shape)
    assert layer.elements % layer.rows == 0


def test_an_elementwise_op_has_no_rows(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"])],
        "erf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx"
    )
    (layer,) = load_onnx_workload(tmp_path / "m.onnx").layers
    assert layer.rows == 0


@pytest.mark.parametrize(
    ("shape", "perm", "rows"),
    [
        ((1, 64, 4, 32), [0, 2, 1, 3], 64 * 4),  # attention's head split: runs of 32
        ((1, 2, 58, 7, 7), [0, 2, 1, 3, 4], 2 * 58),  # a channel shuffle: runs of a map
        ((1, 16, 8, 8), [0, 2, 3, 1], 0),  # the layout change: its own per-element cost
        ((4, 8), [1, 0], 0),  # the innermost axis moves: no runs
    ],
)
def test_a_transpose_that_keeps_its_innermost_axis_copies_runs(tmp_path, shape, perm, rows):
    out = [shape[p] for p in perm]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"], perm=perm)],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    (layer,) = load_onnx_workload(tmp_path / "m.onnx").layers
    assert layer.kind in ("transpose", "transpose_strided") and layer.rows == rows


@pytest.mark.parametrize(
    ("attrs", "rows"),
    [({}, 1), ({"axis": 1}, 1), ({"axis": 2}, 4), ({"axis": -1}, 4 * 8)],
)
def test_before_opset_13_a_softmax_normalizes_the_axes_from_its_axis_together(
    tmp_path, attrs, rows
):
    # opset 11: the input flattened to 2-D at ``axis`` (default 1), one row per leading index
    onnx.save(_one_op("Softmax", (1, 4, 8, 8), opset=11, **attrs), tmp_path / "m.onnx")
    (layer,) = load_onnx_workload(tmp_path / "m.onnx").layers
    assert layer.rows == rows


def test_a_concat_of_an_empty_tensor_still_imports(tmp_path):
    # an empty input (a KV cache's first step) has no runs to count: the Concat is a copy
    ints = {"zero": [0], "axis": [2]}
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Slice", ["r", "zero", "zero", "axis"], ["empty"]),  # (1,4,0,8)
            helper.make_node("Concat", ["empty", "r"], ["y"], axis=2),
        ],
        "concat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    layers = load_onnx_workload(tmp_path / "m.onnx").layers
    concat = [layer for layer in layers if getattr(layer, "kind", "") == "concat"]
    assert len(concat) == 1 and concat[0].rows == 0 and concat[0].elements == 4 * 8 * 8
