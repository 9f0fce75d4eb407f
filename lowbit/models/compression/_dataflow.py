"""Where quantized values flow between modules, found with ``torch.fx``.

Two questions about a model decide whether its deployed graph stays on ONNX Runtime's
integer kernels, and what those kernels round to:

**Sites** (:func:`quant_sites`). A residual :class:`~lowbit.models.zoo.Add` and a global
average pool (``nn.AdaptiveAvgPool2d(1)``) are not plan layers (a plan names compute
layers), but a convolution whose output is added to a shortcut, or averaged, runs as
``QLinearConv`` only if that output is quantized, and the add or pool itself runs as
``QLinearAdd`` / ``QLinearGlobalAveragePool`` only on quantized inputs and output. An Add
or global pool module called once is a site when a compute layer with quantized inputs
reads its output, directly or through :data:`TRANSPARENT` operations or another site. It
takes those readers' activation settings (``a_bits``, ``symmetric``, ``calibration``; the
most bits if they differ), so its output grid is the very grid they quantize their input to
(calibrated on the same values with the same settings) and the deployed graph needs one
quantizer there. An add whose only reader is a ReLU has it folded: its output grid is
calibrated after the ReLU, so its lowest code is the zero point and the ReLU is the clamp.

**Output readers** (:func:`output_readers`). ONNX Runtime fuses a Conv (or a Gemm) and the
QuantizeLinear after it into one integer kernel that requantizes the int32 accumulator
straight onto the output grid, ``round(acc · fl(fl(s_x·s_w) / s_y))``; rounding the float
output ``fl(acc · fl(s_x·s_w))`` on that grid afterwards differs in rare ties. The exporter
moves a reader's quantizer back to the layer's output through the same single-reader chain
of operations that commute with rounding, so a quantized compute layer whose output reaches
only quantized inputs that way knows the grid its kernel writes (when they agree) and
computes the kernel's rounding (:meth:`lowbit.models.compression.quant.QuantLayer.forward`).

A model ``torch.fx`` cannot trace has no sites and no output readers (adds and pools stay
float and outputs are rounded by their readers, as before).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from lowbit.models.compression.plan import LayerSpec
from lowbit.models.compression.quant import QuantAdd, QuantGlobalAvgPool, QuantLayer, QuantMatMul
from lowbit.models.graph import COMPUTE_LAYERS, MatMulSite
from lowbit.models.zoo._base import Add

__all__ = ["TRANSPARENT", "QuantSite", "is_global_pool", "output_readers", "quant_sites"]

_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_}
_FUNCTIONS = {
    *_RELU_FUNCTIONS,
    F.relu6,
    F.hardtanh,
    F.max_pool1d,
    F.max_pool2d,
    F.dropout,
    torch.flatten,
    torch.reshape,
}
_METHODS = {"relu", "relu_", "flatten", "view", "reshape", "contiguous"}
_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
)
#: operations a quantized value passes through unchanged up to rounding (they commute with
#: rounding to a grid that contains zero, and the exporter moves quantizers across them):
#: ReLU, ReLU6/Hardtanh (a Clip), max pooling, flatten/reshape, dropout (eval), identity
TRANSPARENT = (_FUNCTIONS, _METHODS, _MODULES)


@dataclass(frozen=True, slots=True)
class QuantSite:
    """An Add or global average pool that runs on integer kernels once deployed.

    Attributes:
        name: module name.
        kind: ``add`` or ``pool``.
        a_bits: bits of its input and output grids.
        symmetric: symmetric grids (else asymmetric), as :mod:`lowbit.models.compression.quant`.
        calibration: activation range estimator of its grids.
        relu: (adds) its output is read by a ReLU only, folded into the output grid.
    """

    name: str
    kind: str
    a_bits: int
    symmetric: bool
    calibration: str
    relu: bool = False


def is_global_pool(module: nn.Module) -> bool:
    """``module`` is a 2-D adaptive average pool to one pixel (a global average pool)."""
    if not isinstance(module, nn.AdaptiveAvgPool2d):
        return False
    size = module.output_size
    return all(s == 1 for s in size) if isinstance(size, tuple) else size == 1


class _Tracer(fx.Tracer):
    """Keeps compute layers (quantized wrappers too), BatchNorm, Add, MatMulSite and pools
    as single call_module nodes."""

    _LEAVES = (
        *COMPUTE_LAYERS,
        nn.modules.batchnorm._BatchNorm,
        Add,
        MatMulSite,
        nn.AdaptiveAvgPool2d,
    )

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self._LEAVES) or super().is_leaf_module(m, module_qualified_name)


class _Flow:
    """A traced model: its nodes and modules (``graph`` is None if it cannot be traced)."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = dict(model.named_modules())
        try:
            self.graph: fx.Graph | None = _Tracer().trace(model)
        except Exception:  # noqa: BLE001 -- any trace failure means: no dataflow known
            self.graph = None
        self.calls: dict[str, int] = {}
        for node in self.graph.nodes if self.graph is not None else ():
            if node.op == "call_module":
                self.calls[node.target] = self.calls.get(node.target, 0) + 1

    def module(self, node: fx.Node) -> nn.Module | None:
        return self.modules.get(node.target) if node.op == "call_module" else None

    def transparent(self, node: fx.Node, source: fx.Node) -> bool:
        """``node`` passes ``source`` (its first argument) on through :data:`TRANSPARENT`."""
        if not node.args or node.args[0] is not source:
            return False
        if node.op == "call_function":
            return node.target in _FUNCTIONS
        if node.op == "call_method":
            return node.target in _METHODS
        return isinstance(self.module(node), _MODULES)

    def relu(self, node: fx.Node) -> bool:
        if node.op == "call_function":
            return node.target in _RELU_FUNCTIONS
        if node.op == "call_method":
            return node.target in ("relu", "relu_")
        return isinstance(self.module(node), nn.ReLU)

    def candidate(self, node: fx.Node) -> bool:
        """An Add or global pool module called once (a possible site)."""
        module = self.module(node)
        return self.calls.get(node.target) == 1 and (
            isinstance(module, Add) or (module is not None and is_global_pool(module))
        )


