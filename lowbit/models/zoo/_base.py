"""The zoo model protocol, a zoo entry (architecture + training recipe) and shared layers.

Contract of a zoo model (read by the compression transforms and the simulator bridge):

- it is an ``nn.Module`` with ``dataset`` (a :data:`lowbit.models.data.DATASETS` name),
  ``input_shape`` (one sample, e.g. ``(1, 8, 8)``) and ``num_classes``;
- its compute layers are plain ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` submodules and
  its activation × activation products are :class:`~lowbit.models.graph.MatMulSite` submodules, so
  a plan addresses them by their ``named_modules()`` names;
- ``prune_groups()`` declares which output channels can be removed and who consumes them;
  the classifier's logits are never a producer;
- memory-only steps the simulator should see are modules too (pooling, LayerNorm, GELU,
  softmax, :class:`Add` for residuals, :class:`TokenEmbedding`); BatchNorm and ReLU after a
  convolution are folded / fused at deployment and need not be modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lowbit.hwsim.errors import LowbitError
from lowbit.models.graph import PruneGroup

__all__ = ["Add", "TokenEmbedding", "TrainRecipe", "ZooEntry", "ZooError", "ZooModel"]


class ZooError(LowbitError):
    """An unknown zoo model name (or another zoo request that cannot be met)."""


class ZooModel(nn.Module):
    """Base of every zoo network: the contract attributes plus ``prune_groups()``."""

    dataset: str
    input_shape: tuple[int, ...]
    num_classes: int
    #: registry name, set by :func:`lowbit.models.zoo.build` ("" for a model built directly)
    zoo_name: str = ""

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        """Structurally prunable producers and their consumers (none by default)."""
        return ()


class Add(nn.Module):
    """Residual ``a + b`` as a module, so the simulator bridge sees the memory pass."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class TokenEmbedding(nn.Module):
    """Prepends a learned class token and adds learned position embeddings to ``tokens``.

    Args:
        tokens: number of patch tokens (the class token comes on top).
        dim: embedding width.
    """

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embedding


#: optimizers a recipe may name
OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True, slots=True)
class TrainRecipe:
    """How a zoo model is trained: AdamW (or SGD with Nesterov momentum), linear warm-up then
    cosine learning-rate decay (one cycle), cross-entropy.

    Every field enters the checkpoint key, so changing the recipe retrains (fields added
    later enter it only when they differ from their default, so older keys stay valid).

    Attributes:
        epochs: passes over the train split.
        batch_size: samples per step (the last, smaller batch of an epoch is kept).
        lr: peak learning rate (after ``warmup_epochs`` of linear warm-up).
        weight_decay: AdamW decoupled weight decay.
        warmup_epochs: epochs of linear learning-rate warm-up from 0.
        label_smoothing: cross-entropy label smoothing.
        max_shift: random translation of each training input by up to this many samples
            along every spatial axis (zero padded), 0 = no augmentation.
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov momentum ``momentum``).
        momentum: SGD momentum.
        hflip: flip each training image left-right with probability 1/2.
        threads: torch threads while training (results are reproducible for a given
            thread count on a given CPU).
        train_subset: train on the first this many samples of each epoch's shuffled order
            (0 = all): a shorter schedule, stated where it is used (``lowbit demo``).
    """

    epochs: int
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    max_shift: int = 0
    optimizer: str = "adamw"
    momentum: float = 0.9
    hflip: bool = False
    threads: int = 1
    train_subset: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(
                f"optimizer: must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum: must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.hflip, bool):
            problems.append(f"hflip: must be true or false, got {self.hflip!r}")
        for key in ("train_subset",):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                problems.append(f"{key}: must be an integer >= 0, got {getattr(self, key)!r}")
        for key in ("epochs", "batch_size", "threads"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                problems.append(f"{key}: must be a positive integer, got {getattr(self, key)!r}")
        for key in ("warmup_epochs", "max_shift"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                problems.append(f"{key}: must be an integer >= 0, got {getattr(self, key)!r}")
        if not self.lr > 0:
            problems.append(f"lr: must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay: must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing: must be in [0, 1), got {self.label_smoothing!r}")
        if problems:
            raise ValueError("invalid training recipe: " + "; ".join(problems))

    def to_dict(self) -> dict[str, float | int | str | bool]:
        """Every field, except those added after the first release while at their default
        (the checkpoint key hashes this: older recipes keep their keys)."""
        data = asdict(self)
        for key, default in _LATER_DEFAULTS.items():
            if data[key] == default:
                del data[key]
        return data


#: recipe fields added after the first release, with their defaults (see ``to_dict``)
_LATER_DEFAULTS = {
    "optimizer": "adamw",
    "momentum": 0.9,
    "hflip": False,
    "threads": 1,
    "train_subset": 0,
}


@dataclass(frozen=True, slots=True)
class ZooEntry:
    """One registered network: how to build it and how to train it.

    Attributes:
        name: registry name (``digits-cnn``).
        dataset: dataset it is trained on.
        factory: builds the untrained network (weights drawn from torch's global generator;
            :func:`lowbit.models.zoo.build` seeds it).
        recipe: training recipe.
        description: one line for listings.
    """

    name: str
    dataset: str
    factory: Callable[[], ZooModel]
    recipe: TrainRecipe
    description: str
    #: ``"toy"`` (seconds to train; tests train them) or ``"edge"`` (edge-scale, millions of
    #: MACs on real images; minutes to train, so tests never do)
    tier: str = "toy"
