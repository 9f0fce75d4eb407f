"""What every dataset module shares: the error type and the description of a dataset."""

from __future__ import annotations

from dataclasses import dataclass

from lowbit.hwsim.errors import LowbitError

__all__ = ["DatasetError", "DatasetInfo"]


class DatasetError(LowbitError):
    """An unknown dataset or split name, dataset files that cannot be found, or a file that
    is not what its name promises (the message names the file and the fix)."""


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    Attributes:
        name: registry name.
        input_shape: shape of one sample as :func:`~lowbit.models.data.load_split` returns it.
        num_classes: number of labels (0 … num_classes − 1).
        description: one line for listings.
        source: where the samples come from: the package that provides or generates them,
            or the directory where the dataset's files were found (and how it was found);
            ``None`` when the files of a file-backed dataset are not on this machine.
        official_test: ``True`` when ``test`` is the dataset's official test set and
            ``val`` is carved out of its official training set; ``False`` when all three
            splits are stratified shares of one pool.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    description: str
    source: str | None = None
    official_test: bool = False
