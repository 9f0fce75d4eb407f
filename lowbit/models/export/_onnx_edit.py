"""Editing an ONNX graph in place: the lookups and the node insertion that lowbit's export
passes share (:mod:`lowbit.models.export._onnx_pad`, :mod:`lowbit.models.export._onnx_layout`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GraphEdit", "attr"]


def attr(node: onnx.NodeProto, name: str, default):
    """The value of ``node``'s attribute ``name``, or ``default``."""
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


class GraphEdit:
    """A model's graph with its initializers by name; nodes added with
    :meth:`insert_before` are placed by :meth:`finish` (inserting into a protobuf repeated
    field while holding references to its elements shifts what those references see)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.inits = {t.name: t for t in model.graph.initializer}
        self._before: dict[str, onnx.NodeProto] = {}

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return next((n for n in self.graph.node if tensor in n.output), None)

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.graph.node if tensor in n.input]

    def through_qdq(self, tensor: str) -> onnx.NodeProto | None:
        """The single node that consumes ``tensor``, looking through Q → DQ pairs."""
        nodes = self.consumers(tensor)
        while len(nodes) == 1 and nodes[0].op_type in ("QuantizeLinear", "DequantizeLinear"):
            nodes = self.consumers(nodes[0].output[0])
        return nodes[0] if len(nodes) == 1 else None

    def array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.inits[name])

    def set(self, name: str, array: np.ndarray) -> None:
        self.inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), name))

    def add_init(self, name: str, array: np.ndarray) -> str:
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def weight_dq(self, tensor: str) -> onnx.NodeProto | None:
        """The DequantizeLinear of constant codes that produces ``tensor``, if any."""
        dq = self.producer(tensor)
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) != 3:
            return None  # not constant codes with an explicit scale and zero point
        return dq if all(name in self.inits for name in dq.input) else None

    def insert_before(self, tensor: str, node: onnx.NodeProto) -> None:
        """Add ``node`` just before the node that produces ``tensor`` (at :meth:`finish`)."""
        self._before[tensor] = node

    def finish(self) -> onnx.ModelProto:
        """Place the inserted nodes, check the model and return it."""
        if self._before:
            nodes = []
            for node in self.graph.node:
                if node.output and node.output[0] in self._before:
                    nodes.append(self._before[node.output[0]])
                nodes.append(onnx.NodeProto.FromString(node.SerializeToString()))
            self.graph.ClearField("node")
            self.graph.node.extend(nodes)
        onnx.checker.check_model(self.model)
        return self.model
