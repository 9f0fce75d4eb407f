"""``--set key.path=value`` overrides: parsing, and key paths into raw profile data.

A key path walks the schema: ``clock_hz``, ``compute.rows``, ``sparsity.zero_skipping``;
an array of tables is addressed by an entry's ``name`` (``memory.dram.size_bytes``) or by
its index (``memory.0.size_bytes``, ``compute.precision.0.energy_pj_per_mac``). Overrides
are applied to the raw data *before* validation, so a bad value is reported exactly as the
same value in the file would be.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterable, Mapping

from ._profile_schema import SCHEMA, Key, Table, TableArray
from ._profile_walk import did_you_mean
from .errors import ProfileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["BadPath", "parse_set", "resolve_path", "apply_overrides"]

# a bare word on the command line is taken as a string: --set compute.dataflow=ws
_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/+-]*$")


class BadPath(ValueError):
    """A key path that names nothing in the schema or in this profile's data."""


def _parse_value(text: str) -> object:
    if not text:
        raise ValueError("no value after '='")
    if "\n" in text or "\r" in text:
        raise ValueError("a value must be on one line")
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        if _BARE_WORD.match(text):
            return text
        raise ValueError(
            f"{text!r} is not a TOML value (numbers 64 / 1e9, true / false, "
            '"strings", arrays [1, 2])'
        ) from None
    if set(parsed) != {"v"}:
        raise ValueError(f"{text!r} is not a single TOML value")
    return parsed["v"]


def _shown(key: str) -> str:
    """A key path as printed in an error: quoted when it holds a control character (a
    newline in a key must not break the one-line error)."""
    return repr(key) if any(not c.isprintable() for c in key) else key


def parse_set(items: Iterable[str]) -> dict[str, object]:
    """Parse ``key.path=value`` strings; each value is read as a TOML value.

    A bare word that is not TOML (``ws``) is taken as a string. Raises one ProfileError
    (source ``--set``) listing every malformed item or key given twice.

    Example:
        >>> parse_set(["clock_hz=1e9", "compute.rows=64", "compute.dataflow=ws"])
        {'clock_hz': 1000000000.0, 'compute.rows': 64, 'compute.dataflow': 'ws'}
    """
    result: dict[str, object] = {}
    problems: list[str] = []
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            problems.append(f"{item!r}: expected key.path=value")
            continue
        if key in result:
            problems.append(f"{_shown(key)}: set twice")
            continue
        try:
            result[key] = _parse_value(text)
        except ValueError as exc:
            problems.append(f"{_shown(key)}: {exc}")
    if problems:
        raise ProfileError("--set", problems)
    return result


def _select(items: object, selector: str, where: str) -> int:
    """The index of the entry ``selector`` (a name or an index) in an array of tables."""
    if not isinstance(items, list) or not items:
        raise BadPath(f"{where} has no entries in this profile")
    names = [e.get("name") for e in items if isinstance(e, dict)]
    if selector in names:
        return names.index(selector)
    if selector.isdigit() and int(selector) < len(items):
        return int(selector)
    named = [n for n in names if isinstance(n, str)]
    choice = f"names: {', '.join(named)}; or " if named else ""
    raise BadPath(
        f'{where} has no entry "{selector}"{did_you_mean(selector, named)} '
        f"({choice}an index 0-{len(items) - 1})"
    )


def resolve_path(data: dict, path: str, *, create: bool = False) -> tuple[dict, str, Key, str]:
    """Find where ``path`` points in ``data``.

    Returns ``(container, key, spec, canonical)``: ``container[key]`` is the value to set,
    ``spec`` its schema entry, ``canonical`` the path as problems spell it
    (``memory[2].size_bytes``). With ``create``, missing optional tables are added to
    ``data``; without, a path the schema allows is accepted even if its table is absent.

    Raises:
        BadPath: an unknown key, or an array entry that does not exist.
    """
    parts = path.split(".")
    if any(not p for p in parts):
        raise BadPath("empty segment in key path")
    spec: Table = SCHEMA
    node: dict = data
    canonical = ""
    i = 0
    while True:
        segment = parts[i]
        if segment not in spec.keys:
            raise BadPath(f"unknown key{did_you_mean(segment, tuple(spec.keys))}")
        child = spec.keys[segment]
        canonical = f"{canonical}.{segment}" if canonical else segment
        last = i == len(parts) - 1
        if isinstance(child, Key):
            if not last:
                raise BadPath(f"{canonical} is a value, not a table")
            return node, segment, child, canonical
        if last or (isinstance(child, TableArray) and i + 1 == len(parts) - 1):
            if isinstance(child, Table):
                what, keys = "a table: name one of its keys", child.keys
            else:
                what, keys = "an array of tables: name an entry, then a key", child.table.keys
            raise BadPath(f"{canonical} is {what} ({', '.join(keys)})")
        if isinstance(child, Table):
            sub = node.get(segment)
            if sub is None:
                sub = {}
                if create:
                    node[segment] = sub
            if not isinstance(sub, dict):
                raise BadPath(f"{canonical} is not a table in this profile")
            node, spec, i = sub, child, i + 1
            continue
        index = _select(node.get(segment), parts[i + 1], canonical)
        canonical = f"{canonical}[{index}]"
        node, spec, i = node[segment][index], child.table, i + 2


def _plain(value: object) -> object:
    """Python values from numpy scalars and tuples (co-design passes both)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()  # type: ignore[union-attr]
    return value


def apply_overrides(
    data: dict, overrides: Mapping[str, object]
) -> tuple[dict, list[str], dict[str, str]]:
    """A deep copy of ``data`` with ``overrides`` set.

    Returns ``(data, problems, applied)``: ``problems`` lists bad key paths (as
    ``--set path: ...``), ``applied`` maps each canonical path to its ``--set`` text so a
    validation problem on it can say where the value came from.
    """
    data = copy.deepcopy(data)
    problems: list[str] = []
    applied: dict[str, str] = {}
    for path, value in overrides.items():
        try:
            container, key, _spec, canonical = resolve_path(data, str(path), create=True)
        except BadPath as exc:
            problems.append(f"--set {_shown(str(path))}: {exc}")
            continue
        container[key] = _plain(value)
        applied[canonical] = f"--set {path}"
    return data, problems, applied
