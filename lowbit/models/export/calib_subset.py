"""The calibration subset of val that a search's deployment config records.

A search calibrates activations on a fixed subset of the val split
(:mod:`lowbit.search.fidelity`); its deployment configs record the subset's size and seed, and
:func:`lowbit.models.export.deploy.build_compressed` / ``export_plan`` rebuild the same subset
from them with :func:`calibration_inputs` (the search's evaluator uses these functions too).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["calibration_inputs", "stratified_subset", "subset_sha256"]


def stratified_subset(labels: Any, *, samples: int, seed: int) -> np.ndarray:
    """Sorted positions of ``samples`` of ``labels``, stratified by label and seeded.

    Each label gets ``samples`` times its share of ``labels`` (largest remainders round up),
    its members drawn by one permutation of ``numpy.random.default_rng(seed)`` per label, in
    sorted label order. ``samples >= len(labels)`` gives every position, in order.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if samples >= n:
        return np.arange(n, dtype=np.int64)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * samples / n
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: samples - int(quota.sum())]] += 1
    rng = np.random.default_rng(seed)
    picked = [
        rng.permutation(np.flatnonzero(labels == label))[:q]
        for label, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def subset_sha256(index: Any) -> str:
    """SHA-256 of sorted positions as int64 little-endian (what configs record)."""
    return hashlib.sha256(np.asarray(index, dtype="<i8").tobytes()).hexdigest()


def calibration_inputs(
    model: nn.Module, *, samples: int | None = None, seed: int = 0
) -> torch.Tensor:
    """The calibration batch of ``model``: its val split (as the model takes it), or the
    :func:`stratified_subset` of ``samples`` images drawn with ``seed``."""
    from lowbit.models.accuracy import as_model_input
    from lowbit.models.data import load_split

    x, y = load_split(model.dataset, "val")
    if samples is not None:
        x = x[torch.from_numpy(stratified_subset(y.numpy(), samples=samples, seed=seed))]
    return as_model_input(model, x)
