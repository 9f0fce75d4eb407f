"""The building blocks of the profile schema: :class:`Key`, :class:`Table`, :class:`TableArray`.

A module of their own so the parts of a profile that own their keys -- precision models
(:mod:`lowbit.hwsim._precision_models`), cost rules (:mod:`lowbit.hwsim._cost_rules`) --
can declare them without importing the assembled schema (:mod:`lowbit.hwsim._profile_schema`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Key", "Table", "TableArray", "VALID_BITS", "MIN_CLOCK_HZ", "MIN_RATE"]

#: integer bit-widths a precision mode may name; 32 means float (as in hwsim.workload).
VALID_BITS = tuple(range(1, 17)) + (32,)
#: slowest clock accepted (Hz) and lowest rate (bytes or MACs per cycle): physical floors
MIN_CLOCK_HZ = 1e3
MIN_RATE = 1e-3


@dataclass(frozen=True, slots=True)
class Key:
    """One scalar or list key.

    ``type`` is one of: ``int``, ``number`` (int or float), ``str``, ``bool``, ``bits``
    (1-16 or 32), ``list[str]``, ``list[number]``, ``list[bits]``, ``list[pair]`` (a list
    of ``[n, m]`` integer pairs). Bounds apply to numbers and to list items.
    """

    type: str
    required: bool = True
    default: object = None
    low: float | None = None
    low_open: bool = False  # True: must be > low; False: must be >= low
    high: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""


@dataclass(frozen=True, slots=True)
class Table:
    """A table of keys; ``keys`` is any mapping (``[compute]``'s is a live view of the
    precision-model registry)."""

    keys: Mapping[str, Key | Table | TableArray]
    required: bool = True


@dataclass(frozen=True, slots=True)
class TableArray:
    """An array of tables (``[[memory]]``); ``named`` arrays are addressed by ``name`` in
    override paths as well as by index."""

    table: Table
    required: bool = True
    min_items: int = 1
    named: bool = False
