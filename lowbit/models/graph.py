"""How a model tells the compression transforms about its structure.

Zoo models (and, later, user models through an automatic tracer) describe which output
channels can be physically removed and which layers consume them (:class:`PruneGroup`), and
mark activation × activation products (attention) with :class:`MatMulSite` modules so the
quantizer can quantize both operands and the simulator bridge can emit ``MatMul`` layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["COMPUTE_LAYERS", "PruneGroup", "MatMulSite", "prune_groups_of", "run_hooked"]

#: layer types the transforms quantize, prune and factorise, and the simulator bridge maps
COMPUTE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass(frozen=True, slots=True)
class PruneGroup:
    """Output channels of ``producer`` that can be removed together.

    Attributes:
        producer: module name (Conv1d/Conv2d/Linear) whose output channels (weight dim 0)
            structured pruning removes.
        consumers: modules whose input channels (weight dim 1) shrink with them.
        followers: per-channel modules between them (BatchNorm, LayerNorm over channels)
            sliced with the producer.
        consumer_repeat: how many consecutive consumer inputs each producer channel feeds
            (a Linear after a channel-major flatten of ``repeat`` spatial positions).
    """

    producer: str
    consumers: tuple[str, ...]
    followers: tuple[str, ...] = ()
    consumer_repeat: int = 1


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
