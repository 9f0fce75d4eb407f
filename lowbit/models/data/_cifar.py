"""CIFAR-10's python batches (``cifar-10-batches-py``), unpickled safely and checked.

Each batch is a pickled dict with ``b"data"``, a uint8 array ``(N, 3072)`` (a row is one
32×32 colour image, channel-major: 1,024 red, 1,024 green, 1,024 blue values, each plane
row-major) and ``b"labels"``, N ints in 0-9. The files are user files, so they are read with
an unpickler that only builds what such a dict holds — builtins (dict, list, bytes, str,
int) and numpy arrays — and refuses every other global (no code can run). Any defect is a
:class:`~lowbit.models.data.DatasetError` naming the file.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ._base import DatasetError

__all__ = ["BATCHES", "read_batch", "read_cifar10"]

#: the batch files: five training batches, then the test batch
BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")

_ROW = 3 * 32 * 32
_REFETCH = "download cifar-10-python.tar.gz again and extract it"

try:  # numpy >= 2 keeps the implementation in numpy._core; old pickles name numpy.core
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]


def _latin1(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it for bytes: latin-1 text only."""
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


#: (module, name) -> object: every global a pickled dict of bytes, lists and arrays uses
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}
# constructors of plain data (protocol 2 names the builtins module __builtin__)
_ALLOWED.update(
    {
        (module, kind.__name__): kind
        for module in ("builtins", "__builtin__")
        for kind in (bytes, bytearray, dict, list, tuple, set, frozenset, str, int, float, bool)
    }
)


class _Refused(Exception):
    """A global outside :data:`_ALLOWED`."""


class _DataOnly(pickle.Unpickler):
    """An unpickler that resolves only the globals in :data:`_ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found


def _entry(batch: dict, key: str) -> Any:
    """``batch[b"key"]`` (Python 2 pickles) or ``batch["key"]``; ``None`` when absent."""
    return batch.get(key.encode(), batch.get(key))


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` int64 of one batch file.

    Raises:
        DatasetError: unreadable, not a pickle, a refused global, or not a CIFAR-10 batch.
    """
    try:
        with path.open("rb") as stream:
            batch = _DataOnly(stream, encoding="bytes").load()
    except _Refused as exc:
        raise DatasetError(
            f"{path}: refused to unpickle {exc} (a CIFAR-10 batch holds only a dict of bytes, "
            f"lists and a uint8 array); {_REFETCH}"
        ) from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # a corrupt pickle fails in many ways; all mean the same here
        raise DatasetError(
            f"{path}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); {_REFETCH}"
        ) from None
    if not isinstance(batch, dict):
        raise DatasetError(
            f"{path}: holds a {type(batch).__name__}, not the dict of a CIFAR-10 batch; {_REFETCH}"
        )
    data, labels = _entry(batch, "data"), _entry(batch, "labels")
    if data is None or labels is None:
        raise DatasetError(
            f"{path}: no 'data' and 'labels' entries (CIFAR-100 has 'fine_labels'); is it a "
            "CIFAR-10 batch?"
        )
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2) or (
        data.shape[1] != _ROW
    ):
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise DatasetError(
            f"{path}: 'data' is {what}, expected uint8 of shape (N, {_ROW}); {_REFETCH}"
        )
    try:
        y = np.asarray(labels)
    except Exception:  # ragged or exotic content
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{path}: 'labels' is not a list of ints; {_REFETCH}")
    if len(y) != len(data):
        raise DatasetError(f"{path}: {len(y):,} labels for {len(data):,} images; {_REFETCH}")
    bad = np.flatnonzero((y < 0) | (y > 9))
    if len(bad):
        raise DatasetError(
            f"{path}: label {int(y[bad[0]])} at index {int(bad[0])} is outside 0-9; is it a "
            "CIFAR-10 batch?"
        )
    return np.ascontiguousarray(data).reshape(len(data), 3, 32, 32), y.astype(np.int64)


def read_cifar10(
    paths: tuple[Path, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training images and labels (the five batches in order), then the test batch's, from
    the files of :data:`BATCHES` (in that order)."""
    batches = [read_batch(path) for path in paths]
    x_train = np.concatenate([x for x, _ in batches[:-1]])
    y_train = np.concatenate([y for _, y in batches[:-1]])
    return x_train, y_train, *batches[-1]
