"""The channel spaces of a traced graph: which tensors share a producer's channel indices.

:mod:`lowbit.models.trace` asks :class:`StreamWalker` for the *stream* of one producer node
(a Conv/Linear call): every tensor of the ``torch.fx`` graph whose channels are that
producer's channels, found by a breadth-first walk in both directions over the operations
that keep channels apart (rules in the docstring of :mod:`lowbit.models.trace`):

- forward, from a stream tensor to the operations reading it: per-channel operations and
  residual adds join the stream, a channel-major flatten joins it with ``repeat`` inputs per
  channel, an ungrouped Conv/Linear is a *consumer*; anything else is a problem;
- backward, from a per-channel operation or an add to its tensor inputs: a Conv/Linear there
  is another *producer* of the stream (coupled: its output is added to the first one's),
  a per-channel operation joins the stream; the model input, a reshape or any other
  operation is a problem (those channels cannot be removed).

The first problem found stops the walk: a stream with a problem gives no prune group.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.nn import functional as F

from lowbit.models.graph import COMPUTE_LAYERS, POOL_LAYERS, is_depthwise

__all__ = ["Stream", "StreamWalker"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Mish,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
)
_ELEMENTWISE_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.hardtanh,
    F.gelu,
    F.silu,
    F.leaky_relu,
    F.elu,
    F.hardswish,
    F.hardsigmoid,
    F.mish,
    F.dropout,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.clamp,
    F.sigmoid,
    F.tanh,
}
#: arithmetic that is element-wise when its other operand is a number (``x * 0.5``)
_SCALAR_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, torch.mul}
_POOL_FUNCTIONS = {
    F.max_pool1d,
    F.max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
}
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "clamp", "contiguous"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
_CONCATS = {torch.cat, torch.concat, torch.stack}
_RESHAPES = {"view", "reshape", "flatten", "squeeze"}
_SHAPE_QUERIES = {"size", "dim"}
#: operations through which a stream is followed backward (they share their input's channels)
_PER_CHANNEL = ("depthwise", "norm", "pool", "elementwise", "add", "mean")


def shape_of(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _is_tensor(node: object) -> bool:
    return isinstance(node, fx.Node) and "tensor_meta" in node.meta


def _label(node: fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def data_users(node: fx.Node) -> list[fx.Node]:
    """Users that read the tensor's values (``x.size(0)`` and ``x.shape`` only read shape)."""
    out = []
    for user in node.users:
        if user.op == "call_method" and user.target in _SHAPE_QUERIES:
            continue
        if user.op == "call_function" and user.target is getattr:
            if user.args[1] in ("shape", "ndim"):
                continue
        out.append(user)
    return out


def only_tensor_input(user: fx.Node, cur: fx.Node) -> bool:
    """``cur`` is the user's first argument and its only tensor input (other inputs may be
    shape values such as ``x.size(0)`` or numbers)."""
    if not user.args or user.args[0] is not cur:
        return False
    return all(n is cur or not _is_tensor(n) for n in user.all_input_nodes)


def _flatten_repeat(before: tuple[int, ...], after: tuple[int, ...]) -> int | None:
    """Positions per channel of a channel-major flatten (N, C, *S) → (N, C·ΠS), else None."""
    if len(before) < 2 or len(after) != 2 or after[0] != before[0]:
        return None
    if after[1] != math.prod(before[1:]):
        return None
    return math.prod(before[2:])


