"""Deterministic training of zoo models and the checkpoint cache.

A checkpoint is keyed by the model name, its dataset, the seed and a hash of everything that
determines the weights: the training recipe, the architecture (the module's ``repr``), the
data split and the trainer version. It lives at
``$LOWBIT_CACHE/models/<name>-seed<seed>-<key>.pt`` (``~/.cache/lowbit`` without the variable)
and is written atomically (temp file, then ``os.replace``), so concurrent workers never see
half a file. :func:`load_trained` trains on first use.

Training is reproducible: weights are initialised from ``seed``, batches are shuffled by a
generator seeded with ``seed``, and the loop runs on one thread with
``torch.use_deterministic_algorithms(True)`` (both restored afterwards).

Example:
    >>> model = load_trained("digits-cnn")            # trains once, then loads
    >>> from lowbit.models.accuracy import evaluate
    >>> evaluate(model, split="test") > 0.95
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lowbit.hwsim.fileio import atomic_write
from lowbit.models import data
from lowbit.models.accuracy import accuracy
from lowbit.models.zoo import ZooModel, build, entry

from .zoo._base import TrainRecipe

__all__ = [
    "TrainedModel",
    "cache_dir",
    "checkpoint_key",
    "checkpoint_path",
    "load_checkpoint",
    "load_trained",
    "train",
]

log = logging.getLogger(__name__)

#: bump when the training loop changes in a way that changes the weights
TRAINER_VERSION = 1


def cache_dir() -> Path:
    """Root of lowbit's caches: ``$LOWBIT_CACHE``, else ``~/.cache/lowbit``."""
    root = os.environ.get("LOWBIT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "lowbit"


def checkpoint_key(name: str, *, seed: int = 0, recipe: TrainRecipe | None = None) -> str:
    """12 hex digits of a SHA-256 over what determines the trained weights."""
    zoo_entry = entry(name)
    recipe = recipe if recipe is not None else zoo_entry.recipe
    identity = {
        "trainer": TRAINER_VERSION,
        "model": name,
        "dataset": zoo_entry.dataset,
        "seed": seed,
        "recipe": recipe.to_dict(),
        "architecture": repr(build(name, seed=seed)),
        "split": {"seed": data.SPLIT_SEED, "fractions": list(data.SPLIT_FRACTIONS)},
    }
    text = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def checkpoint_path(name: str, *, seed: int = 0, recipe: TrainRecipe | None = None) -> Path:
    """Where the checkpoint of ``name`` trained with ``seed`` (and ``recipe``) lives."""
    key = checkpoint_key(name, seed=seed, recipe=recipe)
    return cache_dir() / "models" / f"{name}-seed{seed}-{key}.pt"


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """A trained zoo model and what its training measured.

    Attributes:
        model: the network, in eval mode.
        name: zoo name. seed: training seed.
        path: checkpoint file.
        metrics: ``val_accuracy``, ``test_accuracy`` (FP32), ``train_seconds``,
            ``final_train_loss``.
    """

    model: ZooModel
    name: str
    seed: int
    path: Path
    metrics: dict[str, float]


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """One thread and deterministic kernels for the duration (previous settings restored)."""
    threads = torch.get_num_threads()
    strict = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(strict)
        torch.set_num_threads(threads)


def _shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each sample by a random offset in [-max_shift, max_shift] along every
    spatial axis, filling with zeros (axes after the batch and channel dims)."""
    out = x
    for axis in range(2, x.dim()):
        size = x.shape[axis]
        offsets = torch.randint(0, 2 * max_shift + 1, (len(x),), generator=generator)
        # F.pad lists (left, right) pairs from the last dimension backwards
        padded = F.pad(out, [0, 0] * (x.dim() - 1 - axis) + [max_shift, max_shift])
        ones = [1] * x.dim()
        index = offsets.view(-1, *ones[1:]) + torch.arange(size).view(
            *ones[:axis], size, *ones[axis + 1 :]
        )
        out = padded.gather(axis, index.expand(*out.shape[:axis], size, *out.shape[axis + 1 :]))
    return out


def _lr_factor(step: int, *, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 (Loshchilov & Hutter 2017, SGDR eq. 5
    without restarts)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _fit(model: ZooModel, recipe: TrainRecipe, *, seed: int) -> float:
    """Train ``model`` in place on its train split; returns the last epoch's mean loss."""
    x, y = data.load_split(model.dataset, "train")
    generator = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay}],
        lr=recipe.lr,
        weight_decay=0.0,
    )
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    warmup = recipe.warmup_epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total=total, warmup=warmup)
    )
    model.train()
    epoch_loss = float("nan")
    for _ in range(recipe.epochs):
        order = torch.randperm(len(x), generator=generator)
        losses = []
        for start in range(0, len(x), recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            inputs = x[index]
            if recipe.max_shift:
                inputs = _shift(inputs, recipe.max_shift, generator)
            loss = F.cross_entropy(model(inputs), y[index], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        epoch_loss = sum(losses) / len(losses)
    model.eval()
    return epoch_loss


def _save_atomic(payload: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(payload, handle))


def train(name: str, *, seed: int = 0, recipe: TrainRecipe | None = None) -> TrainedModel:
    """Train ``name`` from scratch with ``seed`` and write its checkpoint (always retrains).

    Args:
        name: zoo model name.
        seed: initialisation and shuffling seed.
        recipe: override the zoo's recipe (enters the checkpoint key).
    """
    zoo_entry = entry(name)
    recipe = recipe if recipe is not None else zoo_entry.recipe
    path = checkpoint_path(name, seed=seed, recipe=recipe)
    log.info("training %s (seed %d): %s", name, seed, recipe)
    start = time.perf_counter()
    with _deterministic():
        model = build(name, seed=seed)
        final_loss = _fit(model, recipe, seed=seed)
    seconds = time.perf_counter() - start
    metrics = {
        "train_seconds": seconds,
        "final_train_loss": final_loss,
        **{
            f"{split}_accuracy": accuracy(model, *data.load_split(model.dataset, split))
            for split in ("val", "test")
        },
    }
    payload = {
        "model": name,
        "dataset": zoo_entry.dataset,
        "seed": seed,
        "key": path.stem.rsplit("-", 1)[-1],
        "recipe": recipe.to_dict(),
        "metrics": metrics,
        "torch_version": str(torch.__version__),
        "state_dict": model.state_dict(),
    }
    _save_atomic(payload, path)
    log.info("trained %s in %.1f s: %s -> %s", name, seconds, metrics, path)
    return TrainedModel(model, name, seed, path, metrics)


def load_checkpoint(
    name: str, *, seed: int = 0, recipe: TrainRecipe | None = None
) -> TrainedModel | None:
    """The cached trained model, or None if there is no usable checkpoint."""
    path = checkpoint_path(name, seed=seed, recipe=recipe)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = build(name, seed=seed)
        model.load_state_dict(payload["state_dict"])
    except Exception as exc:  # a torn, foreign or outdated file is a cache miss, not an error
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("ignoring unreadable checkpoint %s (%s); retraining", path, reason)
        return None
    model.eval()
    return TrainedModel(model, name, seed, path, dict(payload["metrics"]))


def load_trained(name: str, *, seed: int = 0, recipe: TrainRecipe | None = None) -> ZooModel:
    """The trained ``name`` (eval mode): from the cache, or trained now and cached."""
    cached = load_checkpoint(name, seed=seed, recipe=recipe)
    if cached is None:
        cached = train(name, seed=seed, recipe=recipe)
    return cached.model
