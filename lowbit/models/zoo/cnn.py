"""Small convolutional networks: ``digits-cnn`` (Conv2d) and ``mnist1d-cnn`` (Conv1d).

One class covers both: ``conv{i}`` → ``bn{i}`` → ReLU (→ ``pool{i}``, 2× max pooling) for each
conv, then a channel-major flatten, ``fc1`` → ReLU → ``fc2`` (logits).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lowbit.models.graph import PruneGroup

from ._base import ZooModel

__all__ = ["ConvNet", "digits_cnn", "mnist1d_cnn"]


class ConvNet(ZooModel):
    """Conv(+BN+ReLU) stack with optional 2× max pooling, then a two-layer classifier.

    Args:
        dataset: dataset name (sets the contract attribute).
        input_shape: ``(C, L)`` for 1-D or ``(C, H, W)`` for 2-D inputs.
        channels: output channels of each conv (kernel ``kernels[i]``, "same" padding).
        kernels: odd kernel sizes, one per conv.
        pool_after: 1-based indices of the convs followed by 2× max pooling.
        hidden: width of ``fc1``.
        num_classes: logits of ``fc2``.
    """

    def __init__(
        self,
        *,
        dataset: str,
        input_shape: tuple[int, ...],
        channels: tuple[int, ...],
        kernels: tuple[int, ...],
        pool_after: tuple[int, ...],
        hidden: int,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if len(channels) != len(kernels) or not channels:
            raise ValueError("channels and kernels must be non-empty and of equal length")
        self.dataset = dataset
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.spatial_dims = len(input_shape) - 1
        conv, bn, pool = {
            1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d),
            2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d),
        }[self.spatial_dims]
        self.n_convs = len(channels)
        self.pool_after = tuple(pool_after)
        size = list(input_shape[1:])
        in_c = input_shape[0]
        for i, (out_c, k) in enumerate(zip(channels, kernels, strict=True), 1):
            setattr(self, f"conv{i}", conv(in_c, out_c, k, padding=k // 2, bias=False))
            setattr(self, f"bn{i}", bn(out_c))
            if i in self.pool_after:
                setattr(self, f"pool{i}", pool(2))
                size = [s // 2 for s in size]
            in_c = out_c
        #: spatial positions per channel at the flatten (consumer_repeat of the last conv)
        self.flat_positions = math.prod(size)
        self.fc1 = nn.Linear(in_c * self.flat_positions, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n_convs + 1):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            if i in self.pool_after:
                x = getattr(self, f"pool{i}")(x)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        groups = [
            PruneGroup(f"conv{i}", (f"conv{i + 1}",), followers=(f"bn{i}",))
            for i in range(1, self.n_convs)
        ]
        last = self.n_convs
        groups.append(
            PruneGroup(
                f"conv{last}",
                ("fc1",),
                followers=(f"bn{last}",),
                consumer_repeat=self.flat_positions,
            )
        )
        groups.append(PruneGroup("fc1", ("fc2",)))
        return tuple(groups)


def digits_cnn() -> ConvNet:
    """8×8 digits: 3×3 convs 16-32-32 with pooling to 2×2, fc 128→64→10 (~24k params)."""
    return ConvNet(
        dataset="digits",
        input_shape=(1, 8, 8),
        channels=(16, 32, 32),
        kernels=(3, 3, 3),
        pool_after=(2, 3),
        hidden=64,
    )


def mnist1d_cnn() -> ConvNet:
    """MNIST-1D: 1-D convs 32-32-32 (kernels 5, 3, 3) pooled 40→10, fc 320→64→10."""
    return ConvNet(
        dataset="mnist1d",
        input_shape=(1, 40),
        channels=(32, 32, 32),
        kernels=(5, 3, 3),
        pool_after=(2, 3),
        hidden=64,
    )
