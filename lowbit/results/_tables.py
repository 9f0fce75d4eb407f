"""CSV files of a run directory as typed DataFrames, checked cell by cell.

A table is read with :func:`lowbit.hwsim.fileio.read_text` (the one reader of input files:
missing, unreadable, too large or non-UTF-8 files are one error naming the file), parsed
with the standard ``csv`` module in strict mode, and every cell is converted to its
column's kind (:data:`KINDS`). Every problem (a missing required column, a row with too
few or too many cells, a cell that is not what its column holds, an unterminated quote)
is collected with its row number into one :class:`ResultsError` naming the file.

Columns a table gained after its first release are optional: an older file without them
still loads, the column is then filled with the column's missing value (or a stated
default, e.g. ``rung`` 1 for trials written before rungs).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lowbit.hwsim.errors import InputFileError
from lowbit.hwsim.fileio import read_text

from .errors import ResultsError

__all__ = [
    "KINDS",
    "Column",
    "ResultsError",
    "empty_table",
    "frame",
    "params_frame",
    "read_table",
    "values_column",
]

#: at most this many problems are listed in one error (the rest are counted)
MAX_PROBLEMS = 5


def _text(raw: str) -> str | None:
    return raw if raw != "" else None


def _int(raw: str) -> int | None:
    if raw == "":
        return None
    value = float(raw)  # "3" and "3.0" (a column pandas once wrote as float) are both 3
    if not value.is_integer():
        raise ValueError(f"{raw!r} is not an integer")
    return int(value)


def _float(raw: str) -> float:
    return float(raw) if raw != "" else math.nan


def _bool(raw: str) -> bool | None:
    if raw == "":
        return None
    if raw not in ("True", "False"):
        raise ValueError(f"{raw!r} is not True or False")
    return raw == "True"


def _json_object(raw: str) -> dict[str, Any]:
    if raw == "":
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _time(raw: str) -> pd.Timestamp | None:
    if raw == "":
        return None
    stamp = pd.Timestamp(raw)
    if stamp.tzinfo is None:
        raise ValueError(f"{raw!r} has no time zone")
    return stamp.tz_convert("UTC")


#: kind -> (cell parser, pandas dtype of the column)
KINDS: dict[str, tuple[Any, str]] = {
    "text": (_text, "string"),
    "int": (_int, "Int64"),
    "float": (_float, "float64"),
    "bool": (_bool, "boolean"),
    "json": (_json_object, "object"),
    "time": (_time, "datetime64[us, UTC]"),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table: its name in the file, its kind (:data:`KINDS`), whether
    every file has it, and the value of rows of older files without it."""

    name: str
    kind: str
    required: bool = False
    default: Any = None


def frame(columns: dict[str, list[Any]], kinds: dict[str, str]) -> pd.DataFrame:
    """A DataFrame of parsed values, each column in the dtype of its kind."""
    data = {}
    for name, values in columns.items():
        dtype = KINDS[kinds[name]][1]
        if dtype == "object":
            data[name] = pd.Series(values, dtype=object)
        elif dtype.startswith("datetime"):
            data[name] = pd.Series(pd.to_datetime(values, utc=True), dtype=dtype)
        elif dtype == "float64":
            data[name] = pd.Series(np.asarray(values, dtype=float))
        else:
            data[name] = pd.Series(pd.array(values, dtype=dtype))
    return pd.DataFrame(data)


def empty_table(schema: Sequence[Column]) -> pd.DataFrame:
    """A table of ``schema`` without rows (for a file that is not there)."""
    return frame({c.name: [] for c in schema}, {c.name: c.kind for c in schema})


def _problem_line(path: Path, problems: list[str], text: str) -> str:
    shown = problems[:MAX_PROBLEMS]
    more = len(problems) - len(shown)
    tail = f" (and {more} more)" if more else ""
    cut = "" if text.endswith("\n") else "; the file ends mid-line (truncated?)"
    return f"{path}: " + "; ".join(shown) + tail + cut


def read_table(
    path: Path, schema: Sequence[Column], *, what: str, others: str | None = None
) -> pd.DataFrame:
    """The CSV file ``path`` as a DataFrame with the columns of ``schema`` (in its order),
    each of its kind's dtype; columns the schema does not name are left out, or with
    ``others`` (a kind) kept after them in the file's order.

    Raises:
        ResultsError: the file is missing, unreadable or damaged (every problem listed, up
            to :data:`MAX_PROBLEMS`, with row numbers as a spreadsheet shows them).
    """
    try:
        text = read_text(path, what=what)
    except InputFileError as exc:
        raise ResultsError(str(exc)) from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise ResultsError(_problem_line(path, [f"not a valid CSV file ({exc})"], text)) from None
    if not rows:
        raise ResultsError(f"{path}: empty file, not a {what} (no header row)")
    header, body = rows[0], [r for r in rows[1:] if r]
    problems = [
        f"column {c.name!r} missing (not a {what}?)"
        for c in schema
        if c.required and c.name not in header
    ]
    if problems:
        raise ResultsError(_problem_line(path, problems, text))
    if others is not None:
        named = {c.name for c in schema}
        schema = [*schema, *(Column(h, others) for h in header if h not in named)]
    index = {name: i for i, name in enumerate(header)}
    columns: dict[str, list[Any]] = {c.name: [] for c in schema}
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            problems.append(f"row {number}: {len(row)} cells, the header has {len(header)}")
            continue
        for c in schema:
            if c.name not in index:
                columns[c.name].append(c.default)
                continue
            raw = row[index[c.name]]
            try:
                columns[c.name].append(KINDS[c.kind][0](raw))
            except (ValueError, TypeError, RecursionError):
                problems.append(f"row {number}: {c.name} {raw[:40]!r} is {_EXPECTED[c.kind]}")
                columns[c.name].append(None)
    if problems:
        raise ResultsError(_problem_line(path, problems, text))
    return frame(columns, {c.name: c.kind for c in schema})


_EXPECTED = {
    "text": "not text",
    "int": "not an integer",
    "float": "not a number",
    "bool": "not True or False",
    "json": "not a JSON object",
    "time": "not an ISO 8601 time with a zone",
}


def values_column(values: Sequence[Any]) -> Any:
    """Python values as one column (None: missing): all integers as Int64, booleans as
    boolean, other numbers as float64, anything else as string."""
    given = [v for v in values if v is not None]
    if given and all(isinstance(v, bool) for v in given):
        return pd.array(values, dtype="boolean")
    if given and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
        return pd.array(values, dtype="Int64")
    if given and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in given):
        return np.asarray([math.nan if v is None else v for v in values], dtype=float)
    return pd.array([None if v is None else str(v) for v in values], dtype="string")


def params_frame(params: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One column per parameter name (sorted), missing where a row has no such parameter
    (:func:`values_column` gives the dtypes)."""
    names = sorted({name for p in params for name in p})
    data = {name: values_column([p.get(name) for p in params]) for name in names}
    return pd.DataFrame(data, index=range(len(params)))