def _spec_of(name: str, specs: dict[str, LayerSpec]) -> LayerSpec | None:
    """The plan settings of a compute layer (a low-rank factor ``x.first`` has ``x``'s)."""
    while name not in specs and "." in name:
        name = name.rsplit(".", 1)[0]
    return specs.get(name)


def quant_sites(model: nn.Module, specs: dict[str, LayerSpec]) -> dict[str, QuantSite]:
    """The adds and global pools of ``model`` that run on integer kernels (module
    docstring), by module name, given the effective plan settings ``specs``
    (:meth:`~lowbit.models.compression.plan.CompressionPlan.effective`)."""
    flow = _Flow(model)
    if flow.graph is None:
        return {}

    def readers(node: fx.Node) -> list[fx.Node | None]:
        """Nodes reading ``node``'s output through transparent operations (None: a reader
        that is neither a compute layer's input nor a candidate)."""
        found: list[fx.Node | None] = []
        todo = [node]
        while todo:
            current = todo.pop()
            for user in current.users:
                compute = isinstance(flow.module(user), COMPUTE_LAYERS)
                if flow.transparent(user, current):
                    todo.append(user)
                elif (compute and user.args[0] is current) or flow.candidate(user):
                    found.append(user)
                else:
                    found.append(None)
        return found

    settings: dict[str, LayerSpec | None] = {}

    def settings_of(node: fx.Node) -> LayerSpec | None:
        """The settings a candidate takes from its readers (None: none reads it quantized)."""
        if node.target not in settings:
            best = None
            for reader in readers(node):
                if reader is None:
                    continue
                candidate = flow.candidate(reader)
                spec = settings_of(reader) if candidate else _spec_of(reader.target, specs)
                if spec is not None and spec.a_bits is not None:
                    if best is None or spec.a_bits > best.a_bits:
                        best = spec
            settings[node.target] = best
        return settings[node.target]

    sites = {}
    for node in flow.graph.nodes:
        if not flow.candidate(node) or (spec := settings_of(node)) is None:
            continue
        add = isinstance(flow.module(node), Add)
        users = list(node.users)
        sites[node.target] = QuantSite(
            name=node.target,
            kind="add" if add else "pool",
            a_bits=spec.a_bits,
            symmetric=spec.symmetric,
            calibration=spec.calibration,
            relu=add and len(users) == 1 and flow.relu(users[0]),
        )
    return sites


def output_readers(model: nn.Module) -> dict[str, tuple[tuple[nn.Module, str], ...]]:
    """Quantized compute layers of a compressed ``model`` whose output only quantized inputs
    read, through a chain of single-reader :data:`TRANSPARENT` operations (and the layer's
    folded BatchNorm): layer name -> ((reader module, reader's grid prefix: ``act`` for the
    first input, ``b`` for the second), ...). Which grids the readers hold is read at
    inference (module docstring)."""
    flow = _Flow(model)
    if flow.graph is None:
        return {}
    found = {}
    for node in flow.graph.nodes:
        layer = flow.module(node)
        if not isinstance(layer, QuantLayer) or flow.calls[node.target] != 1:
            continue
        current = node
        while len(current.users) == 1:
            (user,) = current.users
            bn = flow.module(user)
            folded = getattr(bn, "producer", None) is layer and user.args[0] is current
            if not (folded or flow.transparent(user, current)):
                break
            current = user
        readers = [_slots(flow.module(user), user, current) for user in current.users]
        if readers and all(readers):
            found[node.target] = tuple(r for slots in readers for r in slots)
    return found


def _slots(reader: nn.Module | None, user: fx.Node, value: fx.Node) -> list[tuple[nn.Module, str]]:
    """(reader, grid prefix) for each quantized input of ``reader`` that ``value`` feeds
    (``user`` calls ``reader``); empty if ``value`` reaches something else."""
    if isinstance(reader, (QuantLayer, QuantGlobalAvgPool)):
        return [(reader, "act")] if user.args[0] is value and len(user.args) == 1 else []
    if isinstance(reader, (QuantMatMul, QuantAdd)) and not user.kwargs:
        return [(reader, p) for p, a in zip(("act", "b"), user.args, strict=True) if a is value]
    return []
