"""The two offline datasets and their fixed, seeded, stratified train/val/test splits.

Nothing is downloaded:

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, pixel values
  0-16 scaled to [0, 1]), shaped ``(1, 8, 8)`` per sample.
- ``mnist1d``: generated locally with ``mnist1d.data.make_dataset(get_dataset_args())``
  (its default arguments, generator seed 42: 5,000 signals of length 40, already centred
  and scaled by the generator), shaped ``(1, 40)`` per sample. ``get_dataset`` is never
  called: it downloads.

Each dataset is split once, stratified by label with a fixed seed, 60/20/20:

============  =====  =====  =====
dataset       train  val    test
============  =====  =====  =====
``digits``    1,078  359    360
``mnist1d``   3,000  1,000  1,000
============  =====  =====  =====

The arrays are built on first use and kept in memory (``functools.cache``); every call of
:func:`load_split` returns fresh tensors, so callers may modify what they get.

Example:
    >>> x, y = load_split("digits", "test")
    >>> tuple(x.shape), x.dtype, y.dtype
    ((360, 1, 8, 8), torch.float32, torch.int64)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from lowbit.hwsim.errors import LowbitError

__all__ = [
    "DATASETS",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "SPLIT_SEED",
    "DatasetError",
    "DatasetInfo",
    "dataset_info",
    "load_split",
    "split_indices",
    "split_sizes",
]

#: split names, in the order the samples are carved out
SPLITS = ("train", "val", "test")
#: fractions of every class in train / val / test
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
#: seed of the stratified split (fixed: every run and every helper sees the same split)
SPLIT_SEED = 0


class DatasetError(LowbitError):
    """An unknown dataset or split name."""


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    Attributes:
        name: registry name.
        input_shape: shape of one sample as :func:`load_split` returns it.
        num_classes: number of labels (0 … num_classes − 1).
        description: one line for listings.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    description: str


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64)


def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global `random` and numpy generators: keep the caller's state.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32).reshape(-1, 1, 40)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y


#: dataset name -> (info, loader of all samples)
DATASETS: dict[str, tuple[DatasetInfo, Callable[[], tuple[np.ndarray, np.ndarray]]]] = {
    "digits": (
        DatasetInfo("digits", (1, 8, 8), 10, "scikit-learn 8x8 handwritten digits (1,797)"),
        _digits_arrays,
    ),
    "mnist1d": (
        DatasetInfo("mnist1d", (1, 40), 10, "MNIST-1D signals of length 40 (5,000, generated)"),
        _mnist1d_arrays,
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; an unknown name raises :class:`DatasetError`."""
    entry = DATASETS.get(name)
    if entry is None:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return entry[0]


def _stratified_indices(labels: np.ndarray, *, seed: int) -> dict[str, np.ndarray]:
    """Split sample indices per class by :data:`SPLIT_FRACTIONS` (rounded, test takes the rest)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(len(members) * SPLIT_FRACTIONS[0]))
        n_val = int(round(len(members) * SPLIT_FRACTIONS[1]))
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train : n_train + n_val])
        parts["test"].append(members[n_train + n_val :])
    # sorted: the order inside a split does not depend on the class loop
    return {split: np.sort(np.concatenate(chunks)) for split, chunks in parts.items()}


@cache
def _all_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    return DATASETS[name][1]()


@cache
def _split_arrays(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, y = _all_arrays(name)
    index = _stratified_indices(y, seed=SPLIT_SEED)
    return {split: (x[idx], y[idx]) for split, idx in index.items()}


def split_indices(dataset: str) -> dict[str, np.ndarray]:
    """Sorted indices into the whole dataset of each split (they partition it)."""
    dataset_info(dataset)
    return _stratified_indices(_all_arrays(dataset)[1], seed=SPLIT_SEED)


def load_split(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(n, *input_shape)`` float32 and labels ``(n,)`` int64 of one split.

    Args:
        dataset: ``"digits"`` or ``"mnist1d"``.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DatasetError: unknown dataset or split (the message lists the valid names).
    """
    dataset_info(dataset)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid names: {', '.join(SPLITS)}")
    x, y = _split_arrays(dataset)[split]
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def split_sizes(dataset: str) -> dict[str, int]:
    """Number of samples in each split of ``dataset``."""
    dataset_info(dataset)
    return {split: len(arrays[1]) for split, arrays in _split_arrays(dataset).items()}
