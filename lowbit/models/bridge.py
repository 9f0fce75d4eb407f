"""The simulator bridge: a zoo model plus a compression plan as an ``hwsim.Workload``.

:func:`to_workload` runs the UNCOMPRESSED model once on zeros of ``(batch, *input_shape)``
with forward hooks and emits one hwsim layer per module call, in execution order:

- ``nn.Conv2d`` → ``Conv2d``; ``nn.Conv1d`` → ``Conv2d`` with ``in_h = k_h = out_h = 1``;
- ``nn.Linear`` → ``Linear`` with ``tokens`` = every row of its input (batch × sequence);
- :class:`~lowbit.models.graph.MatMulSite` → ``MatMul`` (``M``, ``K`` from operand a, ``N`` from the
  output, ``heads`` = the output's leading dims incl. batch);
- pooling → ``Pool``; LayerNorm, Softmax, GELU, :class:`~lowbit.models.zoo.Add` (2 inputs) and
  :class:`~lowbit.models.zoo.TokenEmbedding` (class token + positions, 2 inputs) → ``Elementwise``.
  BatchNorm and ReLU are left out: deployment folds BN into the conv and fuses ReLU into
  its output stage, the convention of ``hwsim.workloads``.

Shapes are the dense originals; each compute layer carries the knobs of its spec in
``plan.effective(model)`` (``LayerSpec.knobs()``: the shared ``hwsim.Compression``), so hwsim
derives the effective GEMMs itself. The graph sets what a plan cannot: ``keep =
kept_channels(n, keep) / n`` of a group's producer and its coupled producers (a residual
stream), ``in_keep`` of every consumer of a pruned group (from ``prune_groups()``), both of
a depthwise follower (hwsim keeps that many of its groups); the rank is the integer
``rank`` (``models.plan.rank_for``, the rule the low-rank transform uses). Memory-only
layers fed by a pruned producer (through shape-preserving layers and pooling; a residual
:class:`~lowbit.models.zoo.Add` after the last producer of its stream) count its kept
channels only, at the ``a_bits`` of the layer that wrote the tensor (hwsim stores outputs
at a layer's a_bits); a residual Add or global average pool that runs on integer kernels
under the plan (``QuantAdd``/``QuantGlobalAvgPool``) at its own bits. Without a plan every
layer has hwsim's default compression (dense W8A8), like the built-in workloads.
With ``round_trip`` (a target whose runtime, like ONNX Runtime, cannot keep a tensor on two
grids integer: ``overheads.two_grid_round_trip``), a layer whose output the plan quantizes
onto two grids (mixed precision at a fork: :mod:`lowbit.models.compression._grid_split`)
costs the float round trip the runtime runs for it (:mod:`lowbit.models._round_trip`), as
hwsim's importer of the exported graph finds.

Example:
    >>> from lowbit.models.zoo import build
    >>> to_workload(build("digits-mlp")).macs          # 64·128 + 128·64 + 64·10
    17024
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache, partial

import torch
from torch import nn

from lowbit.hwsim.errors import WorkloadError
from lowbit.hwsim.workload import (
    Compression,
    Conv2d,
    Elementwise,
    Layer,
    Linear,
    MatMul,
    Pool,
    Workload,
)
from lowbit.models._round_trip import (
    add_round_trip,
    conv_round_trip,
    input_border,
    weight_elements,
)
from lowbit.models.compression._dataflow import quant_sites
from lowbit.models.compression._grid_split import split_outputs
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.compression.prune import kept_channels
from lowbit.models.graph import (
    COMPUTE_LAYERS,
    POOL_LAYERS,
    MatMulSite,
    PruneGroup,
    is_depthwise,
    prune_groups_of,
)
from lowbit.models.zoo import ZOO, Add, TokenEmbedding, build

__all__ = ["compressions", "register_zoo_workloads", "to_workload"]

#: memory-only module type -> number of input tensors it reads
_ELEMENTWISE: dict[type, int] = {
    nn.LayerNorm: 1,
    nn.Softmax: 1,
    nn.GELU: 1,
    Add: 2,
    TokenEmbedding: 2,
}
#: memory-only module type -> hwsim kind (hwsim.workload.ELEMENTWISE_KINDS), for the
#: profile's per-element cost
_KINDS: dict[type, str] = {
    nn.LayerNorm: "layernorm",
    nn.Softmax: "softmax",
    nn.GELU: "gelu",
    Add: "add",
    TokenEmbedding: "embedding",
    nn.MaxPool1d: "maxpool",
    nn.MaxPool2d: "maxpool",
    nn.AdaptiveMaxPool1d: "maxpool",
    nn.AdaptiveMaxPool2d: "maxpool",
    nn.AvgPool1d: "avgpool",
    nn.AvgPool2d: "avgpool",
    nn.AdaptiveAvgPool1d: "avgpool",
    nn.AdaptiveAvgPool2d: "avgpool",
}


@dataclass(frozen=True, slots=True)
class _Call:
    """One traced module call: its name, the module and the tensor shapes it saw."""

    name: str
    module: nn.Module
    inputs: tuple[tuple[int, ...], ...]
    output: tuple[int, ...]


def _trace(model: nn.Module, batch: int) -> list[_Call]:
    """Module calls of one forward pass on zeros, in execution order (hooks fire on exit)."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise WorkloadError(
            f"{type(model).__name__} has no `input_shape`: cannot trace it into a workload"
        )
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    watched = (*COMPUTE_LAYERS, MatMulSite, *POOL_LAYERS, *_ELEMENTWISE)
    calls: list[_Call] = []
    seen: dict[str, int] = {}

    def hook(name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}#{seen[name]}"  # a module called again
        inputs = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        calls.append(_Call(label, module, inputs, tuple(output.shape)))

    handles = [
        module.register_forward_hook(partial(hook, name))
        for name, module in model.named_modules()
        if name and isinstance(module, watched)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(batch, *shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return calls


def _channel_keeps(
    groups: tuple[PruneGroup, ...], specs: dict[str, LayerSpec], modules: dict[str, nn.Module]
) -> tuple[dict[str, tuple[int, int]], dict[str, list[int]]]:
    """(layer -> (kept, all) output channels for every producer, coupled producer and
    depthwise follower of a group; consumer -> [kept, all] inputs, summed over groups)."""
    out: dict[str, tuple[int, int]] = {}
    consumed: dict[str, list[int]] = {}
    for group in groups:
        n = modules[group.producer].weight.shape[0]
        spec = specs.get(group.producer)
        kept = kept_channels(n, spec.keep) if spec is not None else n
        for name in (*group.producers, *group.followers):
            if isinstance(modules[name], COMPUTE_LAYERS):
                out[name] = (kept, n)
        for consumer in group.consumers:
            totals = consumed.setdefault(consumer, [0, 0])
            totals[0] += kept * group.consumer_repeat
            totals[1] += n * group.consumer_repeat
    return out, consumed


def compressions(model: nn.Module, plan: CompressionPlan) -> dict[str, Compression]:
    """The ``hwsim.Compression`` of every compute layer and MatMulSite under ``plan``.

    ``in_keep`` of a consumer is the kept fraction of its producers' channels (several
    producers feeding one consumer count together, weighted by ``consumer_repeat``); coupled
    producers keep their group's fraction; a depthwise follower keeps it on both sides.
    """
    specs: dict[str, LayerSpec] = plan.effective(model)
    modules = dict(model.named_modules())
    kept, consumed = _channel_keeps(prune_groups_of(model), specs, modules)
    out: dict[str, Compression] = {}
    for name, spec in specs.items():
        if isinstance(modules[name], MatMulSite):  # effective() gave it Compression.for_matmul
            out[name] = spec.knobs()
            continue
        kept_out, all_out = kept.get(name, (1, 1))
        kept_in, all_in = consumed.get(name, (1, 1))
        if is_depthwise(modules[name]):  # a per-channel conv: its inputs are its outputs
            kept_in, all_in = kept_out, all_out
        out[name] = spec.knobs(keep=kept_out / all_out, in_keep=kept_in / all_in)
    return out


def _unpadded(groups: tuple[PruneGroup, ...], modules: dict[str, nn.Module]):
    """(convs whose output channels lowbit's export does not pad, convs whose inputs it does
    not pad): the producers of a residual stream and of a tensor a grouped or depthwise conv
    reads, and their consumers (``models.export._onnx_pad``'s rule)."""
    no_out: set[str] = set()
    no_in: set[str] = set()
    for group in groups:
        readers = (*group.followers, *group.consumers)
        grouped = any(getattr(modules[r], "groups", 1) > 1 for r in readers)
        if len(group.producers) > 1 or grouped:
            no_out.update(group.producers)
            no_in.update(group.consumers)
    return no_out, no_in


def _conv(call: _Call, compression: Compression) -> Conv2d:
    conv = call.module
    (n, in_c, *in_size), (_, out_c, *out_size) = call.inputs[0], call.output
    kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)
    if isinstance(conv, nn.Conv1d):  # a 1-D conv is a 2-D conv of height 1
        in_size, out_size, kernel, stride = [1, *in_size], [1, *out_size], (1, *kernel), stride * 2
    if stride[0] != stride[1]:
        raise WorkloadError(f"layer {call.name!r}: hwsim needs a square stride, got {stride}")
    return Conv2d(
        name=call.name,
        compression=compression,
        in_h=in_size[0],
        in_w=in_size[1],
        in_c=in_c,
        out_c=out_c,
        k_h=kernel[0],
        k_w=kernel[1],
        stride=stride[0],
        out_h=out_size[0],
        out_w=out_size[1],
        groups=conv.groups,
        batch=n,
    )


def _kind(module: nn.Module) -> str:
    """The hwsim kind of a memory-only module ("" for one :data:`_KINDS` does not name)."""
    return next((kind for t, kind in _KINDS.items() if isinstance(module, t)), "")


def _layer(call: _Call, compression: Compression | None, scale: tuple[int, int]) -> Layer:
    """The hwsim layer of one call; ``scale`` = (kept, all) channels of the feeding producer.

    ``compression`` None means hwsim's default (compute layers without a plan)."""
    module = call.module
    if isinstance(module, COMPUTE_LAYERS):
        compression = compression or Compression()
        if isinstance(module, nn.Linear):
            return Linear(
                name=call.name,
                compression=compression,
                in_features=module.in_features,
                out_features=module.out_features,
                tokens=math.prod(call.inputs[0][:-1]),
            )
        return _conv(call, compression)
    if isinstance(module, MatMulSite):
        *_, m, k = call.inputs[0]
        return MatMul(
            name=call.name,
            compression=compression or Compression(),
            M=m,
            N=call.output[-1],
            K=k,
            heads=math.prod(call.output[:-2]),
        )
    kept, total = scale
    out_elements = math.prod(call.output) * kept // total
    if isinstance(module, POOL_LAYERS):
        in_elements = math.prod(call.inputs[0]) * kept // total
        # (N, C, spatial...): the channels that survive pruning, when the scale is theirs
        c = call.inputs[0][1] if len(call.inputs[0]) >= 3 else 0
        channels = c if total == 1 else (kept if total == c else 0)
        return Pool(
            name=call.name,
            compression=compression or Compression(),
            in_elements=in_elements,
            out_elements=out_elements,
            kind=_kind(module),
            channels=channels if channels and in_elements % channels == 0 else 0,
        )
    return Elementwise(
        name=call.name,
        compression=compression or Compression(),
        elements=out_elements,
        inputs=_ELEMENTWISE[type(module)],
        kind=_kind(module),
        rows=_rows(module, call.output, out_elements),
    )


def _rows(module: nn.Module, shape: tuple[int, ...], elements: int) -> int:
    """The rows a LayerNorm (over its normalized shape) or a softmax (over its ``dim``)
    normalizes one at a time, from the unpruned ``shape``: pruning narrows the normalized
    axis (a LayerNorm follows its producer's pruned channels), not the rows; 0 for other
    modules, at most ``elements`` (the possibly pruned layer's)."""
    if isinstance(module, nn.LayerNorm):
        row = math.prod(module.normalized_shape)
    elif isinstance(module, nn.Softmax) and module.dim is not None and shape:
        row = shape[module.dim] if -len(shape) <= module.dim < len(shape) else 0
    else:
        return 0
    whole = math.prod(shape)
    return min(whole // row, elements) if row and whole % row == 0 else 0


def _site_compressions(model: nn.Module, plan: CompressionPlan | None) -> dict[str, Compression]:
    """Residual adds and global pools that run on integer kernels under ``plan`` (as
    ``compress`` finds them, :func:`lowbit.models.compression._dataflow.quant_sites`) read
    and write their tensors at their own bits."""
    if plan is None:
        return {}
    sites = quant_sites(model, plan.effective(model))
    return {name: Compression(w_bits=s.a_bits, a_bits=s.a_bits) for name, s in sites.items()}


def to_workload(
    model: nn.Module,
    plan: CompressionPlan | None = None,
    *,
    name: str | None = None,
    batch: int = 1,
    round_trip: bool = False,
) -> Workload:
    """The hwsim workload of ``model`` (uncompressed base model) compressed by ``plan``.

    Args:
        model: a zoo model (needs ``input_shape``); it is not modified.
        plan: compression plan (checked against the model); None = hwsim defaults (W8A8).
        name: workload name; defaults to the zoo name or the class name.
        batch: samples per inference (scales M of every GEMM and every element count).
        round_trip: the target runs lowbit's ONNX Runtime deployment (its
            ``overheads.two_grid_round_trip``): charge the float round trip of a tensor on
            two grids, and the quantizer (and layout change) of the float input.

    Raises:
        PlanError: the plan does not fit the model.
        WorkloadError: the model cannot be traced into hwsim layers.
    """
    calls = _trace(model, batch)
    by_name = compressions(model, plan) if plan is not None else {}
    by_name.update(_site_compressions(model, plan))
    modules = dict(model.named_modules())
    # layers whose output channels a group prunes: producers, coupled producers, depthwise
    producers = {
        name
        for group in prune_groups_of(model)
        for name in (*group.producers, *group.followers)
        if isinstance(modules[name], COMPUTE_LAYERS)
    }
    unpadded_out, unpadded_in = _unpadded(prune_groups_of(model), modules)
    # layers whose output is quantized onto two grids run a float round trip once deployed
    splits = split_outputs(model, plan.effective(model)) if round_trip and plan else {}
    layers: list[Layer] = []
    # channels of the last compute layer's output that survive pruning, followed through
    # memory-only layers of the same size (BN/ReLU/GELU) and pooling
    flow_elements, scale = -1, (1, 1)
    # memory-only layers move tensors at the a_bits of the compute layer that wrote them
    # (hwsim stores a layer's output at its a_bits)
    stored = Compression()
    for call in calls:
        compression = by_name.get(call.name)
        module = call.module
        if isinstance(module, (*COMPUTE_LAYERS, MatMulSite)):
            layer = _layer(call, compression, (1, 1))
            if isinstance(layer, Conv2d):  # as lowbit's export pads channels (_onnx_pad)
                layer = replace(
                    layer,
                    pad_out=call.name not in unpadded_out,
                    pad_in=call.name not in unpadded_in,
                )
            scale = (1, 1)
            if call.name in producers and compression is not None:
                n = modules[call.name].weight.shape[0]
                scale = (round(compression.keep * n), n)
            split = splits.get(call.name)
            if split is not None and split.kind == "conv" and compression is not None:
                first = not any(isinstance(x, (Conv2d, Linear, MatMul)) for x in layers)
                layers += conv_round_trip(
                    layer,
                    split,
                    in_elements=math.ceil(math.prod(call.inputs[0]) * compression.in_keep),
                    out_elements=math.prod(call.output) * scale[0] // scale[1],
                    weights=weight_elements(module, compression),
                    first=first,
                )
            else:
                layers.append(layer)
            flow_elements = math.prod(call.output)
            bits = layer.compression.a_bits  # the writer's (not its round trip's quantize)
            stored = Compression(w_bits=bits, a_bits=bits)
            continue
        if math.prod(call.inputs[0]) != flow_elements:
            scale = (1, 1)
        layers.append(_layer(call, compression or stored, scale))
        if (split := splits.get(call.name)) is not None and split.kind == "add":
            layers += add_round_trip(layers[-1], split)
        flow_elements = math.prod(call.output)
    if not layers:
        raise WorkloadError(f"{type(model).__name__}: no layers hwsim can simulate were found")
    if round_trip:
        layers = input_border(layers, input_shape=tuple(model.input_shape), batch=batch) + layers
    default = getattr(model, "zoo_name", None) or type(model).__name__.lower()
    return Workload(name or default, tuple(layers))


@cache
def _zoo_workload(name: str) -> Workload:
    """Shapes of zoo model ``name`` (untrained weights suffice), hwsim default compression."""
    return to_workload(build(name), name=name)


def register_zoo_workloads() -> list[str]:
    """Register every zoo model as an hwsim workload (idempotent); returns their names."""
    from lowbit.hwsim.workloads import register_workload

    for zoo_name in ZOO:
        register_workload(zoo_name, partial(_zoo_workload, zoo_name), replace=True)
    return list(ZOO)
