"""The model zoo: small networks on offline datasets, each with its training recipe.

============  =======  ===================================================
name          dataset  architecture
============  =======  ===================================================
digits-cnn    digits   3 Conv2d+BN+ReLU (16-32-32), 2 max pools, fc 128→64→10
digits-mlp    digits   64→128→64→10
digits-vit    digits   2×2 patches, 2 pre-norm encoder blocks (width 32, 4 heads)
mnist1d-cnn   mnist1d  3 Conv1d+BN+ReLU (32-32-32), 2 max pools, fc 320→64→10
mnist1d-mlp   mnist1d  40→100→100→10
============  =======  ===================================================

Example:
    >>> model = build("digits-cnn")
    >>> model.dataset, model.input_shape
    ('digits', (1, 8, 8))
"""

from __future__ import annotations

import torch

from ._base import Add, TokenEmbedding, TrainRecipe, ZooEntry, ZooError, ZooModel
from .cnn import ConvNet, digits_cnn, mnist1d_cnn
from .mlp import MLP, digits_mlp, mnist1d_mlp
from .vit import ViT, digits_vit

__all__ = [
    "ZOO",
    "Add",
    "ConvNet",
    "MLP",
    "TokenEmbedding",
    "TrainRecipe",
    "ViT",
    "ZooEntry",
    "ZooError",
    "ZooModel",
    "build",
    "entry",
    "zoo_names",
]

#: name -> entry, in listing order. Recipes were tuned once on the val split (see
#: benchmarks/accuracy_table.py for the accuracies they reach).
ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry(
            "digits-cnn", "digits", digits_cnn, TrainRecipe(epochs=20, lr=3e-3),
            "Conv2d+BN+ReLU x3, max pools, 2 fc",
        ),
        ZooEntry(
            "digits-mlp", "digits", digits_mlp, TrainRecipe(epochs=60, lr=2e-3),
            "MLP 64-128-64-10",
        ),
        ZooEntry(
            "digits-vit", "digits", digits_vit,
            TrainRecipe(epochs=60, batch_size=128, lr=3e-3, weight_decay=5e-2, warmup_epochs=5),
            "ViT, 2x2 patches, 2 blocks, width 32, 4 heads",
        ),
        ZooEntry(
            "mnist1d-cnn", "mnist1d", mnist1d_cnn, TrainRecipe(epochs=20, batch_size=128, lr=4e-3),
            "Conv1d+BN+ReLU x3, max pools, 2 fc",
        ),
        ZooEntry(
            "mnist1d-mlp", "mnist1d", mnist1d_mlp,
            TrainRecipe(epochs=60, batch_size=128, lr=3e-3, max_shift=2),
            "MLP 40-100-100-10",
        ),
    )
}  # fmt: skip


def zoo_names() -> list[str]:
    """Registered model names, in listing order."""
    return list(ZOO)


def entry(name: str) -> ZooEntry:
    """The :class:`ZooEntry` of ``name``; an unknown name raises :class:`ZooError`."""
    found = ZOO.get(name)
    if found is None:
        raise ZooError(f"unknown model {name!r}; valid names: {', '.join(ZOO)}")
    return found


def build(name: str, *, seed: int = 0) -> ZooModel:
    """A freshly initialised (untrained) ``name``, its weights drawn from ``seed``.

    The model's ``zoo_name`` is set to ``name``; the global torch generator is left as it was.
    """
    factory = entry(name).factory
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    model.zoo_name = name
    return model
