"""Prune groups of any ``nn.Module``, derived by tracing it with ``torch.fx``.

Zoo models declare their :class:`~lowbit.models.graph.PruneGroup` s by hand; a user's network
gets them from :func:`derive_prune_groups`, which symbolically traces the module
(``torch.fx.symbolic_trace``), runs the example input through the graph for shapes
(``ShapeProp``) and follows each Conv1d / Conv2d / Linear (ungrouped, called once) output
through the operations that keep its channels apart (:mod:`lowbit.models._trace_streams`):

- BatchNorm1d/2d over the channel axis and per-channel (depthwise, groups = input = output
  channels) convolutions: sliced with the producer, its *followers*;
- element-wise activations (ReLU, ReLU6, Hardtanh, GELU, SiLU, sigmoid, tanh, LeakyReLU, ELU,
  Hardswish, Hardsigmoid, Mish, clamp), arithmetic with a number, dropout, identity,
  ``contiguous``;
- pooling over the positions (max/avg, adaptive; ``x.mean((2, 3))``), which keeps channels
  apart;
- a channel-major flatten (``nn.Flatten()``, ``torch.flatten(x, 1)``, ``x.view(n, -1)``,
  ``x.squeeze()`` of pooled positions):
  each channel then feeds ``consumer_repeat`` = (positions) consecutive inputs of the
  consumer Linear;
- a residual add (``a + b``, ``torch.add``, :class:`lowbit.models.zoo.Add`) of tensors of the
  same shape: the other operands share the channels, and a Conv/Linear that computed one
  (through per-channel operations) is a *coupled* producer of the same stream.

Every ungrouped Conv/Linear reading the stream is a *consumer* (a downsample shortcut, the
next block's first conv, the classifier after pooling). One stream gives one group: its
first producer in execution order is the group's ``producer`` (its plan entry sets the keep
ratio) -- except the model's first layer (the stem, which ``pin_first_last`` pins) when the
stream has another producer -- and the others are ``coupled``; ``coupled``, ``consumers`` and
``followers`` are listed in execution order. Anything else disqualifies the whole stream
and the reason is kept for each of its layers (:class:`PruneAnalysis`): a concatenation, a
product with another tensor, a reshape beyond flatten, the model input added to it, the
model's output (class logits are never pruned), a grouped (not per-channel) convolution
reading it, a BatchNorm or consumer called more than once. A model ``torch.fx`` cannot
trace (data-dependent control flow) gets no prune groups and the trace error is reported.

:func:`prepare_model` attaches the groups to the model instance as a ``prune_groups``
callable (what :func:`lowbit.models.graph.prune_groups_of` reads, so
:func:`lowbit.models.compression.compress` and :func:`lowbit.models.to_workload` use them) and
``input_shape`` from the example input.

Example:
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(288, 10))
    >>> derive_prune_groups(net, torch.zeros(1, 1, 8, 8))
    (PruneGroup(producer='0', consumers=('3',), followers=(), consumer_repeat=36, coupled=()),)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from lowbit.models._trace_streams import StreamWalker
from lowbit.models.graph import COMPUTE_LAYERS, PruneGroup, is_depthwise

__all__ = [
    "PruneAnalysis",
    "DerivedPruneGroups",
    "analyse_prune_groups",
    "derive_prune_groups",
    "prepare_model",
]


@dataclass(frozen=True, slots=True)
class PruneAnalysis:
    """What tracing found.

    Attributes:
        groups: the prune groups, one per stream, in the execution order of each stream's
            first producer.
        rejected: ``(layer, reason)`` for every Conv/Linear whose output channels cannot be
            pruned (neither a group's producer, coupled producer nor depthwise follower).
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


def _traced(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule | str:
    """The traced graph with shapes, or why tracing failed. The model runs once in eval mode
    without gradients; its mode is restored."""
    from torch.fx.passes.shape_prop import ShapeProp

    was_training = model.training
    try:
        model.eval()
        graph_module = fx.symbolic_trace(model)
        with torch.no_grad():
            ShapeProp(graph_module).propagate(example_input)
    except Exception as exc:  # noqa: BLE001 - any tracing failure just disables pruning
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    finally:
        model.train(was_training)
    return graph_module


def analyse_prune_groups(model: nn.Module, example_input: torch.Tensor) -> PruneAnalysis:
    """Trace ``model`` on ``example_input`` (a batch) and find its prune groups.

    The model runs once in eval mode without gradients; its mode is restored.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    graph_module = _traced(model, example_input)
    if isinstance(graph_module, str):
        return PruneAnalysis(groups=(), trace_error=graph_module)
    nodes = [n for n in graph_module.graph.nodes if n.op == "call_module"]
    order = {node: i for i, node in enumerate(graph_module.graph.nodes)}
    calls: dict[str, int] = {}
    for node in nodes:
        calls[node.target] = calls.get(node.target, 0) + 1
    walker = StreamWalker(model, calls)
    layers = [n for n in nodes if isinstance(walker.module(n), COMPUTE_LAYERS)]
    stem = layers[0].target if layers else None  # pinned by pin_first_last: not a stream's key
    groups: list[PruneGroup] = []
    reasons: dict[str, str] = {}  # layer -> why its channels cannot be pruned
    pruned: set[str] = set()  # producers, coupled producers and followers of a group
    for node in nodes:
        module = model.get_submodule(node.target)
        done = node.target in reasons or node.target in pruned
        if done or not isinstance(module, COMPUTE_LAYERS):
            continue
        if calls[node.target] > 1:
            reasons[node.target] = "it is called more than once"
        elif is_depthwise(module):
            continue  # a follower of the stream it reads, decided with that stream
        elif getattr(module, "groups", 1) != 1:
            reasons[node.target] = "it is a grouped convolution"
        else:
            stream = walker.stream(node)
            members = [n.target for n in (*stream.producers, *stream.followers)]
            if stream.problem is not None:
                reasons.update((name, stream.problem) for name in members if name not in pruned)
                continue
            pruned.update(members)
            producers = sorted(stream.producers, key=order.__getitem__)
            first = next((n for n in producers if n.target != stem), producers[0])
            coupled = [n for n in producers if n is not first]
            consumers = sorted(stream.consumers, key=order.__getitem__)
            groups.append(
                PruneGroup(
                    producer=first.target,
                    consumers=tuple(n.target for n in consumers),
                    followers=tuple(
                        n.target for n in sorted(stream.followers, key=order.__getitem__)
                    ),
                    consumer_repeat=stream.consumers[consumers[0]],
                    coupled=tuple(n.target for n in coupled),
                )
            )
    rejected = tuple(
        (name, reasons.get(name, "its input channels come from no prunable Conv/Linear"))
        for name in dict.fromkeys(n.target for n in layers)
        if name not in pruned
    )
    return PruneAnalysis(groups=tuple(groups), rejected=rejected)


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
