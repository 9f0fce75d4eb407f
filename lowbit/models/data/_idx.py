"""IDX files (the MNIST and Fashion-MNIST format), plain or gzip-compressed, checked.

An IDX file is a 4-byte big-endian magic number — two zero bytes, a type code (``0x08``:
unsigned bytes) and the number of dimensions —, one big-endian uint32 per dimension, then
the values, row-major. Images are ``0x00000803`` (count, rows, columns), labels
``0x00000801`` (count). Every defect (not gzip, truncated, wrong magic number or shape,
extra bytes, labels not matching the images, a label out of range) is a
:class:`~lowbit.models.data.DatasetError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ._base import DatasetError

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "read_idx", "read_idx_pair"]

#: magic number of unsigned-byte images (3 dimensions) and labels (1 dimension)
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

_REFETCH = "download it again (or reinstall the package it came from)"


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when its name ends in ``.gz``."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: not a valid gzip file ({exc}); {_REFETCH}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def read_idx(path: Path, *, magic: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """The uint8 array stored in IDX file ``path`` (read-only).

    Args:
        path: the file (``.gz``: gzip-compressed).
        magic: the expected magic number (:data:`IMAGES_MAGIC`, :data:`LABELS_MAGIC`).
        shape: the expected dimensions after the first (the count), e.g. ``(28, 28)``.

    Raises:
        DatasetError: the file is unreadable, not valid gzip, or not that IDX array.
    """
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(
            f"{path}: truncated: {len(raw)} bytes, shorter than the {header}-byte IDX header; "
            f"{_REFETCH}"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetError(
            f"{path}: wrong magic number 0x{found:08x} (expected 0x{magic:08x}: unsigned-byte "
            f"IDX with {ndim} dimension{'s' if ndim > 1 else ''}); is it the right file?"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if dims[1:] != tuple(shape):
        raise DatasetError(
            f"{path}: samples are {'x'.join(map(str, dims[1:]))}, expected "
            f"{'x'.join(map(str, shape))}; is it the right dataset?"
        )
    need = math.prod(dims)
    have = len(raw) - header
    if have < need:
        raise DatasetError(
            f"{path}: truncated: its header promises {dims[0]:,} samples ({need:,} bytes) but "
            f"only {have:,} bytes follow; {_REFETCH}"
        )
    if have > need:
        extra = have - need
        raise DatasetError(
            f"{path}: {extra:,} byte{'s' if extra > 1 else ''} after the {dims[0]:,} samples "
            f"its header promises; {_REFETCH}"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=need, offset=header).reshape(dims)


def read_idx_pair(
    images: Path, labels: Path, *, image_shape: tuple[int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 1, rows, cols)`` uint8 and labels ``(n,)`` int64 from two IDX files.

    Raises:
        DatasetError: either file is defective, the counts differ, or a label is not in
            ``0 … num_classes − 1``.
    """
    x = read_idx(images, magic=IMAGES_MAGIC, shape=image_shape)
    y = read_idx(labels, magic=LABELS_MAGIC)
    if len(y) != len(x):
        raise DatasetError(
            f"{labels}: {len(y):,} labels but {images.name} has {len(x):,} images; both files "
            "must come from the same copy of the dataset"
        )
    bad = np.flatnonzero(y >= num_classes)
    if len(bad):
        raise DatasetError(
            f"{labels}: label {int(y[bad[0]])} at index {int(bad[0])} is outside "
            f"0-{num_classes - 1}; is it the right file?"
        )
    return x.reshape(len(x), 1, *image_shape), y.astype(np.int64)
