"""Multi-layer perceptrons: ``digits-mlp`` and ``mnist1d-mlp``.

``fc1`` … ``fcN`` with ReLU between them; the input is flattened first, so an MLP accepts
both its declared ``input_shape`` and the dataset's native sample shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lowbit.models.graph import PruneGroup

from ._base import ZooModel

__all__ = ["MLP", "digits_mlp", "mnist1d_mlp"]


class MLP(ZooModel):
    """Flatten, then Linear+ReLU for each hidden width, then a Linear to the logits.

    Args:
        dataset: dataset name (sets the contract attribute).
        input_shape: shape of one sample (flattened before ``fc1``).
        hidden: widths of the hidden layers.
        num_classes: logits of the last layer.
    """

    def __init__(
        self,
        *,
        dataset: str,
        input_shape: tuple[int, ...],
        hidden: tuple[int, ...],
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        widths = (math.prod(input_shape), *hidden, num_classes)
        self.n_layers = len(widths) - 1
        for i in range(1, len(widths)):
            setattr(self, f"fc{i}", nn.Linear(widths[i - 1], widths[i]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(1, self.n_layers):
            x = F.relu(getattr(self, f"fc{i}")(x))
        return getattr(self, f"fc{self.n_layers}")(x)

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        return tuple(PruneGroup(f"fc{i}", (f"fc{i + 1}",)) for i in range(1, self.n_layers))


def digits_mlp() -> MLP:
    """8×8 digits as 64 features: 64→128→64→10 (~17k params)."""
    return MLP(dataset="digits", input_shape=(64,), hidden=(128, 64))


def mnist1d_mlp() -> MLP:
    """MNIST-1D signals: 40→100→100→10 (~15k params)."""
    return MLP(dataset="mnist1d", input_shape=(1, 40), hidden=(100, 100))
