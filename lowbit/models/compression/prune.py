"""Pruning: structured channel removal (physically smaller layers) and weight masks.

Structured pruning ranks a producer's output filters by their L1 (or L2) norm, keeps the
``kept_channels(n, keep)`` largest in their original order, and rebuilds every module of the
:class:`~lowbit.models.graph.PruneGroup`: the producer loses weight/bias rows, followers (BatchNorm,
LayerNorm) lose the same entries, per-channel (depthwise) convolution followers lose the same
filters and their groups shrink with them, consumers lose the matching input columns
(``repeat`` consecutive columns per channel after a channel-major flatten). A residual stream's
coupled producers lose the same channels as the producer: the ranking is by the sum over the
stream's producers of each one's filter norms divided by their sum (so a producer with large
weights does not decide alone). The kept original indices are recorded as
``kept_out_channels`` on the new producers and depthwise followers (``kept_in_channels`` on
consumers and depthwise followers) for exporters and deployment configs.

Masks: N:M (exactly n non-zeros in every m consecutive weights along the reduction dimension,
channel-innermost for convolutions as in an NHWC implicit GEMM: order (kh, kw, C)) and
unstructured magnitude pruning to a density per layer. A mask is kept as a ``weight_mask``
buffer (1 = kept) and the weight is zeroed; quantization comes after, and zero is exact on
every grid, so pruned weights stay zero.
"""

from __future__ import annotations

import torch
from torch import nn

from lowbit.hwsim.compression import kept_channels  # the one rule, shared with hwsim
from lowbit.models.compression.lowrank import LOWRANK_LAYERS, LowRankConv, _conv_like
from lowbit.models.graph import COMPUTE_LAYERS, PruneGroup

__all__ = [
    "kept_channels",
    "filter_importance",
    "group_importance",
    "prune_group",
    "nm_mask",
    "magnitude_mask",
    "apply_mask",
]


def _dense_weight(module: nn.Module) -> torch.Tensor:
    """The (out × rest) weight matrix a module applies (product of the factors if low-rank)."""
    if isinstance(module, LOWRANK_LAYERS):
        w1 = module.first.weight.reshape(module.first.weight.shape[0], -1)
        w2 = module.second.weight.reshape(module.second.weight.shape[0], -1)
        return w2 @ w1
    return module.weight.reshape(module.weight.shape[0], -1)


@torch.no_grad()
def filter_importance(module: nn.Module, *, norm: str = "l1") -> torch.Tensor:
    """Norm of each output filter (row of the dense weight); ``norm`` is ``l1`` or ``l2``."""
    if norm not in ("l1", "l2"):
        raise ValueError(f"unknown norm {norm!r} (valid: l1, l2)")
    return torch.linalg.vector_norm(_dense_weight(module), ord=1 if norm == "l1" else 2, dim=1)


@torch.no_grad()
def group_importance(model: nn.Module, group: PruneGroup, *, norm: str = "l1") -> torch.Tensor:
    """Importance of each channel of ``group``: the producer's filter norms, or with coupled
    producers the sum of every producer's filter norms divided by their total (a producer
    whose filters are all zero adds nothing)."""
    names = group.producers
    scores = [filter_importance(model.get_submodule(name), norm=norm) for name in names]
    for name, score in zip(names[1:], scores[1:], strict=True):
        if score.shape != scores[0].shape:
            raise ValueError(
                f"coupled producer {name!r} has {score.numel()} output channels but producer "
                f"{group.producer!r} has {scores[0].numel()}: they must be equal to be added"
            )
    if len(scores) == 1:
        return scores[0]
    total = torch.zeros_like(scores[0])
    for score in scores:
        mass = score.sum()
        if mass > 0:
            total += score / mass
    return total


def _copy_public_attrs(src: nn.Module, dst: nn.Module) -> None:
    for key, value in vars(src).items():
        if not key.startswith("_") and key not in vars(dst):
            setattr(dst, key, value)


