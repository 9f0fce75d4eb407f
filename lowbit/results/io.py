"""Tables to and from files: parquet (pyarrow) and CSV, written atomically.

A parquet file holds a table exactly as its DataFrame (dtypes included: ``Int64``,
``boolean``, ``string``, UTC timestamps), so reading it back gives an equal DataFrame.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lowbit.hwsim.fileio import MAX_INPUT_BYTES, atomic_write, atomic_write_text

from ._tables import ResultsError

__all__ = ["FORMATS", "read_parquet", "write_table"]

#: file formats of :func:`write_table`
FORMATS = ("csv", "parquet")


def write_table(table: pd.DataFrame, path: str | Path, *, format: str) -> Path:
    """Write ``table`` to ``path`` as ``format`` ("csv" or "parquet"), atomically (the
    file is whole or not there); returns the path.

    Raises:
        ResultsError: an unknown format.
    """
    if format not in FORMATS:
        raise ResultsError(f"unknown table format {format!r} (valid: {', '.join(FORMATS)})")
    if format == "csv":
        return atomic_write_text(path, table.to_csv(index=False, lineterminator="\n"))
    return atomic_write(path, lambda handle: table.to_parquet(handle, index=False))


def read_parquet(path: str | Path, *, what: str) -> pd.DataFrame:
    """The parquet file ``path`` (a ``what``, named in errors) as a DataFrame.

    Raises:
        ResultsError: missing, too large, or not a readable parquet file.
    """
    import pyarrow

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if size > MAX_INPUT_BYTES:
        raise ResultsError(f"{path}: larger than {MAX_INPUT_BYTES // 2**20} MiB: not a {what}")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ResultsError(f"{path}: not a readable parquet file ({what}): {reason}") from None
