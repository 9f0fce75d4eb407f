"""A MobileNetV2-style network for 28×28 images: ``fashion-mobilenet`` (about 7 MMAC).

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018): a 3×3
``stem``, then inverted residual blocks -- a 1×1 ``expand`` conv (omitted at expansion 1),
a 3×3 depthwise ``dw`` conv (stride 1 or 2), a linear 1×1 ``project`` conv, each with
BatchNorm, ReLU6 after the first two -- with a residual :class:`~lowbit.models.zoo.Add` when
a block keeps its shape; a 1×1 ``head`` conv, global average ``pool`` and ``fc``.

Prune groups: a block's expanded channels (``expand`` → ``bn_e``, ``dw``, ``bn_d`` →
``project``; the depthwise conv is a per-channel follower); at expansion 1 the stem's
channels go through the depthwise conv the same way. A residual stream (the projections
added together in one stage) is one group of coupled producers, read by the following
blocks' ``expand`` convs; ``head`` → ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lowbit.models.graph import PruneGroup

from ._base import Add, ZooModel

__all__ = ["InvertedResidual", "MobileNetV2", "fashion_mobilenet"]

#: (expansion t, output channels c, blocks n, first stride s) per stage, as in the paper's
#: Table 2, shortened for 28×28 inputs
FASHION_STAGES = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 1))


class InvertedResidual(nn.Module):
    """[expand → bn_e → ReLU6 →] dw → bn_d → ReLU6 → project → bn_p [→ add(input, ·)]."""

    def __init__(self, in_c: int, out_c: int, *, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_c * expansion
        self.expands = expansion != 1
        if self.expands:
            self.expand = nn.Conv2d(in_c, hidden, 1, bias=False)
            self.bn_e = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn_d = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, out_c, 1, bias=False)
        self.bn_p = nn.BatchNorm2d(out_c)
        self.residual = stride == 1 and in_c == out_c
        if self.residual:
            self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn_e(self.expand(x))) if self.expands else x
        y = self.bn_p(self.project(F.relu6(self.bn_d(self.dw(y)))))
        return self.add(x, y) if self.residual else y


class MobileNetV2(ZooModel):
    """``stem`` → ``blocks`` (:class:`InvertedResidual`) → ``head`` 1×1 → ``pool`` → ``fc``.

    Args:
        dataset: dataset name (sets the contract attribute).
        input_shape: ``(C, H, W)``.
        stem: stem channels. stages: ``(t, c, n, s)`` per stage. head: head channels.
        num_classes: logits of ``fc``.
    """

    def __init__(
        self,
        *,
        dataset: str,
        input_shape: tuple[int, int, int],
        stem: int,
        stages: tuple[tuple[int, int, int, int], ...],
        head: int,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.stem = nn.Conv2d(input_shape[0], stem, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        blocks, in_c = [], stem
        for expansion, out_c, repeat, stride in stages:
            for j in range(repeat):
                step = stride if j == 0 else 1
                blocks.append(InvertedResidual(in_c, out_c, expansion=expansion, stride=step))
                in_c = out_c
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(in_c, head, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(head)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        x = F.relu6(self.head_bn(self.head(x)))
        return self.fc(self.pool(x).flatten(1))

    def _readers(self, index: int) -> tuple[str, ...]:
        """The layer reading the output of block ``index`` (its successor's first conv)."""
        if index + 1 == len(self.blocks):
            return ("head",)
        nxt = self.blocks[index + 1]
        return (f"blocks.{index + 1}.{'expand' if nxt.expands else 'dw'}",)

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        groups = []
        first = self.blocks[0]
        if not first.expands:  # the stem's channels run through block 0's depthwise conv
            groups.append(
                PruneGroup(
                    "stem",
                    ("blocks.0.project",),
                    followers=("stem_bn", "blocks.0.dw", "blocks.0.bn_d"),
                )
            )
        for i, block in enumerate(self.blocks):
            name = f"blocks.{i}"
            if block.expands:
                groups.append(
                    PruneGroup(
                        f"{name}.expand",
                        (f"{name}.project",),
                        followers=(f"{name}.bn_e", f"{name}.dw", f"{name}.bn_d"),
                    )
                )
        # residual streams: a block that is not residual starts one; the residual blocks
        # after it add to it
        i = 0
        while i < len(self.blocks):
            j = i + 1
            while j < len(self.blocks) and self.blocks[j].residual:
                j += 1
            members = range(i, j)
            readers = [r for k in members for r in self._readers(k)]
            groups.append(
                PruneGroup(
                    f"blocks.{i}.project",
                    tuple(readers),
                    followers=tuple(f"blocks.{k}.bn_p" for k in members),
                    coupled=tuple(f"blocks.{k}.project" for k in members if k != i),
                )
            )
            i = j
        groups.append(PruneGroup("head", ("fc",), followers=("head_bn",)))
        return tuple(groups)


def fashion_mobilenet() -> MobileNetV2:
    """Fashion-MNIST 1×28×28: stem 24, stages of :data:`FASHION_STAGES`, head 256, ~7 MMAC."""
    return MobileNetV2(
        dataset="fashion-mnist",
        input_shape=(1, 28, 28),
        stem=24,
        stages=FASHION_STAGES,
        head=256,
    )
