"""The model zoo: networks on offline datasets, each with its training recipe.

Toy models (seconds to train; the tests train them) and edge-scale models on real
Fashion-MNIST images (millions of MACs, minutes to train; ``tier = "edge"``):

=================  =============  =========================================================
name               dataset        architecture
=================  =============  =========================================================
digits-cnn         digits         3 Conv2d+BN+ReLU (16-32-32), 2 max pools, fc 128→64→10
digits-mlp         digits         64→128→64→10
digits-vit         digits         2×2 patches, 2 pre-norm encoder blocks (width 32, 4 heads)
mnist1d-cnn        mnist1d        3 Conv1d+BN+ReLU (32-32-32), 2 max pools, fc 320→64→10
mnist1d-mlp        mnist1d        40→100→100→10
fashion-resnet     fashion-mnist  ResNet: stem 24, basic blocks 24-48-96, residual adds
fashion-resnet-demo               the same network on the demo's short schedule
fashion-mobilenet  fashion-mnist  MobileNetV2: inverted residuals, depthwise convs
fashion-vit        fashion-mnist  ViT: 4×4 patches, 4 encoder blocks (width 64, 4 heads)
=================  =============  =========================================================

Example:
    >>> model = build("digits-cnn")
    >>> model.dataset, model.input_shape
    ('digits', (1, 8, 8))
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ._base import Add, TokenEmbedding, TrainRecipe, ZooEntry, ZooError, ZooModel
from .cnn import ConvNet, digits_cnn, mnist1d_cnn
from .mlp import MLP, digits_mlp, mnist1d_mlp
from .mobilenet import MobileNetV2, fashion_mobilenet
from .resnet import ResNet, fashion_resnet
from .vit import ViT, digits_vit, fashion_vit

__all__ = [
    "ZOO",
    "Add",
    "ConvNet",
    "MLP",
    "MobileNetV2",
    "ResNet",
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

#: the edge CNNs' recipe: Nesterov SGD, one cycle (1 warm-up epoch, cosine decay), light
#: augmentation (shifts of up to 2 pixels, left-right flips), label smoothing, 2 threads
EDGE_CNN_RECIPE = TrainRecipe(
    epochs=8,
    batch_size=128,
    lr=0.1,
    weight_decay=5e-4,
    warmup_epochs=1,
    label_smoothing=0.1,
    max_shift=2,
    optimizer="sgd",
    hflip=True,
    threads=2,
)

#: ``lowbit demo``'s schedule: the edge recipe over 3 epochs of 20,000 images each (about a
#: minute and a half on 2 cores instead of ten), a few points below the full recipe
DEMO_RECIPE = replace(EDGE_CNN_RECIPE, epochs=3, train_subset=20_000)

#: name -> entry, in listing order. Recipes were tuned once on the val split (see
#: benchmarks/accuracy_table.py for the accuracies they reach).
ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry(
            "digits-cnn",
            "digits",
            digits_cnn,
            TrainRecipe(epochs=20, lr=3e-3),
            "Conv2d+BN+ReLU x3, max pools, 2 fc",
        ),
        ZooEntry(
            "digits-mlp",
            "digits",
            digits_mlp,
            TrainRecipe(epochs=60, lr=2e-3),
            "MLP 64-128-64-10",
        ),
        ZooEntry(
            "digits-vit",
            "digits",
            digits_vit,
            TrainRecipe(epochs=60, batch_size=128, lr=3e-3, weight_decay=5e-2, warmup_epochs=5),
            "ViT, 2x2 patches, 2 blocks, width 32, 4 heads",
        ),
        ZooEntry(
            "mnist1d-cnn",
            "mnist1d",
            mnist1d_cnn,
            TrainRecipe(epochs=20, batch_size=128, lr=4e-3),
            "Conv1d+BN+ReLU x3, max pools, 2 fc",
        ),
        ZooEntry(
            "mnist1d-mlp",
            "mnist1d",
            mnist1d_mlp,
            TrainRecipe(epochs=60, batch_size=128, lr=3e-3, max_shift=2),
            "MLP 40-100-100-10",
        ),
        ZooEntry(
            "fashion-resnet",
            "fashion-mnist",
            fashion_resnet,
            EDGE_CNN_RECIPE,
            "ResNet, basic blocks 24-48-96, residual adds, ~21 MMAC",
            tier="edge",
        ),
        ZooEntry(
            "fashion-resnet-demo",
            "fashion-mnist",
            fashion_resnet,
            DEMO_RECIPE,
            "fashion-resnet on the demo's short schedule (3 x 20,000 images)",
            tier="edge",
        ),
        ZooEntry(
            "fashion-mobilenet",
            "fashion-mnist",
            fashion_mobilenet,
            EDGE_CNN_RECIPE,
            "MobileNetV2, inverted residuals, depthwise, ~7 MMAC",
            tier="edge",
        ),
        ZooEntry(
            "fashion-vit",
            "fashion-mnist",
            fashion_vit,
            TrainRecipe(
                epochs=10,
                batch_size=128,
                lr=2e-3,
                weight_decay=5e-2,
                warmup_epochs=1,
                label_smoothing=0.1,
                max_shift=2,
                hflip=True,
                threads=2,
            ),
            "ViT, 4x4 patches, 4 blocks, width 64, 4 heads",
            tier="edge",
        ),
    )
}


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