def _rebuild(module: nn.Module, *, out_idx=None, in_idx=None) -> nn.Module:
    """A new Linear/Conv with rows ``out_idx`` and input channels ``in_idx`` of ``module``."""
    weight = module.weight.detach()
    if out_idx is not None:
        weight = weight[out_idx]
    if in_idx is not None:
        weight = weight[:, in_idx]
    out_c, in_c = weight.shape[0], weight.shape[1]
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear):
        new = nn.utils.skip_init(nn.Linear, in_c, out_c, bias=has_bias)
    else:
        new = _conv_like(module, in_c, out_c, pointwise=False, bias=has_bias)
    with torch.no_grad():
        new.weight.copy_(weight)
        if has_bias:
            bias = module.bias.detach()
            new.bias.copy_(bias if out_idx is None else bias[out_idx])
    _copy_public_attrs(module, new)
    new.train(module.training)
    return new


def _compose(old: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
    """Original indices after selecting ``idx`` from a layer that was already pruned."""
    return idx.clone() if old is None else old[idx]


def _slice_out(module: nn.Module, idx: torch.Tensor, name: str) -> nn.Module:
    if getattr(module, "groups", 1) != 1:
        raise ValueError(
            f"prune group producer {name!r} is a grouped convolution: a depthwise convolution "
            "is listed as a follower of the producer before it"
        )
    if isinstance(module, LOWRANK_LAYERS):
        module.second = _rebuild(module.second, out_idx=idx)
        new = module
    elif isinstance(module, COMPUTE_LAYERS):
        new = _rebuild(module, out_idx=idx)
    else:
        raise ValueError(f"prune group producer {name!r} is a {type(module).__name__}, not a layer")
    new.kept_out_channels = _compose(getattr(module, "kept_out_channels", None), idx)
    return new


def _slice_in(module: nn.Module, idx: torch.Tensor, name: str) -> nn.Module:
    if isinstance(module, (nn.Conv1d, nn.Conv2d, LowRankConv)):
        groups = module.first.groups if isinstance(module, LowRankConv) else module.groups
        if groups != 1:
            raise ValueError(
                f"consumer {name!r} is a grouped convolution whose inputs cannot be dropped one "
                "by one (a depthwise convolution belongs in the group's followers)"
            )
    if isinstance(module, LOWRANK_LAYERS):
        module.first = _rebuild(module.first, in_idx=idx)
        new = module
    elif isinstance(module, COMPUTE_LAYERS):
        new = _rebuild(module, in_idx=idx)
    else:
        raise ValueError(f"prune group consumer {name!r} is a {type(module).__name__}, not a layer")
    new.kept_in_channels = _compose(getattr(module, "kept_in_channels", None), idx)
    return new


@torch.no_grad()
def _slice_per_channel_conv(module: nn.Module, idx: torch.Tensor, name: str) -> nn.Module:
    """A depthwise conv (groups = in = out channels) keeping only channels ``idx``."""
    n = module.in_channels
    if not (module.groups == n == module.out_channels):
        raise ValueError(
            f"prune group follower {name!r} is a convolution with groups={module.groups}, "
            f"{n} input and {module.out_channels} output channels; only per-channel "
            "(depthwise) convolutions with groups = input = output channels can follow a producer"
        )
    k = len(idx)
    new = nn.utils.skip_init(
        type(module),
        k,
        k,
        module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=k,
        bias=module.bias is not None,
        padding_mode=module.padding_mode,
    )
    new.weight.copy_(module.weight.detach()[idx])
    if module.bias is not None:
        new.bias.copy_(module.bias.detach()[idx])
    _copy_public_attrs(module, new)
    new.kept_out_channels = _compose(getattr(module, "kept_out_channels", None), idx)
    new.kept_in_channels = _compose(getattr(module, "kept_in_channels", None), idx)
    new.train(module.training)
    return new


@torch.no_grad()
def _slice_follower(module: nn.Module, idx: torch.Tensor, name: str) -> nn.Module:
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return _slice_per_channel_conv(module, idx, name)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = type(module)(
            len(idx),
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
        for key in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, key) is not None:
                getattr(new, key).copy_(getattr(module, key)[idx])
        if module.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(module.num_batches_tracked)
    elif isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        new = nn.LayerNorm(
            len(idx),
            eps=module.eps,
            elementwise_affine=module.elementwise_affine,
            bias=module.bias is not None,
        )
        for key in ("weight", "bias"):
            if getattr(module, key) is not None:
                getattr(new, key).copy_(getattr(module, key)[idx])
    else:
        raise ValueError(
            f"prune group follower {name!r} is a {type(module).__name__} "
            "(supported: BatchNorm, LayerNorm over channels, depthwise Conv1d/Conv2d)"
        )
    new.train(module.training)
    return new


def prune_group(model: nn.Module, group: PruneGroup, *, keep: float, norm: str = "l1") -> None:
    """Physically remove the least important output channels of ``group``'s producers in place.

    Keeps ``kept_channels(n, keep)`` channels by ``norm`` (:func:`group_importance`) in their
    original order, the same ones in the producer and every coupled producer, and shrinks the
    followers and consumers to match. ``keep = 1`` rebuilds the same layers (identity).
    """
    scores = group_importance(model, group, norm=norm)
    k = kept_channels(len(scores), keep)
    # stable sort: ties keep the lower index, so the choice is deterministic
    order = torch.sort(scores, descending=True, stable=True).indices[:k]
    idx = torch.sort(order).values
    for name in group.producers:
        model.set_submodule(name, _slice_out(model.get_submodule(name), idx, name))
    for name in group.followers:
        model.set_submodule(name, _slice_follower(model.get_submodule(name), idx, name))
    repeat = group.consumer_repeat
    in_idx = (idx[:, None] * repeat + torch.arange(repeat)[None, :]).reshape(-1)
    for name in group.consumers:
        model.set_submodule(name, _slice_in(model.get_submodule(name), in_idx, name))


def _reduction_view(weight: torch.Tensor) -> torch.Tensor:
    """(out × K) view with the reduction order used for N:M: (kh, kw, C) for convs."""
    if weight.dim() > 2:
        weight = weight.movedim(1, -1)  # (out, C, *k) → (out, *k, C)
    return weight.reshape(weight.shape[0], -1)


def nm_mask(weight: torch.Tensor, *, n: int, m: int) -> torch.Tensor:
    """0/1 mask keeping the n largest |w| in every m consecutive reduction weights.

    A trailing group shorter than m (K not a multiple of m) keeps min(n, its length).
    Returns a mask shaped like ``weight``.
    """
    if not 0 < n <= m:
        raise ValueError(f"N:M needs 0 < n <= m, got {n}:{m}")
    view = _reduction_view(weight.detach().abs())
    out, k = view.shape
    padded = torch.full((out, -(-k // m) * m), -1.0, dtype=view.dtype)  # -1 never beats |w|
    padded[:, :k] = view
    groups = padded.reshape(out, -1, m)
    top = torch.topk(groups, n, dim=-1).indices
    mask = torch.zeros_like(groups).scatter_(-1, top, 1.0).reshape(out, -1)[:, :k]
    if weight.dim() > 2:
        moved = weight.movedim(1, -1).shape
        return mask.reshape(moved).movedim(-1, 1).to(weight.dtype)
    return mask.reshape(weight.shape).to(weight.dtype)


def magnitude_mask(
    weight: torch.Tensor, *, density: float, within: torch.Tensor | None = None
) -> torch.Tensor:
    """0/1 mask keeping the round(density · count) largest |w| of the layer (at least one).

    ``within`` restricts the choice to an existing mask (count = its non-zeros).
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    score = weight.detach().abs().reshape(-1).clone()
    allowed = torch.ones_like(score, dtype=torch.bool) if within is None else within.reshape(-1) > 0
    score[~allowed] = -1.0
    keep = max(1, int(round(density * int(allowed.sum()))))
    top = torch.sort(score, descending=True, stable=True).indices[:keep]
    mask = torch.zeros_like(score)
    mask[top] = 1.0
    return mask.reshape(weight.shape).to(weight.dtype)


@torch.no_grad()
def apply_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Zero the masked weights and keep the mask as a ``weight_mask`` buffer (combined)."""
    old = getattr(module, "weight_mask", None)
    if old is not None:
        mask = mask * old
    module.register_buffer("weight_mask", mask.to(module.weight.dtype))
    module.weight.mul_(module.weight_mask)
