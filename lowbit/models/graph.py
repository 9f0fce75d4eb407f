"""How a model tells the compression transforms about its structure.

Zoo models (and user models through the tracer, :mod:`lowbit.models.trace`) describe which
output channels can be physically removed and which layers consume them (:class:`PruneGroup`,
residual streams as one group of coupled producers), and
mark activation × activation products (attention) with :class:`MatMulSite` modules so the
quantizer can quantize both operands and the simulator bridge can emit ``MatMul`` layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "COMPUTE_LAYERS",
    "POOL_LAYERS",
    "PruneGroup",
    "MatMulSite",
    "is_depthwise",
    "keep_owners",
    "prune_groups_of",
    "run_hooked",
]

#: layer types the transforms quantize, prune and factorise, and the simulator bridge maps
COMPUTE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: pooling module types: no weights, one input; the tracer and the bridge see through them
POOL_LAYERS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)


@dataclass(frozen=True, slots=True)
class PruneGroup:
    """Output channels of ``producer`` that can be removed together.

    Attributes:
        producer: module name (Conv1d/Conv2d/Linear) whose output channels (weight dim 0)
            structured pruning removes; its plan entry's ``keep`` sets the group's keep ratio.
        consumers: modules whose input channels (weight dim 1) shrink with them.
        followers: per-channel modules between them, sliced with the producer: BatchNorm,
            LayerNorm over channels, and per-channel (depthwise) convolutions with
            ``groups == in_channels == out_channels``, which lose the same channels (weight
            rows, and their groups shrink with them).
        consumer_repeat: how many consecutive consumer inputs each producer channel feeds
            (a Linear after a channel-major flatten of ``repeat`` spatial positions).
        coupled: further producers whose outputs are summed with the producer's (the operands
            of residual adds along one residual stream). All of them lose the same channel
            indices, ranked by their summed (per producer normalised) filter importance; they
            have no keep ratio of their own. ``followers`` and ``consumers`` then list those of
            the whole stream.
    """

    producer: str
    consumers: tuple[str, ...]
    followers: tuple[str, ...] = ()
    consumer_repeat: int = 1
    coupled: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        producers = (self.producer, *self.coupled)
        if len(set(producers)) != len(producers):
            raise ValueError(
                f"prune group of {self.producer!r}: the producer and its coupled producers "
                f"{list(self.coupled)} must be distinct layers"
            )

    @property
    def producers(self) -> tuple[str, ...]:
        """The producer, then the coupled producers."""
        return (self.producer, *self.coupled)


def is_depthwise(module: nn.Module) -> bool:
    """A per-channel convolution: groups = input channels = output channels (> 1)."""
    if not isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return False
    return 1 < module.groups == module.in_channels == module.out_channels


def keep_owners(groups: tuple[PruneGroup, ...]) -> dict[str, str]:
    """Layer -> the primary producer whose keep ratio removes its output channels, for every
    coupled producer and follower (BatchNorm, depthwise conv) of ``groups``."""
    return {name: group.producer for group in groups for name in (*group.coupled, *group.followers)}


class MatMulSite(nn.Module):
    """``a @ b`` as a module, so transforms and the simulator bridge can see it.

    The quantizer replaces it with a version that fake-quantizes both operands.
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


def prune_groups_of(model: nn.Module) -> tuple[PruneGroup, ...]:
    """The model's declared prune groups (``model.prune_groups()``), or none."""
    method = getattr(model, "prune_groups", None)
    return tuple(method()) if callable(method) else ()


def run_hooked(model: nn.Module, x: torch.Tensor, *, handles: list) -> torch.Tensor:
    """One forward pass of ``model`` on ``x`` in eval mode (batch statistics would change the
    running ones), with hooks already registered (``handles``), which are removed after; the
    model's train/eval mode is restored whatever happens."""
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
