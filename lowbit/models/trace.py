"""Prune groups of any ``nn.Module``, derived by tracing it with ``torch.fx``.

Zoo models declare their :class:`~lowbit.models.graph.PruneGroup` s by hand; a user's network
gets
them from :func:`derive_prune_groups`, which symbolically traces the module
(``torch.fx.symbolic_trace``), runs the example input through the graph for shapes
(``ShapeProp``) and accepts a Conv1d / Conv2d / Linear (ungrouped, called once) as a
**producer** when its output reaches exactly one consumer Conv / Linear (ungrouped, called
once) through per-channel operations only:

- BatchNorm1d/2d over the producer's channel axis (sliced with it: a *follower*);
- element-wise activations (ReLU, ReLU6, GELU, SiLU, sigmoid, tanh, LeakyReLU, ELU,
  Hardswish), dropout, identity, ``contiguous``;
- pooling over the positions (max/avg, adaptive), which keeps channels apart;
- a channel-major flatten (``nn.Flatten()``, ``torch.flatten(x, 1)``, ``x.view(n, -1)``):
  each producer channel then feeds ``consumer_repeat`` = (positions) consecutive inputs of
  the consumer Linear.

Anything else disqualifies the producer and the reason is kept (:class:`PruneAnalysis`):
a residual add or a concatenation (the channels are shared with another tensor), a reshape
beyond flatten, several users, the model's output (class logits are never pruned), a grouped
conv consumer (its inputs cannot be dropped one by one). A model ``torch.fx`` cannot trace
(data-dependent control flow) gets no prune groups and the trace error is reported.

:func:`prepare_model` attaches the groups to the model instance as a ``prune_groups``
callable (what :func:`lowbit.models.graph.prune_groups_of` reads, so
:func:`lowbit.models.compression.compress`
and :func:`lowbit.models.to_workload` use them) and ``input_shape`` from the example input.

Example:
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(288, 10))
    >>> derive_prune_groups(net, torch.zeros(1, 1, 8, 8))
    (PruneGroup(producer='0', consumers=('3',), followers=(), consumer_repeat=36),)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F

from lowbit.models.graph import COMPUTE_LAYERS, PruneGroup

__all__ = [
    "PruneAnalysis",
    "DerivedPruneGroups",
    "analyse_prune_groups",
    "derive_prune_groups",
    "prepare_model",
]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU,
    nn.Hardswish, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
)  # fmt: skip
_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.gelu, F.silu, F.leaky_relu, F.elu, F.hardswish, F.dropout,
    torch.relu, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
}  # fmt: skip
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
}  # fmt: skip
_ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
_RESHAPES = {"view", "reshape", "flatten"}
_SHAPE_QUERIES = {"size", "dim"}


@dataclass(frozen=True, slots=True)
class PruneAnalysis:
    """What tracing found.

    Attributes:
        groups: the prune groups (producer → its one consumer).
        rejected: ``(layer, reason)`` for every Conv/Linear that is not a producer.
        trace_error: why ``torch.fx`` could not trace the model (then ``groups`` is empty).
    """

    groups: tuple[PruneGroup, ...]
    rejected: tuple[tuple[str, str], ...] = ()
    trace_error: str | None = None


@dataclass(frozen=True, slots=True)
class DerivedPruneGroups:
    """A model's ``prune_groups`` attribute: a picklable, deep-copyable callable returning
    the traced groups (an instance attribute survives ``copy.deepcopy`` in ``compress``)."""

    groups: tuple[PruneGroup, ...]

    def __call__(self) -> tuple[PruneGroup, ...]:
        return self.groups


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _data_users(node: fx.Node) -> list[fx.Node]:
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


def _is_tensor(node: fx.Node) -> bool:
    return "tensor_meta" in node.meta


def _only_tensor_input(user: fx.Node, cur: fx.Node) -> bool:
    """``cur`` is the user's first argument and its only tensor input (other inputs may be
    shape values such as ``x.size(0)``)."""
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


class _Walker:
    """Follows one producer's output to its consumer (see the module docstring)."""

    def __init__(self, model: nn.Module, calls: dict[str, int]) -> None:
        self.model = model
        self.calls = calls

    def module(self, node: fx.Node) -> nn.Module:
        return self.model.get_submodule(node.target)

    def walk(self, node: fx.Node) -> PruneGroup | str:
        """The producer's group, or the reason it is not one."""
        name = node.target
        producer = self.module(node)
        shape = _shape(node)
        if shape is None:
            return "no shape information from the example input"
        axis = 1 if isinstance(producer, (nn.Conv1d, nn.Conv2d)) else len(shape) - 1
        channels = producer.weight.shape[0]
        if shape[axis] != channels:
            return f"output channel axis has {shape[axis]} entries, not {channels}"
        cur, repeat, followers = node, 1, []
        while True:
            users = _data_users(cur)
            if len(users) != 1:
                where = "" if cur is node else f" (after {cur.name})"
                return f"its output{where} is used by {len(users)} operations, not exactly one"
            user = users[0]
            if user.op == "output":
                return "its output is a model output"
            before = _shape(cur)
            if user.op == "call_module":
                module = self.module(user)
                if isinstance(module, COMPUTE_LAYERS):
                    return self._consumer(name, cur, user, module, axis, repeat, followers)
                if self.calls.get(user.target, 0) > 1:
                    return f"it flows into {user.target!r}, which is called more than once"
                if isinstance(module, _NORMS):
                    if axis != 1 or repeat != 1 or module.num_features != channels:
                        return f"BatchNorm {user.target!r} does not normalise its channels"
                    followers.append(user.target)
                elif isinstance(module, _POOL_MODULES):
                    if axis != 1 or repeat != 1:
                        return f"pooling {user.target!r} is not over the channel's positions"
                elif isinstance(module, nn.Flatten):
                    step = _flatten_repeat(before, _shape(user) or ())
                    if step is None or axis != 1:
                        return f"{user.target!r} is not a channel-major flatten"
                    repeat *= step
                elif not isinstance(module, _ELEMENTWISE_MODULES):
                    return f"it flows into {type(module).__name__} {user.target!r}"
            elif user.op in ("call_function", "call_method"):
                target = user.target
                label = target if isinstance(target, str) else getattr(target, "__name__", target)
                if not _only_tensor_input(user, cur):
                    return f"it is combined with another tensor in {label!r} (residual/concat)"
                if target in _POOL_FUNCTIONS:
                    if axis != 1 or repeat != 1:
                        return f"pooling {label!r} is not over the channel's positions"
                elif target in _RESHAPES or target in (torch.flatten, torch.reshape):
                    after = _shape(user) or ()
                    if after != before:
                        step = _flatten_repeat(before, after)
                        if step is None or axis != 1:
                            return f"{label!r} reshapes beyond a channel-major flatten"
                        repeat *= step
                elif target not in _ELEMENTWISE_FUNCTIONS and target not in _ELEMENTWISE_METHODS:
                    return f"it flows into {label!r}"
            else:
                return f"it flows into a {user.op} node"
            cur = user

    def _consumer(self, name, cur, user, module, axis, repeat, followers) -> PruneGroup | str:
        consumer = user.target
        if self.calls.get(consumer, 0) > 1:
            return f"its consumer {consumer!r} is called more than once"
        if not _only_tensor_input(user, cur):
            return f"its consumer {consumer!r} takes other tensors too"
        if isinstance(module, nn.Linear):
            if axis != len(_shape(cur) or ()) - 1:
                return f"its channels are not the features of Linear {consumer!r}"
        elif module.groups != 1:
            return f"its consumer {consumer!r} is a grouped convolution"
        elif axis != 1 or repeat != 1:
            return f"its channels are not the input channels of {consumer!r}"
        return PruneGroup(
            producer=name,
            consumers=(consumer,),
            followers=tuple(followers),
            consumer_repeat=repeat,
        )


