"""The node-to-layer mapping of the ONNX import (:mod:`lowbit.hwsim.onnx_workload` states the
rules): :class:`GraphMapper` walks a loaded graph twice, first to find which tensors are
views of which and who reads them, then to map compute nodes, fused epilogues, element-wise
chains and pools to hwsim layers, listing every node it cannot map with the reason.
"""

from __future__ import annotations

import math

import onnx

from lowbit.hwsim._onnx_graph import OnnxGraph, dtype_bits
from lowbit.hwsim._onnx_ops import (
    BINARY_OPS,
    COMPUTE_OPS,
    CONV_OPS,
    EPILOGUE_OPS,
    FREE_OPS,
    MOVEMENT_OPS,
    POOL_OPS,
    QUANT_OPS,
    STANDALONE_OPS,
    UNARY_OPS,
    default_opset,
    kind_of,
    reduced_rows,
    transpose_runs,
)
from lowbit.hwsim._onnx_runtime import (
    float_reason,
    folded_transpose,
    runs_float,
    runtime_layers,
    strided_transpose,
)
from lowbit.hwsim.compression import spec_bits
from lowbit.hwsim.workload import (
    FLOAT_BITS,
    Compression,
    Conv2d,
    Elementwise,
    Layer,
    Linear,
    MatMul,
    Pool,
)

__all__ = ["GraphMapper"]


def _both_at(width_bits: int) -> Compression:
    """Both operands stored ``width_bits`` wide (an ONNX tensor's width: 32 is float)."""
    return Compression(w_bits=spec_bits(width_bits), a_bits=spec_bits(width_bits))


