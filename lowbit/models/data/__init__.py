"""Offline datasets and their fixed, seeded, stratified train/val/test splits.

Nothing is downloaded. Two toy datasets ship inside packages:

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, pixel values
  0-16 scaled to [0, 1]), shaped ``(1, 8, 8)`` per sample.
- ``mnist1d``: generated locally with ``mnist1d.data.make_dataset(get_dataset_args())``
  (its default arguments, generator seed 42: 5,000 signals of length 40, already centred
  and scaled by the generator), shaped ``(1, 40)`` per sample. ``get_dataset`` is never
  called: it downloads.

Three real image datasets are read from their standard files (:mod:`._files` finds them:
``$LOWBIT_DATA`` first, set directly or by the CLI's ``--data-dir``, then the Debian
package), as float32 ``pixel / 255`` in [0, 1]:

- ``fashion-mnist``: Fashion-MNIST, 70,000 28×28 grey images, ``(1, 28, 28)``; the four IDX
  files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each plain or ``.gz``) in ``$LOWBIT_DATA/fashion-mnist``,
  ``fashion_mnist``, ``FashionMNIST/raw`` (torchvision's layout) or ``$LOWBIT_DATA`` itself;
  else in ``/usr/share/datasets/fashion-mnist`` (``apt-get install -y dataset-fashion-mnist``).
- ``mnist``: MNIST, the same files in ``$LOWBIT_DATA/mnist``, ``MNIST/raw`` or
  ``$LOWBIT_DATA`` itself (no Debian package). Files directly in ``$LOWBIT_DATA`` count for
  both MNIST and Fashion-MNIST: keep them in their subdirectories when you have both.
- ``cifar10``: CIFAR-10, 60,000 32×32 colour images, ``(3, 32, 32)``; the python batches
  (``data_batch_1`` … ``data_batch_5``, ``test_batch``) in
  ``$LOWBIT_DATA/cifar-10-batches-py``, ``cifar10/cifar-10-batches-py`` or ``$LOWBIT_DATA``
  itself, unpickled by an unpickler that only builds plain data (:mod:`._cifar`).

The toy datasets are split once, stratified by label with a fixed seed, 60/20/20. The real
ones keep their official test set as ``test``; ``val`` is a stratified, seeded part of the
official training set (:data:`VAL_PER_CLASS` images of each class, or a tenth of a class with
fewer than ten times that: small copies) and ``train`` the rest of it:

=================  ======  =====  ======
dataset            train   val    test
=================  ======  =====  ======
``digits``         1,078   359    360
``mnist1d``        3,000   1,000  1,000
``fashion-mnist``  55,000  5,000  10,000
``mnist``          55,000  5,000  10,000
``cifar10``        45,000  5,000  10,000
=================  ======  =====  ======

Arrays are read on first use and kept in memory (``functools.cache``; the real datasets as
uint8, keyed by their files' paths, sizes and modification times) and every call of
:func:`load_split` returns fresh tensors, so callers may modify what they get.

Example:
    >>> x, y = load_split("digits", "test")
    >>> tuple(x.shape), x.dtype, y.dtype
    ((360, 1, 8, 8), torch.float32, torch.int64)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import torch

from ._base import DatasetError, DatasetInfo
from ._cifar import BATCHES, read_cifar10
from ._files import DATA_ENV, FileLayout, locate
from ._idx import read_idx_pair

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "DEBIAN_FASHION_MNIST",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "SPLIT_SEED",
    "VAL_PER_CLASS",
    "DatasetError",
    "DatasetInfo",
    "dataset_info",
    "load_split",
    "split_indices",
    "split_sizes",
]

#: split names, in the order the samples are carved out
SPLITS = ("train", "val", "test")
#: fractions of every class in train / val / test (datasets without an official test set)
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
#: seed of the stratified split (fixed: every run and every helper sees the same split)
SPLIT_SEED = 0
#: images of each class moved from the official training set to ``val``
VAL_PER_CLASS = 500
#: where Debian's ``dataset-fashion-mnist`` installs the IDX files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_SET_DIR = f"set {DATA_ENV}=DIR (or pass --data-dir DIR)"

_Arrays = tuple[np.ndarray, np.ndarray]
_Official = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _digits_arrays() -> _Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64)


def _mnist1d_arrays() -> _Arrays:
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


def _read_idx_dataset(paths: tuple[Path, ...]) -> _Official:
    train_images, train_labels, test_images, test_labels = paths
    x_train, y_train = read_idx_pair(
        train_images, train_labels, image_shape=(28, 28), num_classes=10
    )
    x_test, y_test = read_idx_pair(test_images, test_labels, image_shape=(28, 28), num_classes=10)
    return x_train, y_train, x_test, y_test


@dataclass(frozen=True, slots=True)
class _FileDataset:
    """A dataset read from files: where they are and how to read them (uint8 images)."""

    layout: FileLayout
    read: Callable[[tuple[Path, ...]], _Official]


_FILE_DATASETS: dict[str, _FileDataset] = {
    "fashion-mnist": _FileDataset(
        FileLayout(
            dataset="fashion-mnist",
            files=_IDX_FILES,
            gz=True,
            subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
            debian_dir=DEBIAN_FASHION_MNIST,
            debian_package="dataset-fashion-mnist",
            fix="apt-get install -y dataset-fashion-mnist, or put them in DIR/fashion-mnist/ "
            f"and {_SET_DIR}",
        ),
        _read_idx_dataset,
    ),
    "mnist": _FileDataset(
        FileLayout(
            dataset="mnist",
            files=_IDX_FILES,
            gz=True,
            subdirs=("mnist", "MNIST/raw"),
            fix=f"put them in DIR/mnist/ and {_SET_DIR} (MNIST has no Debian package)",
        ),
        _read_idx_dataset,
    ),
    "cifar10": _FileDataset(
        FileLayout(
            dataset="cifar10",
            files=BATCHES,
            gz=False,
            subdirs=("cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
            fix="extract cifar-10-python.tar.gz in DIR (it holds cifar-10-batches-py/) and "
            + _SET_DIR,
        ),
        read_cifar10,
    ),
}


def _files_loader(name: str) -> Callable[[], _Arrays]:
    def load() -> _Arrays:
        x, y, _ = _all_arrays(name, _key(name))
        return x.astype(np.float32) / np.float32(255), y.copy()

    return load


#: dataset name -> (info, loader of all samples: float32 inputs and int64 labels; for the
#: real datasets the official training set, then the official test set)
DATASETS: dict[str, tuple[DatasetInfo, Callable[[], _Arrays]]] = {
    "digits": (
        DatasetInfo(
            "digits",
            (1, 8, 8),
            10,
            "scikit-learn 8x8 handwritten digits (1,797)",
            source="scikit-learn (bundled)",
        ),
        _digits_arrays,
    ),
    "mnist1d": (
        DatasetInfo(
            "mnist1d",
            (1, 40),
            10,
            "MNIST-1D signals of length 40 (5,000, generated)",
            source="mnist1d package (generated, seed 42)",
        ),
        _mnist1d_arrays,
    ),
    "fashion-mnist": (
        DatasetInfo(
            "fashion-mnist",
            (1, 28, 28),
            10,
            "Fashion-MNIST 28x28 grey clothing images (60,000 + 10,000 test)",
            official_test=True,
        ),
        _files_loader("fashion-mnist"),
    ),
    "mnist": (
        DatasetInfo(
            "mnist",
            (1, 28, 28),
            10,
            "MNIST 28x28 handwritten digits (60,000 + 10,000 test)",
            official_test=True,
        ),
        _files_loader("mnist"),
    ),
    "cifar10": (
        DatasetInfo(
            "cifar10",
            (3, 32, 32),
            10,
            "CIFAR-10 32x32 colour images (50,000 + 10,000 test)",
            official_test=True,
        ),
        _files_loader("cifar10"),
    ),
}


def _registered(name: str) -> DatasetInfo:
    entry = DATASETS.get(name)
    if entry is None:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return entry[0]


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; an unknown name raises :class:`DatasetError`.

    For the real datasets ``source`` is where their files are found now, or ``None`` when
    they are not found (:func:`load_split` then says why and how to fix it).
    """
    info = _registered(name)
    if name not in _FILE_DATASETS:
        return info
    try:
        found = locate(_FILE_DATASETS[name].layout)
    except DatasetError:
        return info
    return replace(info, source=found.source)


