"""Short quantization-aware finetuning to recover accuracy after compress().

The quantized wrappers keep their weights in float while training and fake-quantize them in
forward with a straight-through estimator (gradient of rounding = identity); activation grids
stay as calibrated. Pruning survives: removed channels are gone from the shapes, and masked
weights (N:M, unstructured) are multiplied by their ``weight_mask`` in forward and re-zeroed
after every optimizer step. BatchNorm layers stay in eval mode (running statistics frozen,
affine parameters trained) so the calibrated activation ranges remain valid. Training uses
the float bias (the int32 rounding deployment applies is left to the eval-mode forward, see
:func:`lowbit.models.compression._intbias.bias_rounded`). At the end the weights are snapped back
onto their
grids (:func:`lowbit.models.compression.quant.requantize_weights`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from lowbit.models.compression.quant import requantize_weights

__all__ = ["finetune"]


@torch.no_grad()
def _reapply_masks(model: nn.Module) -> None:
    for module in model.modules():
        mask = getattr(module, "weight_mask", None)
        if isinstance(mask, torch.Tensor):
            module.weight.mul_(mask)


def _train_mode(model: nn.Module) -> None:
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def finetune(
    model: nn.Module,
    *,
    steps: int = 100,
    lr: float = 1e-3,
    batch_size: int = 64,
    split: str = "train",
    seed: int = 0,
    dataset: str | None = None,
) -> nn.Module:
    """A copy of compressed ``model`` finetuned with Adam for ``steps`` minibatches.

    Args:
        model: usually the output of :func:`lowbit.models.compression.compress.compress` (left
        untouched).
        steps: optimizer steps; lr: Adam learning rate; batch_size: samples per step.
        split: data split to train on (``models.data.load_split``).
        seed: seeds the minibatch order (the run is deterministic on CPU).
        dataset: overrides ``model.dataset``.
    Returns:
        The finetuned model in eval mode, weights on their quantization grids.

    Example:
        >>> recovered = finetune(compress(model, plan, calib=x_val), steps=100)
    """
    from lowbit.models.accuracy import as_model_input
    from lowbit.models.data import load_split

    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    name = dataset or getattr(model, "dataset", None)
    if name is None:
        raise ValueError("finetune needs the model's dataset: pass dataset= or set model.dataset")
    x, y = load_split(name, split)
    x = as_model_input(model, x)
    new = copy.deepcopy(model)
    params = [p for p in new.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    cursor = 0
    _train_mode(new)
    for _ in range(steps):
        if cursor + batch_size > len(x):  # new epoch: reshuffle
            order, cursor = torch.randperm(len(x), generator=generator), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(new(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        _reapply_masks(new)
    requantize_weights(new)
    return new.eval()