class GraphMapper:
    """Two passes over the graph's nodes (see the module docstring for the rules): the first
    finds which tensors are views of which (free ops) and who reads them, the second maps."""

    def __init__(self, graph: OnnxGraph) -> None:
        self.g = graph
        ops = {node.op_type for node in graph.nodes}
        self.quantized = bool(ops & (QUANT_OPS | (set(COMPUTE_OPS) - {"Conv", "Gemm", "MatMul"})))
        self.alias: dict[str, str] = {}  # tensor -> the tensor it is a view of
        self.readers: dict[str, set[int]] = {}  # root tensor -> indices of nodes reading it
        self.owner: dict[str, str | int] = {}  # root tensor -> "compute" | group id
        self.groups: dict[int, list[int]] = {}  # group id -> node indices
        self.unmapped: list[tuple[str, str, str]] = []
        self.layers: dict[int, Layer] = {}  # node index (of a group: its last) -> layer
        self.names: dict[str, int] = {}
        self.skip: set[int] = set()
        for index, node in enumerate(graph.nodes):
            acts = graph.activation_inputs(node)
            if not acts and node.output and all(o in graph.static for o in node.output):
                self.skip.add(index)  # computed from constants / shapes only
            elif node.op_type in FREE_OPS or self._code_clip(node) or folded_transpose(graph, node):
                self.skip.add(index)
                self.alias.update({out: acts[0] for out in node.output if acts})
        for index, node in enumerate(graph.nodes):
            if index not in self.skip:
                for tensor in graph.activation_inputs(node):
                    self.readers.setdefault(self.root(tensor), set()).add(index)
        for out in graph.outputs:
            self.readers.setdefault(self.root(out), set()).add(-1)  # -1: the graph output

    # --- helpers -------------------------------------------------------------------------
    def _code_clip(self, node: onnx.NodeProto) -> bool:
        """A Clip of QuantizeLinear codes (a sub-8-bit grid): part of the quantizer."""
        source = self.g.producer.get(node.input[0]) if node.input else None
        return node.op_type == "Clip" and source is not None and source.op_type in QUANT_OPS

    def root(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def requantized(self, tensor: str) -> bool:
        """Does ``tensor`` reach its root through a QuantizeLinear? A compute layer's output
        stage cannot apply an op after its output was requantized: the runtime runs that op
        on its own (ONNX Runtime's QLinearAdd for a bias after a QLinearMatMul)."""
        while tensor in self.alias:
            node = self.g.producer.get(tensor)
            if node is not None and node.op_type == "QuantizeLinear":
                return True
            tensor = self.alias[tensor]
        return False

    def only_reader(self, root: str, index: int) -> bool:
        return self.readers.get(root) == {index}

    def bits(self, tensor: str) -> int:
        """Storage bits of an activation (default 8 in a float graph, 32 if unquantized)."""
        if not self.quantized:
            return 8
        found = self.g.activation_bits(tensor)
        return FLOAT_BITS if found is None else found

    def unique(self, name: str) -> str:
        self.names[name] = self.names.get(name, 0) + 1
        return name if self.names[name] == 1 else f"{name}#{self.names[name]}"

    def shape(self, tensor: str) -> tuple[int, ...]:
        shape = self.g.shapes.get(tensor)
        if shape is None:
            raise _Unmappable(f"shape of {tensor!r} unknown after shape inference")
        if not all(d > 0 for d in shape):
            raise _Unmappable(f"tensor {tensor!r} has an empty dimension {shape}")
        return shape

    # --- the pass --------------------------------------------------------------------------
    def run(self) -> None:
        for index, node in enumerate(self.g.nodes):
            if index in self.skip:
                continue
            op = node.op_type
            try:
                if op in COMPUTE_OPS and node.domain in ("", "ai.onnx", "com.microsoft"):
                    self.layers[index] = self.compute(node, index)
                    self.owner.update({out: "compute" for out in node.output})
                elif op in POOL_OPS or op in STANDALONE_OPS:
                    self.layers[index] = self.memory(node, index, pool=op in POOL_OPS)
                elif op in UNARY_OPS or op in BINARY_OPS:
                    self.elementwise(node, index)
                elif op in MOVEMENT_OPS:
                    self.layers[index] = self.movement(node, index)
                else:
                    raise _Unmappable(f"no hwsim mapping for {op}")
            except _Unmappable as exc:
                self.unmapped.append((node.name or f"{op}_{index}", op, str(exc)))
        self.layers.update(runtime_layers(self))
        self.group_layers()

    def float_ops(self) -> list[tuple[str, str, str]]:
        """``(node name, op type, why)`` of the operators of a quantized graph that ONNX
        Runtime runs in float (``_onnx_runtime.float_reason``)."""
        if not self.quantized:
            return []
        return [
            (node.name or f"{node.op_type}_{index}", node.op_type, why)
            for index, node in enumerate(self.g.nodes)
            if (why := float_reason(self.g, node))
        ]

    def compute(self, node: onnx.NodeProto, index: int) -> Layer:
        x_at, w_at, _ = COMPUTE_OPS[node.op_type]
        x, w = node.input[x_at], node.input[w_at]
        x_static, w_static = x in self.g.static, w in self.g.static
        if node.op_type in CONV_OPS:
            if not w_static:
                raise _Unmappable("convolution with a weight computed at run time")
            return self.conv(node, index, x, w)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        a, b = self.shape(x), self.shape(w)
        if node.op_type in ("Gemm", "QGemm"):  # 2-D, optionally transposed operands
            a = a[::-1] if attrs.get("transA", 0) else a
            b = b[::-1] if attrs.get("transB", 0) else b
        a = (1, *a) if len(a) == 1 else a
        b = (*b, 1) if len(b) == 1 else b
        out = self.shape(node.output[0])
        if x_static and w_static:
            raise _Unmappable("product of two constants")
        if w_static and len(b) == 2:  # activation · weight: a Linear over every row of x
            weight_axis = 0 if attrs.get("transB", 0) else 1  # the output-feature axis
            return Linear(
                name=self.unique(self.g.layer_name(node, index, weight=w)),
                compression=self.compression(node, x, w, axis=weight_axis),
                in_features=a[-1],
                out_features=b[-1],
                tokens=math.prod(a[:-1]),
                fused_bias=node.op_type in ("Gemm", "QGemm"),
            )
        if x_static and len(a) == 2:  # weight · activation: a Linear over b's columns
            return Linear(
                name=self.unique(self.g.layer_name(node, index, weight=x)),
                compression=self.compression(node, w, x, axis=0),
                in_features=a[-1],
                out_features=a[-2],
                tokens=math.prod(out) // a[-2],
                fused_bias=node.op_type in ("Gemm", "QGemm"),
            )
        if x_static or w_static:
            raise _Unmappable("product with a batched constant operand")
        bits = max(self.bits(x), self.bits(w))
        return MatMul(
            name=self.unique(self.g.layer_name(node, index, weight=None)),
            compression=_both_at(bits) if self.quantized else Compression(),
            M=a[-2],
            N=b[-1],
            K=a[-1],
            heads=math.prod(out[:-2]),
        )

    def compression(self, node: onnx.NodeProto, act: str, weight: str, *, axis: int):
        """Bits of a weighted layer: default W8A8 in a float graph, else from the graph (a
        conv ONNX Runtime cannot fuse runs float: ``_onnx_runtime.runs_float``)."""
        if not self.quantized:
            return Compression()
        if runs_float(self.g, node):
            return Compression(w_bits=None, a_bits=None)
        if COMPUTE_OPS[node.op_type][2] >= 0:  # QLinear/Integer op: integer inputs
            w_bits = self.g.codes_bits(weight, axis)
            a_bits = dtype_bits(self.g.dtypes.get(act, 0)) or self.bits(act)
        else:
            w_bits, a_bits = self.g.weight_bits(weight), self.bits(act)
        return Compression(w_bits=w_bits, a_bits=spec_bits(a_bits))

    def conv(self, node: onnx.NodeProto, index: int, x: str, w: str) -> Layer:
        xs, ws, ys = self.shape(x), self.shape(w), self.shape(node.output[0])
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        strides = list(attrs.get("strides", [1] * (len(xs) - 2)))
        if len(xs) == 3:  # a 1-D conv is a 2-D conv of height 1
            xs, ws, ys = (*xs[:2], 1, xs[2]), (*ws[:2], 1, ws[2]), (*ys[:2], 1, ys[2])
        if len(xs) != 4:
            raise _Unmappable(f"{len(xs) - 2}-D convolution (hwsim maps 1-D and 2-D)")
        # hwsim keeps one stride (informational: output sizes are stored); take the larger
        return Conv2d(
            name=self.unique(self.g.layer_name(node, index, weight=w)),
            compression=self.compression(node, x, w, axis=0),
            in_h=xs[2],
            in_w=xs[3],
            in_c=xs[1],
            out_c=ws[0],
            k_h=ws[2],
            k_w=ws[3],
            stride=max(strides),
            out_h=ys[2],
            out_w=ys[3],
            groups=int(attrs.get("group", 1)),
            batch=xs[0],
            as_deployed=True,
            weight_storage=self.g.weight_storage(w),
        )

    def memory(self, node: onnx.NodeProto, index: int, *, pool: bool) -> Layer:
        x = self.g.activation_inputs(node)[0]
        in_elements, out_elements = math.prod(self.shape(x)), math.prod(self.shape(node.output[0]))
        bits = self.bits(x)
        common = dict(
            name=self.unique(self.g.layer_name(node, index, weight=None)),
            compression=_both_at(bits),
        )
        kind = kind_of({node.op_type})
        if pool:
            return Pool(
                **common,
                in_elements=in_elements,
                out_elements=out_elements,
                kind=kind if kind in ("maxpool", "avgpool") else "",
            )
        rows = reduced_rows(node, self.shape(x), opset=default_opset(self.g.model))
        return Elementwise(**common, elements=out_elements, kind=kind, rows=min(rows, out_elements))

    def movement(self, node: onnx.NodeProto, index: int) -> Layer:
        """A Transpose, Concat or Split: a copy of every element it outputs."""
        acts = self.g.activation_inputs(node)
        if not acts:
            raise _Unmappable("data movement without an activation input")
        elements = sum(math.prod(self.shape(out)) for out in node.output if out)
        bits = self.bits(acts[0])
        strided = strided_transpose(self.g, node, quantized=self.quantized)
        # a Transpose's contiguous runs (a Concat's or Split's inputs need no known shape)
        shape = self.g.shapes.get(acts[0]) if node.op_type == "Transpose" and not strided else None
        runs = transpose_runs(node, shape) if shape and all(d > 0 for d in shape) else 0
        return Elementwise(
            name=self.unique(self.g.layer_name(node, index, weight=None)),
            compression=_both_at(bits),
            elements=elements,
            kind="transpose_strided" if strided else MOVEMENT_OPS[node.op_type],
            rows=min(runs, elements),
        )

    def elementwise(self, node: onnx.NodeProto, index: int) -> None:
        """Fuse into the compute layer it follows, or join / start an element-wise group
        (not across a requantization)."""
        acts = self.g.activation_inputs(node)
        roots = list(dict.fromkeys(self.root(t) for t in acts))
        if (
            node.op_type in EPILOGUE_OPS
            and len(roots) == 1
            and self.owner.get(roots[0]) == "compute"
            and self.only_reader(roots[0], index)
            and not self.requantized(acts[0])
        ):
            self.owner.update({out: "compute" for out in node.output})  # output stage
            return
        # an input that was requantized on its way here is not fused with its producer:
        # the runtime runs each op between Q/DQ pairs as a kernel of its own (ONNX Runtime's
        # QLinearAdd, QLinearMul), one dispatch and one pass over the tensor each
        joined = {
            owner
            for t in acts
            if isinstance(owner := self.owner.get(r := self.root(t)), int)
            and self.only_reader(r, index)
            and not self.requantized(t)
        }
        group = min(joined, default=index)
        members = [index] + [i for other in joined for i in self.groups.pop(other)]
        self.groups[group] = sorted(members)
        for tensor, owner in self.owner.items():
            if owner in joined:
                self.owner[tensor] = group
        self.owner.update({out: group for out in node.output})

    def group_layers(self) -> None:
        """One Elementwise per group, placed at its last node: reads = the distinct outside
        tensors it reads, elements = its largest output read outside the group."""
        for members in self.groups.values():
            nodes = [self.g.nodes[i] for i in members]
            produced = {out for n in nodes for out in n.output}
            reads = sorted(
                {
                    t
                    for n in nodes
                    for t in self.g.activation_inputs(n)
                    if t not in produced and self.root(t) not in produced
                }
            )
            leaving = [
                out for out in produced if not self.readers.get(out, set()) <= set(members)
            ] or [nodes[-1].output[0]]
            try:
                elements = max(math.prod(self.shape(out)) for out in leaving)
                read = sum(math.prod(self.shape(t)) for t in reads)
            except _Unmappable as exc:
                self.unmapped.append(
                    (nodes[0].name or nodes[0].op_type, nodes[0].op_type, str(exc))
                )
                continue
            bits = self.bits(reads[0]) if reads else 8
            if self.quantized and any(runs_float(self.g, n) for n in nodes):
                bits = FLOAT_BITS  # a ReLU quantized onto two grids runs in float
            self.layers[members[-1]] = Elementwise(
                name=self.unique(self.g.layer_name(nodes[0], members[0], weight=None)),
                compression=_both_at(bits),
                elements=elements,
                inputs=max(1, round(read / elements)),
                kind=kind_of({n.op_type for n in nodes}),
            )


class _Unmappable(Exception):
    """A node of a mapped op type whose attributes or shapes hwsim cannot represent."""