def _mean_dims(node: fx.Node) -> tuple[int, ...] | None:
    """The dims a ``mean`` reduces (``x.mean((2, 3))``, ``torch.mean(x, dim=...)``), or None."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if isinstance(dims, int):
        return (dims,)
    if isinstance(dims, (tuple, list)) and dims and all(isinstance(d, int) for d in dims):
        return tuple(dims)
    return None


@dataclass
class Stream:
    """One channel space: its producers, consumers (with their inputs per channel) and
    followers (BatchNorm, depthwise convolutions), or the problem that disqualifies it."""

    channels: int
    producers: list[fx.Node] = field(default_factory=list)
    consumers: dict[fx.Node, int] = field(default_factory=dict)
    followers: list[fx.Node] = field(default_factory=list)
    problem: str | None = None


class _Stop(Exception):
    """The walk found a problem (its message)."""


class StreamWalker:
    """Finds the stream of a producer node (module docstring)."""

    def __init__(self, model: nn.Module, calls: dict[str, int]) -> None:
        self.model = model
        self.calls = calls

    def module(self, node: fx.Node) -> nn.Module:
        return self.model.get_submodule(node.target)

    def kind(self, node: fx.Node) -> str:
        """How a node treats the channels of its (first) tensor input."""
        if node.op == "placeholder":
            return "input"
        if node.op == "output":
            return "output"
        if node.op == "call_module":
            module = self.module(node)
            if is_depthwise(module):
                return "depthwise"
            if isinstance(module, COMPUTE_LAYERS):
                return "grouped" if getattr(module, "groups", 1) != 1 else "layer"
            if isinstance(module, _NORMS):
                return "norm"
            if isinstance(module, POOL_LAYERS):
                return "pool"
            if isinstance(module, nn.Flatten):
                return "reshape"
            return "elementwise" if isinstance(module, _ELEMENTWISE_MODULES) else "other"
        if node.op not in ("call_function", "call_method"):
            return "other"
        target = node.target
        tensors = sum(1 for n in node.all_input_nodes if _is_tensor(n))
        if (target in _ADD_FUNCTIONS or target in _ADD_METHODS) and tensors >= 2:
            return "add"
        if tensors > 1:
            return "concat" if target in _CONCATS else "other"
        if target in _POOL_FUNCTIONS:
            return "pool"
        if target in _RESHAPES or target in (torch.flatten, torch.reshape, torch.squeeze):
            return "reshape"
        if target == "mean" or target is torch.mean:
            return "mean"
        elementwise = _ELEMENTWISE_FUNCTIONS | _SCALAR_FUNCTIONS | _ADD_FUNCTIONS
        if target in elementwise or target in _ELEMENTWISE_METHODS or target in _ADD_METHODS:
            return "elementwise"
        return "other"

    def stream(self, start: fx.Node) -> Stream:
        """The stream of producer node ``start`` (an ungrouped Conv/Linear called once)."""
        producer = self.module(start)
        stream = Stream(channels=producer.weight.shape[0])
        self.layout: dict[fx.Node, tuple[int, int]] = {}  # node -> (channel axis, repeat)
        self.via: dict[fx.Node, fx.Node] = {}  # node reached backward -> the add it came by
        self.pending: deque[fx.Node] = deque()  # entered, sources not yet followed
        self.readers: deque[fx.Node] = deque()  # sources followed, readers not yet
        try:
            self._walk(start, stream)
        except _Stop as stop:
            stream.problem = str(stop)
        return stream

    # --- the walk --------------------------------------------------------------------------
    def _walk(self, start: fx.Node, stream: Stream) -> None:
        shape = shape_of(start)
        if shape is None:
            raise _Stop("no shape information from the example input")
        axis = self._natural_axis(start, shape)
        if len(shape) <= axis or shape[axis] != stream.channels:
            n = shape[axis] if len(shape) > axis else "no"
            raise _Stop(f"output channel axis has {n} entries, not {stream.channels}")
        stream.producers.append(start)
        self._enter(start, axis, 1, stream)
        # every source (producers, the residual adds' other operands) before any reader, so a
        # stream that cannot be pruned says why by its origin first
        while self.pending or self.readers:
            if self.pending:
                node = self.pending.popleft()
                if self.kind(node) in _PER_CHANNEL:
                    for source in node.all_input_nodes:
                        if _is_tensor(source):
                            self._backward(source, node, stream)
                self.readers.append(node)
                continue
            node = self.readers.popleft()
            for user in data_users(node):
                self._forward(node, user, stream)
        if not stream.consumers:
            raise _Stop("its output is read by no Conv/Linear")

    def _natural_axis(self, node: fx.Node, shape: tuple[int, ...]) -> int:
        return 1 if isinstance(self.module(node), (nn.Conv1d, nn.Conv2d)) else len(shape) - 1

    def _enter(self, node, axis: int, repeat: int, stream: Stream, via=None) -> None:
        """Add ``node``'s output to the stream with its channels on ``axis`` (``repeat``
        consecutive entries each); ``via``: the residual add it was reached backward by."""
        if node in self.layout:
            if self.layout[node] != (axis, repeat):
                raise _Stop(f"its channels reach {node.name} in two different layouts")
            return
        shape = shape_of(node)
        if shape is None or len(shape) <= axis or shape[axis] != stream.channels * repeat:
            raise _Stop(f"{node.name} does not carry its {stream.channels} channels on one axis")
        self.layout[node] = (axis, repeat)
        if via is not None:
            self.via[node] = via
        self.pending.append(node)

    def _member(self, node, kind: str, axis: int, repeat: int, stream: Stream, via=None) -> None:
        """Checks of a per-channel operation on the stream (either direction)."""
        name = node.target if node.op == "call_module" else node.name
        if kind in ("norm", "depthwise"):
            if self.calls.get(node.target, 0) > 1:
                raise _Stop(f"it flows into {name!r}, which is called more than once")
            module = self.module(node)
            size = module.num_features if kind == "norm" else module.out_channels
            if axis != 1 or repeat != 1 or size != stream.channels:
                what = "BatchNorm" if kind == "norm" else "depthwise convolution"
                raise _Stop(f"{what} {name!r} does not act on its channels one by one")
            if node not in stream.followers:
                stream.followers.append(node)
        elif kind == "pool" and (axis != 1 or repeat != 1):
            raise _Stop(f"pooling {name!r} is not over the channel's positions")
        elif kind == "mean":
            dims = _mean_dims(node)
            rank = len(shape_of(node.all_input_nodes[0]) or ())
            if dims is None or axis != 1 or repeat != 1 or any(d % rank < 2 for d in dims):
                raise _Stop(f"{name!r} is not a mean over the channel's positions")
        elif kind == "add":
            shapes = {shape_of(n) for n in node.all_input_nodes if _is_tensor(n)}
            if shapes != {shape_of(node)}:
                raise _Stop(
                    f"it is combined with another tensor of a different shape in {name!r} "
                    "(broadcasting)"
                )
        self._enter(node, axis, repeat, stream, via)

    def _forward(self, cur: fx.Node, user: fx.Node, stream: Stream) -> None:
        axis, repeat = self.layout[cur]
        kind = self.kind(user)
        label = user.target if user.op == "call_module" else _label(user)
        if kind == "output":
            where = "" if cur in stream.producers else f" (after {cur.name})"
            raise _Stop(f"its output{where} is a model output")
        if kind in ("layer", "grouped"):
            self._consumer(cur, user, kind, axis, repeat, stream)
        elif kind == "concat":
            raise _Stop(f"it is concatenated with other tensors in {label!r}")
        elif kind == "reshape":
            before, after = shape_of(cur) or (), shape_of(user) or ()
            if after[:2] != before[:2] or math.prod(after) != math.prod(before):
                step = _flatten_repeat(before, after)
                if step is None or axis != 1:
                    raise _Stop(f"{label!r} reshapes beyond a channel-major flatten")
                repeat *= step
            self._enter(user, axis, repeat, stream)
        elif kind in _PER_CHANNEL:
            self._member(user, kind, axis, repeat, stream)
        elif sum(1 for n in user.all_input_nodes if _is_tensor(n)) > 1:
            raise _Stop(f"it is combined with another tensor in {label!r} (not a residual add)")
        elif user.op == "call_module":
            raise _Stop(f"it flows into {type(self.module(user)).__name__} {label!r}")
        else:
            raise _Stop(f"it flows into {label!r}")

    def _consumer(self, cur, user, kind, axis, repeat, stream: Stream) -> None:
        name, module = user.target, self.module(user)
        if kind == "grouped":
            raise _Stop(f"its consumer {name!r} is a grouped convolution")
        if self.calls.get(name, 0) > 1:
            raise _Stop(f"its consumer {name!r} is called more than once")
        if not only_tensor_input(user, cur):
            raise _Stop(f"its consumer {name!r} takes other tensors too")
        if isinstance(module, nn.Linear):
            if axis != len(shape_of(cur) or ()) - 1:
                raise _Stop(f"its channels are not the features of Linear {name!r}")
        elif axis != 1 or repeat != 1:
            raise _Stop(f"its channels are not the input channels of {name!r}")
        others = {r for r in stream.consumers.values() if r != repeat}
        if others:
            raise _Stop(
                f"its channels reach {name!r} with {repeat} inputs each but other consumers "
                f"with {others.pop()}"
            )
        stream.consumers[user] = repeat

    def _backward(self, source: fx.Node, member: fx.Node, stream: Stream) -> None:
        """``source`` shares its channels with ``member`` (a per-channel op or an add)."""
        axis, repeat = self.layout[member]
        if source in self.layout:  # already in the stream (the way the walk came)
            self._enter(source, axis, repeat, stream)
            return
        via = self.via.get(member, member)  # the residual add that led here
        kind = self.kind(source)
        name = source.target if source.op == "call_module" else _label(source)
        added = f"it is combined with another tensor in {via.name!r}:"
        if kind == "input":
            raise _Stop(f"{added} the model input")
        if kind == "grouped":
            raise _Stop(f"{added} the output of grouped convolution {name!r}")
        if kind == "layer":
            if self.calls.get(name, 0) > 1:
                raise _Stop(f"{added} the output of {name!r}, which is called more than once")
            if self.module(source).weight.shape[0] != stream.channels * repeat or repeat != 1:
                raise _Stop(f"{added} the output of {name!r}, which has other channels")
            if self._natural_axis(source, shape_of(source) or ()) != axis:
                raise _Stop(f"{added} the output of {name!r}, with channels on another axis")
            stream.producers.append(source)
            self._enter(source, axis, 1, stream, via)
        elif kind in _PER_CHANNEL:
            self._member(source, kind, axis, repeat, stream, via)
        else:
            raise _Stop(f"{added} the output of {name!r}, which no Conv/Linear computes")
