"""Small models following the zoo protocol, for the compression tests (no training needed)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lowbit.models.graph import MatMulSite, PruneGroup
from lowbit.models.zoo import Add


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


class _BasicBlock(nn.Module):
    """conv1+bn1+relu → conv2+bn2, plus the input (or a 1×1 strided shortcut+bn), → relu."""

    def __init__(self, in_c: int, out_c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.shortcut = self.shortcut_bn = None
        if stride != 1 or in_c != out_c:
            self.shortcut = nn.Conv2d(in_c, out_c, 1, stride, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(out_c)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        skip = x if self.shortcut is None else self.shortcut_bn(self.shortcut(x))
        return torch.relu(self.add(out, skip))


class TinyResNet(nn.Module):
    """stem (1→8) → block1 (8→8, identity skip) → block2 (8→16, stride 2, 1×1 shortcut) →
    global average pool → fc (16→10), BatchNorm after every conv, on 1×8×8."""

    dataset = "digits"
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.block1 = _BasicBlock(8, 8, 1)
        self.block2 = _BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(torch.relu(self.stem_bn(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        return (
            # the first residual stream: block1's conv2 branch plus the stem's output (the
            # stem, which pin_first_last pins, is coupled rather than the group's key)
            PruneGroup(
                "block1.conv2",
                ("block1.conv1", "block2.conv1", "block2.shortcut"),
                followers=("stem_bn", "block1.bn2"),
                coupled=("stem",),
            ),
            PruneGroup("block1.conv1", ("block1.conv2",), ("block1.bn1",)),
            PruneGroup("block2.conv1", ("block2.conv2",), ("block2.bn1",)),
            # the second stream: block2's conv2 branch plus its downsample shortcut
            PruneGroup(
                "block2.conv2",
                ("fc",),
                followers=("block2.bn2", "block2.shortcut_bn"),
                coupled=("block2.shortcut",),
            ),
        )


class _InvertedResidual(nn.Module):
    """expand 1×1 (+bn+relu6) → depthwise 3×3 (+bn+relu6) → project 1×1 (+bn), + input."""

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(channels)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.expand_bn(self.expand(x)))
        h = F.relu6(self.dw_bn(self.dw(h)))
        return self.add(x, self.project_bn(self.project(h)))


class TinyInvertedResidual(nn.Module):
    """MobileNetV2-style: stem (1→8) → two inverted residual blocks (8→24→8, depthwise 3×3)
    → head 1×1 (8→16) → global average pool → fc (16→10), on 1×8×8."""

    dataset = "digits"
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.block1 = _InvertedResidual(8, 3)
        self.block2 = _InvertedResidual(8, 3)
        self.head = nn.Conv2d(8, 16, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem_bn(self.stem(x)))
        x = self.block2(self.block1(x))
        x = self.pool(F.relu6(self.head_bn(self.head(x))))
        return self.fc(x.flatten(1))

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        return (
            # one residual stream through both blocks: stem + block1 + block2 projections
            PruneGroup(
                "block1.project",
                ("block1.expand", "block2.expand", "head"),
                followers=("stem_bn", "block1.project_bn", "block2.project_bn"),
                coupled=("stem", "block2.project"),
            ),
            # expansion channels: BN, the depthwise conv and its BN lose them too
            PruneGroup(
                "block1.expand",
                ("block1.project",),
                followers=("block1.expand_bn", "block1.dw", "block1.dw_bn"),
            ),
            PruneGroup(
                "block2.expand",
                ("block2.project",),
                followers=("block2.expand_bn", "block2.dw", "block2.dw_bn"),
            ),
            PruneGroup("head", ("fc",), ("head_bn",)),
        )


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
