"""The error of this package (kept apart so that ``import lowbit.results`` needs no pandas)."""

from __future__ import annotations

from lowbit.hwsim.errors import LowbitError

__all__ = ["ResultsError"]


class ResultsError(LowbitError):
    """A run or sweep directory cannot be loaded (missing, unfinished or damaged files);
    the message is one line naming the file and what is wrong."""
