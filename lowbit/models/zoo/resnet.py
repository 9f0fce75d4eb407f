"""A ResNet-style CNN for 28×28 images: ``fashion-resnet`` (about 21 MMAC per image).

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), CIFAR variant: a 3×3
``stem``, then one basic block per stage (two 3×3 convs with BatchNorm, a residual
:class:`~lowbit.models.zoo.Add`, ReLU after the add); stages 2 and 3 halve the resolution in
their first conv and project the shortcut with a strided 1×1 ``down`` conv + BatchNorm
(option B of the paper). Global average pooling (``pool``) and a linear ``fc`` give the
logits.

Prune groups: inside a block, ``conv1``'s channels feed only ``conv2``. The channels of a
*residual stream* -- every tensor added together in one stage -- are one group of coupled
producers (the stage's ``conv2`` and its shortcut's producer), pruned together, read by the
next stage's ``conv1`` and ``down`` (or by ``fc``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lowbit.models.graph import PruneGroup

from ._base import Add, ZooModel

__all__ = ["BasicBlock", "ResNet", "fashion_resnet"]


class BasicBlock(nn.Module):
    """conv1 → bn1 → ReLU → conv2 → bn2, plus the shortcut (identity or down → down_bn),
    added by ``add``, then ReLU."""

    def __init__(self, in_c: int, out_c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.projects = stride != 1 or in_c != out_c
        if self.projects:
            self.down = nn.Conv2d(in_c, out_c, 1, stride=stride, bias=False)
            self.down_bn = nn.BatchNorm2d(out_c)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = self.down_bn(self.down(x)) if self.projects else x
        return F.relu(self.add(y, shortcut))


class ResNet(ZooModel):
    """``stem`` (3×3) → one :class:`BasicBlock` per width (``layer1`` … at stride 1, 2, 2, …)
    → global average ``pool`` → ``fc``.

    Args:
        dataset: dataset name (sets the contract attribute).
        input_shape: ``(C, H, W)``.
        widths: channels of each stage; the stem has ``widths[0]``.
        num_classes: logits of ``fc``.
    """

    def __init__(
        self,
        *,
        dataset: str,
        input_shape: tuple[int, int, int],
        widths: tuple[int, ...],
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one stage")
        self.dataset = dataset
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.widths = tuple(widths)
        self.stem = nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        in_c = widths[0]
        for i, out_c in enumerate(widths, 1):
            setattr(self, f"layer{i}", BasicBlock(in_c, out_c, 1 if i == 1 else 2))
            in_c = out_c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        for i in range(1, len(self.widths) + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(self.pool(x).flatten(1))

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        groups = []
        stages = len(self.widths)
        for i in range(1, stages + 1):
            block = f"layer{i}"
            groups.append(
                PruneGroup(f"{block}.conv1", (f"{block}.conv2",), followers=(f"{block}.bn1",))
            )
            readers = (f"layer{i + 1}.conv1", f"layer{i + 1}.down") if i < stages else ("fc",)
            if getattr(self, block).projects:
                shortcut, shortcut_bn, extra_readers = f"{block}.down", f"{block}.down_bn", ()
            else:  # identity shortcut: the stream is the block's input, written by the stem
                shortcut, shortcut_bn, extra_readers = "stem", "stem_bn", (f"{block}.conv1",)
            groups.append(
                PruneGroup(
                    f"{block}.conv2",
                    (*extra_readers, *readers),
                    followers=(f"{block}.bn2", shortcut_bn),
                    coupled=(shortcut,),
                )
            )
        return tuple(groups)


def fashion_resnet() -> ResNet:
    """Fashion-MNIST 1×28×28: stem 24, stages 24-48-96 (28², 14², 7²), ~21 MMAC, ~174k params."""
    return ResNet(dataset="fashion-mnist", input_shape=(1, 28, 28), widths=(24, 48, 96))
