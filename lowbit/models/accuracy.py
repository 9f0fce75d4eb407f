"""Measured accuracy of a (compressed or not) zoo model on a data split.

Example:
    >>> from lowbit.models.zoo import build
    >>> 0.0 <= evaluate(build("digits-mlp"), split="val") <= 1.0
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lowbit.models.data import load_split

__all__ = ["EVAL_BATCH_SIZE", "accuracy", "as_model_input", "evaluate", "logits"]

#: samples per forward pass when measuring accuracy: small enough that a conv layer's
#: activations stay in the core's caches (on the 20.9-MMAC fashion-resnet, 1,000 val images
#: run ~3x faster in batches of 128 than in one batch of 1,000 on one Zen 4 core); the
#: integer-exact forward gives the same codes whatever the batch
EVAL_BATCH_SIZE = 128


def as_model_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` reshaped to ``(n, *model.input_shape)`` when the model declares a different but
    equally sized sample shape (``digits-mlp`` takes ``(64,)``, the data is ``(1, 8, 8)``)."""
    shape = getattr(model, "input_shape", None)
    if shape is None or tuple(x.shape[1:]) == tuple(shape):
        return x
    if math.prod(x.shape[1:]) != math.prod(shape):
        raise ValueError(
            f"inputs of shape {tuple(x.shape[1:])} do not fit the model's input_shape {shape}"
        )
    return x.reshape(x.shape[0], *shape)


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """The model's outputs for ``x``, computed ``batch_size`` samples at a time (eval mode;
    the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        x = as_model_input(model, x)
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = EVAL_BATCH_SIZE
) -> float:
    """Fraction of ``x`` the model classifies as ``y`` (eval mode; the mode is restored)."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as inputs (> 0), got {len(x)} and {len(y)}")
    predicted = logits(model, x, batch_size=batch_size).argmax(dim=1)
    return int((predicted == y).sum()) / len(x)


def evaluate(
    model: nn.Module,
    *,
    split: str = "val",
    dataset: str | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``split`` of its dataset.

    Args:
        model: a zoo model (or a compressed copy); it gives the dataset unless ``dataset``
            is passed.
        split: ``"train"``, ``"val"`` or ``"test"``.
        dataset: dataset name, for models without a ``dataset`` attribute.
        batch_size: samples per forward pass.
    """
    name = dataset if dataset is not None else getattr(model, "dataset", None)
    if name is None:
        raise ValueError("the model has no `dataset` attribute: pass dataset=")
    x, y = load_split(name, split)
    return accuracy(model, x, y, batch_size=batch_size)