def analyse_prune_groups(model: nn.Module, example_input: torch.Tensor) -> PruneAnalysis:
    """Trace ``model`` on ``example_input`` (a batch) and find its prune groups.

    The model runs once in eval mode without gradients; its mode is restored.
    """
    from torch.fx.passes.shape_prop import ShapeProp

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    was_training = model.training
    try:
        model.eval()
        graph_module = fx.symbolic_trace(model)
        with torch.no_grad():
            ShapeProp(graph_module).propagate(example_input)
    except Exception as exc:  # noqa: BLE001 - any tracing failure just disables pruning
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return PruneAnalysis(groups=(), trace_error=reason)
    finally:
        model.train(was_training)
    nodes = [n for n in graph_module.graph.nodes if n.op == "call_module"]
    calls: dict[str, int] = {}
    for node in nodes:
        calls[node.target] = calls.get(node.target, 0) + 1
    walker = _Walker(model, calls)
    groups, rejected, seen = [], [], set()
    for node in nodes:
        module = model.get_submodule(node.target)
        if not isinstance(module, COMPUTE_LAYERS) or node.target in seen:
            continue
        seen.add(node.target)
        if calls[node.target] > 1:
            rejected.append((node.target, "it is called more than once"))
            continue
        if getattr(module, "groups", 1) != 1:
            rejected.append((node.target, "it is a grouped convolution"))
            continue
        found = walker.walk(node)
        if isinstance(found, PruneGroup):
            groups.append(found)
        else:
            rejected.append((node.target, found))
    return PruneAnalysis(groups=tuple(groups), rejected=tuple(rejected))


def derive_prune_groups(model: nn.Module, example_input: torch.Tensor) -> tuple[PruneGroup, ...]:
    """The prune groups of ``model`` found by tracing it on ``example_input`` (a batch).

    See the module docstring for the rules; :func:`analyse_prune_groups` also says why the
    other layers are not producers.
    """
    return analyse_prune_groups(model, example_input).groups


def prepare_model(model: nn.Module, example_input: torch.Tensor) -> PruneAnalysis:
    """Make a user's module usable by ``compress`` / ``to_workload`` (in place).

    Sets ``model.input_shape`` (one sample: ``example_input.shape[1:]``) and, unless the model
    already declares ``prune_groups``, the traced groups as a ``prune_groups`` callable.

    Raises:
        ValueError: the model declares an ``input_shape`` other than the example input's.
    """
    analysis = analyse_prune_groups(model, example_input)
    shape = tuple(int(d) for d in example_input.shape[1:])
    declared = getattr(model, "input_shape", None)
    if declared is not None and tuple(declared) != shape:
        raise ValueError(
            f"model.input_shape is {tuple(declared)} but example_input has sample shape {shape}"
        )
    model.input_shape = shape
    declared_groups = getattr(model, "prune_groups", None)
    if callable(declared_groups) and not isinstance(declared_groups, DerivedPruneGroups):
        return PruneAnalysis(
            groups=tuple(model.prune_groups()), rejected=(), trace_error=analysis.trace_error
        )
    model.prune_groups = DerivedPruneGroups(analysis.groups)
    return analysis
