"""File I/O shared by every package: atomic writes, and the one reader of input files.

Writes. A file that matters (a checkpoint, a run directory's CSV/JSON, an export, a report) is
written to a temp file beside its destination, flushed to disk, then ``os.replace``d over
it: a reader sees the old file or the new one, never half of one, even if the writer is
killed. The file gets the permissions a plain ``open`` would give it (0666 minus the umask),
not ``mkstemp``'s private 0600.

Reads. Every JSON or TOML file a user can hand to lowbit (plans, deployment configs, run
summaries, profiles, service state) goes through :func:`read_text`, :func:`read_json` or
:func:`read_toml`: a missing, unreadable, too large, non-UTF-8, malformed or too deeply
nested file raises one :class:`~lowbit.hwsim.errors.InputFileError` naming the file, and JSON
numbers are finite (``NaN``, ``Infinity`` and ``1e999`` are refused), so nothing downstream
sees a traceback-provoking or non-finite value.

Outputs. :func:`check_output_dir` and :func:`check_output_file` say whether a path can be
written *before* long work starts (training, benchmarks, a search), without creating it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import InputFileError, OutputPathError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_NESTING",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "loads_json",
    "read_json",
    "read_text",
    "read_toml",
]

#: largest input file read (a run's summary.json of thousands of trials is a few MB)
MAX_INPUT_BYTES = 64 * 2**20
#: deepest nesting of arrays/objects accepted (lowbit's own files nest at most ~6 levels)
MAX_NESTING = 64


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a binary temp file beside ``path``, then replace ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_text(path: str | Path, *, what: str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of the file ``path`` (``what`` names it in errors, e.g. "plan").

    Raises:
        InputFileError: missing, unreadable, a directory, larger than ``max_bytes`` or not
            UTF-8 text.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputFileError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise InputFileError(path, f"is a directory, not a {what} file") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read {what}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise InputFileError(path, f"larger than {max_bytes // 2**20} MiB: not a {what} file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(path, f"not a UTF-8 text file (not a {what})") from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _number_problem(exc: ValueError) -> str:
    """The reason a parser refused a number, without Python's advice on interpreter limits."""
    text = str(exc)
    if "Exceeds the limit" in text and "digits" in text:
        return "an integer with thousands of digits"
    return text


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows (use a finite number)")


def _nesting(value: object) -> int:
    """The nesting depth of lists/dicts in ``value``, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth > MAX_NESTING:
                break
            stack.extend((child, depth + 1) for child in item)
    return deepest


def loads_json(text: str, *, source: str | Path, what: str) -> Any:
    """Parse JSON ``text`` read from ``source``: finite numbers only, nesting at most
    :data:`MAX_NESTING` levels. Raises :class:`InputFileError` naming ``source``."""
    try:
        data = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputFileError(source, f"not valid JSON ({what}): {exc}") from None
    except RecursionError:
        raise InputFileError(source, f"JSON nested too deeply to be a {what}") from None
    except ValueError as exc:  # a non-finite or over-long number
        raise InputFileError(source, f"not valid JSON ({what}): {_number_problem(exc)}") from None
    if _nesting(data) > MAX_NESTING:
        raise InputFileError(source, f"JSON nested too deeply to be a {what}")
    return data


def read_json(path: str | Path, *, what: str, max_bytes: int = MAX_INPUT_BYTES) -> Any:
    """The JSON document in the file ``path`` (see :func:`read_text` and :func:`loads_json`)."""
    return loads_json(read_text(path, what=what, max_bytes=max_bytes), source=path, what=what)


def read_toml(path: str | Path, *, what: str, max_bytes: int = MAX_INPUT_BYTES) -> dict:
    """The TOML table in the file ``path``. Non-finite floats (``inf``, ``nan``) are kept for
    the caller's schema to report with their key path."""
    text = read_text(path, what=what, max_bytes=max_bytes)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if "overwrite" in message or "twice" in message:
            message += " -- a key or table given twice?"
        raise InputFileError(path, f"not valid TOML: {message}") from None
    except RecursionError:
        raise InputFileError(path, f"TOML nested too deeply to be a {what}") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise InputFileError(path, f"not valid TOML: {_number_problem(exc)}") from None
    if _nesting(data) > MAX_NESTING:
        raise InputFileError(path, f"TOML nested too deeply to be a {what}")
    return data


def _check_creatable(path: Path, label: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a writable directory."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{label}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{label}: cannot create it, {ancestor} is not writable")


def check_output_dir(path: str | Path, *, flag: str) -> Path:
    """``path`` as a directory lowbit may create or write into; ``flag`` names it in errors
    (``--out``). Nothing is created.

    Raises:
        OutputPathError: an empty path, an existing file, or no write permission.
    """
    if str(path) == "":
        raise OutputPathError(f"{flag}: empty path (name a directory)")
    path = Path(path)
    label = f"{flag} {path}"
    if path.exists():
        if not path.is_dir():
            raise OutputPathError(f"{label}: is a file, not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{label}: directory is not writable")
    else:
        _check_creatable(path, label)
    return path


def check_output_file(path: str | Path, *, flag: str) -> Path:
    """``path`` as a file lowbit may create or replace (see :func:`check_output_dir`)."""
    if str(path) == "":
        raise OutputPathError(f"{flag}: empty path (name a file)")
    path = Path(path)
    label = f"{flag} {path}"
    if path.is_dir():
        raise OutputPathError(f"{label}: is a directory, not a file")
    if path.exists():
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            raise OutputPathError(f"{label}: not writable")
    else:
        _check_creatable(path, label)
    return path
