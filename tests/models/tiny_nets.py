"""Small models following the zoo protocol, for the compression tests (no training needed)."""

from __future__ import annotations

import torch
from torch import nn

from lowbit.models.graph import MatMulSite, PruneGroup


class TinyCNN(nn.Module):
    """conv1+bn1+relu → conv2+bn2+relu → 2×2 pool → flatten → fc1 → relu → fc2, on 1×8×8."""

    dataset = "digits"
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(12)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(12 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        return (
            PruneGroup("conv1", ("conv2",), ("bn1",)),
            PruneGroup("conv2", ("fc1",), ("bn2",), consumer_repeat=16),
            PruneGroup("fc1", ("fc2",)),
        )


class TinyMLP(nn.Module):
    """64 → 32 → 24 → 10 with ReLUs; accepts (n, 64) or (n, 1, 8, 8)."""

    dataset = "digits"
    input_shape = (64,)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 24)
        self.fc3 = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        return (PruneGroup("fc1", ("fc2",)), PruneGroup("fc2", ("fc3",)))


class TinyAttention(nn.Module):
    """One single-head attention block + GELU MLP over (5 tokens × 16), mean-pooled head."""

    input_shape = (5, 16)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.qk, self.av = MatMulSite(), MatMulSite()
        self.proj = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        attn = torch.softmax(self.qk(q, k.transpose(-2, -1)) / 4.0, dim=-1)
        x = x + self.proj(self.av(attn, v))
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))
        return self.head(x.mean(dim=1))

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        return (PruneGroup("fc1", ("fc2",)),)


def seeded(cls: type[nn.Module], seed: int = 0) -> nn.Module:
    """An instance of ``cls`` with weights (and BatchNorm statistics) drawn from ``seed``."""
    torch.manual_seed(seed)
    model = cls()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # non-trivial running statistics
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return model.eval()


def example_input(model: nn.Module, n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *model.input_shape, generator=torch.Generator().manual_seed(seed))