def _key(name: str) -> tuple:
    """What identifies the samples of ``name``: ``()`` for a toy dataset, else its files'
    paths, sizes and modification times (locating them: may raise :class:`DatasetError`)."""
    if name not in _FILE_DATASETS:
        return ()
    return locate(_FILE_DATASETS[name].layout).key()


@cache
def _all_arrays(name: str, key: tuple = ()) -> tuple[np.ndarray, np.ndarray, int]:
    """Every sample of ``name`` (toy datasets: float32; real ones: uint8, official train
    then test), the labels, and how many samples at the end are the official test set."""
    if name not in _FILE_DATASETS:
        x, y = DATASETS[name][1]()
        return x, y, 0
    x_train, y_train, x_test, y_test = _FILE_DATASETS[name].read(tuple(Path(p) for p, *_ in key))
    return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test]), len(y_test)


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


def _official_indices(labels: np.ndarray, n_test: int, *, seed: int) -> dict[str, np.ndarray]:
    """``test``: the last ``n_test`` samples; ``val``: :data:`VAL_PER_CLASS` random samples
    of each class of the others (a tenth of a smaller class); ``train``: the rest."""
    rng = np.random.default_rng(seed)
    n_train = len(labels) - n_test
    val = [np.empty(0, dtype=np.int64)]
    for label in np.unique(labels[:n_train]):
        members = rng.permutation(np.flatnonzero(labels[:n_train] == label))
        val.append(members[: min(VAL_PER_CLASS, len(members) // 10)])
    val_index = np.sort(np.concatenate(val))
    keep = np.ones(n_train, dtype=bool)
    keep[val_index] = False
    return {
        "train": np.flatnonzero(keep),
        "val": val_index,
        "test": np.arange(n_train, len(labels), dtype=np.int64),
    }


@cache
def _split_index(name: str, key: tuple = ()) -> dict[str, np.ndarray]:
    _, labels, n_test = _all_arrays(name, key)
    if n_test:
        return _official_indices(labels, n_test, seed=SPLIT_SEED)
    return _stratified_indices(labels, seed=SPLIT_SEED)


def split_indices(dataset: str) -> dict[str, np.ndarray]:
    """Sorted indices of each split into the whole dataset (they partition it).

    The whole dataset is what ``DATASETS[dataset][1]()`` returns: for the real datasets the
    official training set followed by the official test set, so ``test`` is the last
    10,000 indices and ``train`` ∪ ``val`` the official training set.
    """
    _registered(dataset)
    return {split: index.copy() for split, index in _split_index(dataset, _key(dataset)).items()}


def load_split(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(n, *input_shape)`` float32 and labels ``(n,)`` int64 of one split.

    Args:
        dataset: a :data:`DATASETS` name (``"digits"``, ``"mnist1d"``, ``"fashion-mnist"``,
            ``"mnist"``, ``"cifar10"``).
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DatasetError: unknown dataset or split (the message lists the valid names); the
            dataset's files are missing (the message says where they were looked for and
            how to install them) or defective (the message names the file).
    """
    _registered(dataset)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid names: {', '.join(SPLITS)}")
    key = _key(dataset)
    x, y, _ = _all_arrays(dataset, key)
    index = _split_index(dataset, key)[split]
    inputs = x[index]  # fancy indexing: a fresh array
    if inputs.dtype == np.uint8:
        inputs = inputs.astype(np.float32)
        inputs /= np.float32(255)
    return torch.from_numpy(inputs), torch.from_numpy(y[index])


def split_sizes(dataset: str) -> dict[str, int]:
    """Number of samples in each split of ``dataset``."""
    _registered(dataset)
    return {split: len(index) for split, index in _split_index(dataset, _key(dataset)).items()}
