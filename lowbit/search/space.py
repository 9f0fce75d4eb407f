"""The per-layer search space, derived from a model's layers and a hardware profile.

For every compute layer (Conv/Linear) and attention product (MatMulSite) the space holds the
choices worth trying **on that target**:

* ``w_bits`` / ``a_bits``: the bit-widths of the target's native precision modes (2-8 bits),
  plus, when weights are stored packed (``profile.weight_storage == "packed"``) or by a weight
  encoder (``"compressed"``, as Ethos-U's), the weight widths 2/4/8: on an INT8-only target
  lower weight bits still cut weight traffic though compute promotes them to INT8 (whole
  codes per byte, or fewer encoded bits per weight); activations there stay at 8. Bits the
  target would only promote to a wider mode (W3 on BitFusion runs as W4) cost the same as the
  wider mode and lose accuracy, so they are not offered. 8/8 is always offered (the reference).
* ``keep``: structured keep ratio of the output channels, 0.25-1.0 in steps of 1/8, only for
  prune-group producers (ratios giving the same kept channel count are merged). A residual
  stream's coupled producers have none: the group's producer's keep prunes them too (and
  with ``pin_first_last``, a group with a pinned member is not pruned at all).
* ``nm``: ``"dense"`` or one of ``profile.sparsity.nm_patterns`` (``"2:4"``), only where the
  target has N:M support and the layer's reduction length is a multiple of M.
* ``rank_fraction``: 1.0 (full) or a fraction of the full rank, for Linear and ungrouped conv
  layers where that rank ``r`` really reduces MACs: ``r·(N + K) < N·K`` for an N×K weight.

With ``pin_first_last`` the first and last Conv/Linear are left out (the plan pins them at
W8A8, dense). :func:`build_space` returns a :class:`~lowbit.search.space_params.SearchSpace`
(Optuna parameters, plans, JSON; re-exported here with its records).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lowbit.hwsim.compression import Compression, kept_channels
from lowbit.hwsim.profile import HardwareProfile, UnsupportedPrecision

from .codesign import HARDWARE_KEY, CoDesign
from .space_params import DENSE, SETTINGS, SPACE_VERSION, LayerChoices, SearchSpace

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "SPACE_VERSION",
    "KEEP_CHOICES",
    "RANK_CHOICES",
    "SETTINGS",
    "LayerInfo",
    "LayerChoices",
    "SearchSpace",
    "target_bits",
    "describe_model",
    "build_space",
    "HARDWARE_KEY",
]

KEEP_CHOICES = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
RANK_CHOICES = (0.25, 0.5, 0.75, 1.0)
_PACKABLE_W_BITS = (2, 4, 8)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """What the space needs to know about one layer of the model.

    Attributes:
        name: module name (``model.named_modules()``).
        kind: "conv", "linear" or "matmul" (activation × activation product).
        out_channels: output channels / features N (0 for a matmul).
        reduction: reduction length K of one output (in·k·k per group; 0 for a matmul).
        full_rank: min(N, K) if the layer can be factorised by SVD, else 0.
        producer: the layer's output channels can be pruned (a prune-group producer).
        coupled: the other compute layers whose output channels this producer's keep ratio
            removes too (a residual stream's coupled producers, depthwise followers).
    """

    name: str
    kind: str
    out_channels: int = 0
    reduction: int = 0
    full_rank: int = 0
    producer: bool = False
    coupled: tuple[str, ...] = ()


def target_bits(profile: HardwareProfile) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(weight bits, activation bits) worth trying on ``profile`` (module docstring)."""
    native = [
        (p.w_bits, p.a_bits)
        for p in profile.compute.precisions
        if 2 <= p.w_bits <= 8 and 2 <= p.a_bits <= 8
    ]
    w_set = {w for w, _ in native} | {8}
    a_set = {a for _, a in native} | {8}
    if profile.weight_storage in ("packed", "compressed"):
        w_set |= set(_PACKABLE_W_BITS)

    def runs(w: int, a: int) -> bool:
        try:
            profile.compute.resolve(w, a)
        except UnsupportedPrecision:
            return False
        return True

    if not runs(8, 8):
        raise ValueError(f"profile {profile.name!r} cannot run W8A8: no integer search space")
    w_ok = tuple(sorted(w for w in w_set if all(runs(w, a) for a in a_set)))
    a_ok = tuple(sorted(a for a in a_set if all(runs(w, a) for w in w_ok)))
    return w_ok, a_ok


def describe_model(model: nn.Module) -> tuple[LayerInfo, ...]:
    """The :class:`LayerInfo` of every compute layer and MatMulSite, in module order."""
    from torch import nn as tnn

    from lowbit.models.compression.plan import compute_layers, full_rank, rank_eligible
    from lowbit.models.graph import MatMulSite, prune_groups_of

    layers = compute_layers(model)
    coupled = {
        g.producer: tuple(n for n in (*g.coupled, *g.followers) if n in layers)
        for g in prune_groups_of(model)
    }
    out = []
    for name, module in layers.items():
        if isinstance(module, MatMulSite):
            out.append(LayerInfo(name=name, kind="matmul"))
            continue
        weight = module.weight
        out.append(
            LayerInfo(
                name=name,
                kind="linear" if isinstance(module, tnn.Linear) else "conv",
                out_channels=int(weight.shape[0]),
                reduction=int(weight[0].numel()),  # in·k·k of one group
                full_rank=full_rank(module) if rank_eligible(module) else 0,
                producer=name in coupled,
                coupled=coupled.get(name, ()),
            )
        )
    return tuple(out)


def _keep_choices(n: int, ratios: Sequence[float]) -> tuple[float, ...]:
    """Ratios with distinct kept counts (:func:`~lowbit.hwsim.compression.kept_channels`; the
    largest ratio of each)."""
    by_count: dict[int, float] = {}
    for keep in sorted(ratios):
        by_count[kept_channels(n, keep)] = keep
    return tuple(sorted(by_count.values()))


def _rank_choices(layer: LayerInfo, fractions: Sequence[float]) -> tuple[float, ...]:
    """Fractions whose rank (:meth:`~lowbit.hwsim.compression.Compression.rank_of`, the rule
    of models.plan.rank_for and hwsim) is below full and reduces MACs."""
    n, k, full = layer.out_channels, layer.reduction, layer.full_rank
    out = {1.0}
    for f in fractions:
        r = Compression(rank_fraction=f).rank_of(full) if f < 1.0 else None
        if r is not None and r * (n + k) < n * k:
            out.add(float(f))
    return tuple(sorted(out))


def build_space(
    layers: Sequence[LayerInfo],
    profile: HardwareProfile,
    *,
    model: str,
    pin_first_last: bool = False,
    keep_choices: Sequence[float] = KEEP_CHOICES,
    rank_choices: Sequence[float] = RANK_CHOICES,
    codesign: CoDesign | None = None,
) -> SearchSpace:
    """The space of ``layers`` (from :func:`describe_model`) on ``profile``; with
    ``codesign`` (:func:`lowbit.search.codesign.build_codesign`) also the profile's tunables."""
    w_bits, a_bits = target_bits(profile)
    weighted = [layer.name for layer in layers if layer.kind != "matmul"]
    pinned = (weighted[0], weighted[-1]) if pin_first_last and weighted else ()
    nm_patterns = tuple(tuple(p) for p in profile.sparsity.nm_patterns)
    choices = []
    for layer in layers:
        if layer.name in pinned:
            continue
        if layer.kind == "matmul":
            choices.append(LayerChoices(name=layer.name, kind="matmul", w_bits=(), a_bits=a_bits))
            continue
        # a group with a pinned member keeps its channels (CompressionPlan.effective)
        prunable = layer.producer and not set(layer.coupled) & set(pinned)
        nm = (DENSE,) + tuple(
            f"{n}:{m}" for n, m in nm_patterns if layer.reduction and layer.reduction % m == 0
        )
        choices.append(
            LayerChoices(
                name=layer.name,
                kind=layer.kind,
                w_bits=w_bits,
                a_bits=a_bits,
                keep=_keep_choices(layer.out_channels, keep_choices) if prunable else (1.0,),
                nm=nm,
                rank_fraction=_rank_choices(layer, rank_choices),
            )
        )
    return SearchSpace(
        model=model,
        hardware=profile.name,
        hardware_hash=profile.content_hash(),
        pin_first_last=pin_first_last,
        pinned=tuple(pinned),
        w_bits=w_bits,
        a_bits=a_bits,
        layers=tuple(choices),
        codesign=codesign,
    )
