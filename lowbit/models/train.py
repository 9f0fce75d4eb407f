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
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import torch
import torch.nn.functional as F

from lowbit.hwsim.fileio import atomic_write
from lowbit.models import data
from lowbit.models.accuracy import accuracy
from lowbit.models.cache import cache_dir
from lowbit.models.zoo import ZooModel, build, entry

from .zoo._base import TrainRecipe

__all__ = [
    "ConsoleProgress",
    "Progress",
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
def _deterministic(threads: int = 1) -> Iterator[None]:
    """``threads`` threads and deterministic kernels for the duration (previous settings
    restored)."""
    previous = torch.get_num_threads()
    strict = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(strict)
        torch.set_num_threads(previous)


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
        steps = torch.arange(size).view(*ones[:axis], size, *ones[axis + 1 :])
        index = offsets.view(-1, *ones[1:]) + steps
        out = padded.gather(axis, index.expand(*out.shape[:axis], size, *out.shape[axis + 1 :]))
    return out


def _lr_factor(step: int, *, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 (Loshchilov & Hutter 2017, SGDR eq. 5
    without restarts)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class Progress(Protocol):
    """What training reports: a step inside an epoch, and each finished epoch."""

    def step(self, epoch: int, step: int, steps: int, loss: float) -> None: ...

    def epoch(self, epoch: int, loss: float, val_accuracy: float) -> None: ...


class ConsoleProgress:
    """Training progress on a stream (stderr by default): a bar redrawn in place on a
    terminal, and one line per epoch (epoch, mean loss, val accuracy, elapsed time)."""

    def __init__(self, name: str, epochs: int, *, stream: TextIO | None = None) -> None:
        self.name, self.epochs = name, epochs
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()

    def step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        if self.tty:
            done = int(20 * step / steps)
            self.stream.write(
                f"\r{self.name} epoch {epoch}/{self.epochs} [{'#' * done:<20}] "
                f"{step}/{steps} loss {loss:.3f}"
            )
            self.stream.flush()

    def epoch(self, epoch: int, loss: float, val_accuracy: float) -> None:
        elapsed = time.perf_counter() - self.start
        start = "\r" if self.tty else ""
        self.stream.write(
            f"{start}{self.name} epoch {epoch}/{self.epochs}: "
            f"loss {loss:.3f}, val accuracy {val_accuracy:.2%} ({elapsed:.0f} s){' ' * 12}\n"
        )
        self.stream.flush()


def _optimizer(model: ZooModel, recipe: TrainRecipe) -> torch.optim.Optimizer:
    """AdamW or Nesterov SGD; weight decay on weights only (not biases and norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=True, weight_decay=0.0
        )
    return torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=0.0)


def _channels_last(model: ZooModel) -> bool:
    """Train in channels-last memory format (2-D convolutions: several times faster on CPU)."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def _fit(
    model: ZooModel, recipe: TrainRecipe, *, seed: int, progress: Progress | None = None
) -> float:
    """Train ``model`` in place on its train split; returns the last epoch's mean loss.
    ``progress`` is told every few steps and after each epoch (with the val accuracy)."""
    x, y = data.load_split(model.dataset, "train")
    generator = torch.Generator().manual_seed(seed)
    optimizer = _optimizer(model, recipe)
    per_epoch = min(len(x), recipe.train_subset) if recipe.train_subset else len(x)
    steps_per_epoch = math.ceil(per_epoch / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    warmup = recipe.warmup_epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total=total, warmup=warmup)
    )
    layout = torch.channels_last if _channels_last(model) else torch.contiguous_format
    if layout is torch.channels_last:
        model.to(memory_format=layout)
    val = data.load_split(model.dataset, "val") if progress is not None else None
    model.train()
    epoch_loss = float("nan")
    for epoch in range(1, recipe.epochs + 1):
        order = torch.randperm(len(x), generator=generator)[:per_epoch]
        losses = []
        for start in range(0, per_epoch, recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            inputs = x[index]
            if recipe.max_shift:
                inputs = _shift(inputs, recipe.max_shift, generator)
            if recipe.hflip:
                flip = torch.rand(len(inputs), generator=generator) < 0.5
                inputs = torch.where(
                    flip.view(-1, *[1] * (inputs.dim() - 1)), inputs.flip(-1), inputs
                )
            if inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=layout)
            loss = F.cross_entropy(model(inputs), y[index], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if progress is not None and len(losses) % 20 == 0:
                progress.step(epoch, len(losses), steps_per_epoch, sum(losses) / len(losses))
        epoch_loss = sum(losses) / len(losses)
        if progress is not None and val is not None:
            model.eval()
            progress.epoch(epoch, epoch_loss, accuracy(model, *val))
            model.train()
    model.eval()
    if layout is torch.channels_last:
        model.to(memory_format=torch.contiguous_format)
    return epoch_loss


def _save_atomic(payload: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(payload, handle))


def train(
    name: str,
    *,
    seed: int = 0,
    recipe: TrainRecipe | None = None,
    progress: Progress | bool | None = None,
) -> TrainedModel:
    """Train ``name`` from scratch with ``seed`` and write its checkpoint (always retrains).

    Args:
        name: zoo model name.
        seed: initialisation and shuffling seed.
        recipe: override the zoo's recipe (enters the checkpoint key).
        progress: told of every epoch; ``True`` = a :class:`ConsoleProgress` on stderr;
            None or False = quiet.
    """
    zoo_entry = entry(name)
    recipe = recipe if recipe is not None else zoo_entry.recipe
    path = checkpoint_path(name, seed=seed, recipe=recipe)
    log.info("training %s (seed %d): %s", name, seed, recipe)
    start = time.perf_counter()
    with _deterministic(recipe.threads):
        model = build(name, seed=seed)
        if progress is True:
            progress = ConsoleProgress(name, recipe.epochs)
        final_loss = _fit(model, recipe, seed=seed, progress=progress or None)
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


def load_trained(
    name: str,
    *,
    seed: int = 0,
    recipe: TrainRecipe | None = None,
    progress: Progress | bool | None = None,
) -> ZooModel:
    """The trained ``name`` (eval mode): from the cache, or trained now and cached.
    ``progress=True`` reports training on stderr (:class:`ConsoleProgress`)."""
    cached = load_checkpoint(name, seed=seed, recipe=recipe)
    if cached is None:
        cached = train(name, seed=seed, recipe=recipe, progress=progress)
    return cached.model
