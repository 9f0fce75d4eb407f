"""Load hardware profiles: parse (TOML) -> validate -> build frozen dataclasses.

A profile is a built-in name (``npu-systolic-32``: a file in lowbit/hardware_profiles/), a
path to a ``.toml`` file in the same schema (lowbit/hardware_profiles/README.md), or a
SCALE-Sim ``.cfg``
(read by :func:`load_scalesim_cfg`). Every problem in a file -- syntax,
missing or unknown keys, types, ranges, cross-key rules, bad overrides -- is collected with
its key path and raised as ONE :class:`~lowbit.hwsim.errors.ProfileError` naming the file.

Example:
    >>> from lowbit.hwsim.profiles import load_profile
    >>> npu = load_profile("npu-systolic-32", overrides={"compute.rows": 64})
    >>> npu.compute.peak_macs_per_cycle(8, 8)
    2048.0
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from lowbit.hardware_profiles import PROFILE_DIR

from ._precision_models import expand_precisions
from ._profile_overrides import apply_overrides, parse_set
from ._profile_rules import validate
from ._profile_schema import OVERHEADS, SCHEMA
from ._profile_walk import did_you_mean, fill_defaults, show
from ._schema_types import Key, Table
from .errors import InputFileError, ProfileError
from .fileio import read_toml
from .profile import (
    DATAFLOWS,
    OPERANDS,
    AreaModel,
    ComputeUnit,
    HardwareProfile,
    MemoryLevel,
    Overheads,
    SparsitySupport,
    Tunable,
    WeightCompression,
)

__all__ = [
    "load_scalesim_cfg",
    "PROFILE_DIR",
    "builtin_profile_names",
    "builtin_profile_path",
    "load_profile",
    "load_profile_data",
    "parse_set",
    "profile_from_dict",
    "validate_profile_data",
]

_SUFFIXES = (".toml", ".cfg")


def builtin_profile_names() -> list[str]:
    """Names of the built-in profiles (``*.toml`` stems in lowbit/hardware_profiles/), sorted."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def builtin_profile_path(name: str) -> Path:
    """The file of built-in profile ``name``; an unknown name lists the valid ones."""
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        names = builtin_profile_names()
        raise ProfileError(
            name,
            [
                f"unknown built-in profile{did_you_mean(name, names)} (built-ins: "
                f"{', '.join(names)}; or give a path to a .toml or SCALE-Sim .cfg file)"
            ],
        )
    return path


def _locate(name_or_path: str | Path) -> tuple[Path, str | None]:
    """(file, expected profile name if it is a built-in file)."""
    text = str(name_or_path)
    as_path = Path(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path) or "/" in text or "\\" in text or bool(as_path.suffix)
    )
    if not looks_like_path:
        if (PROFILE_DIR / f"{text}.toml").is_file() or not as_path.is_file():
            return builtin_profile_path(text), text
    if as_path.suffix not in _SUFFIXES:
        raise ProfileError(
            text,
            [f"unsupported profile file type {as_path.suffix or '(none)'!r} (use .toml, or .cfg)"],
        )
    builtin = as_path.suffix == ".toml" and as_path.resolve().parent == PROFILE_DIR.resolve()
    return as_path, as_path.stem if builtin else None


def _read_toml(path: Path) -> dict:
    try:
        return read_toml(path, what="hardware profile")
    except InputFileError as exc:
        problem = "file not found" if isinstance(exc.__cause__, FileNotFoundError) else exc.problem
        raise ProfileError(str(path), [problem]) from None


def load_profile_data(name_or_path: str | Path) -> dict:
    """The raw, unvalidated TOML data of a built-in or a ``.toml`` file (for tools that
    build variants with :func:`profile_from_dict`)."""
    path, _ = _locate(name_or_path)
    if path.suffix != ".toml":
        raise ProfileError(str(path), ["raw data is only available for .toml profiles"])
    return _read_toml(path)


def validate_profile_data(data: object) -> list[str]:
    """Every problem in raw profile ``data`` as ``"key.path: message"`` (empty: valid)."""
    return validate(data)


def load_scalesim_cfg(
    path: str | Path, *, overrides: Mapping[str, object] | None = None
) -> HardwareProfile:
    """Read a SCALE-Sim ``.cfg`` file into a systolic hardware profile
    (:mod:`lowbit.hwsim.scalesim` converts it; it is validated like a TOML profile).

    Args:
        path: the ``.cfg`` file.
        overrides: key-path overrides in the TOML schema (``{"compute.rows": 64}``),
            applied before validation, as for TOML profiles.

    Raises:
        ProfileError: unreadable file, a missing or malformed key (every problem listed,
            each with its ``[section] key``), or an override the schema rejects.

    Example:
        >>> profile = load_scalesim_cfg("scale.cfg")  # doctest: +SKIP
        >>> profile.compute.rows, profile.compute.dataflow  # doctest: +SKIP
        (32, 'os')
    """
    from .scalesim import read_scalesim_cfg  # lazy: SCALE-Sim support is optional

    data = read_scalesim_cfg(path)
    return profile_from_dict(data, source=str(path), overrides=dict(overrides or {}) or None)


def load_profile(
    name_or_path: str | Path, *, overrides: Mapping[str, object] | None = None
) -> HardwareProfile:
    """Load, validate and build a hardware profile.

    Args:
        name_or_path: a built-in name (see :func:`builtin_profile_names`), a ``.toml`` file,
            or a SCALE-Sim ``.cfg`` file.
        overrides: ``{"key.path": value}`` set before validation (``--set``; see
            :func:`parse_set`), e.g. ``{"memory.dram.bandwidth_bytes_per_cycle": 32}``.

    Raises:
        ProfileError: listing every problem, each with its key path, naming the file.
    """
    path, expected_name = _locate(name_or_path)
    if path.suffix == ".cfg":
        return load_scalesim_cfg(path, overrides=dict(overrides) if overrides else None)
    if not overrides:
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if stat is not None:
            return _load_cached(str(path), stat.st_mtime_ns, stat.st_size, expected_name)
    return _make(_read_toml(path), str(path), overrides, expected_name)


@functools.lru_cache(maxsize=64)
def _load_cached(
    path: str, _mtime_ns: int, _size: int, expected_name: str | None
) -> HardwareProfile:
    # profiles are frozen, so one object per unchanged file is safe to share
    return _make(_read_toml(Path(path)), path, None, expected_name)


def profile_from_dict(
    data: Mapping, *, source: str, overrides: Mapping[str, object] | None = None
) -> HardwareProfile:
    """Validate and build a profile from raw data (a parsed TOML document, an inline
    profile in a request, a SCALE-Sim config translated to the schema).

    ``source`` names where the data came from in errors and in ``profile.source``.
    """
    if not isinstance(data, Mapping):
        raise ProfileError(source, validate(data))
    return _make(dict(data), source, overrides, None)


def _make(
    data: dict, source: str, overrides: Mapping[str, object] | None, expected_name: str | None
) -> HardwareProfile:
    problems: list[str] = []
    applied: dict[str, str] = {}
    if overrides:
        data, problems, applied = apply_overrides(data, overrides)
    else:
        data = copy.deepcopy(data)
    problems += validate(data)
    name = data.get("name")
    if expected_name is not None and isinstance(name, str) and name != expected_name:
        problems.append(
            f"name: a built-in profile's name must equal its file name "
            f'"{expected_name}", got {show(name)}'
        )
    if problems:
        raise ProfileError(source, [_annotate(p, applied) for p in problems])
    label = source
    if overrides:
        label += " with " + ", ".join(f"{k}={show(v)}" for k, v in overrides.items())
    fill_defaults(SCHEMA, data)
    return _build(data, source=label)


def _annotate(problem: str, applied: dict[str, str]) -> str:
    """Say which --set gave a bad value (``compute.rows: ... (from --set compute.rows)``)."""
    for canonical, origin in applied.items():
        if problem.startswith(canonical + ":") or problem.startswith(canonical + "["):
            return f"{problem} (from {origin})"
    return problem


def _build(d: dict, *, source: str) -> HardwareProfile:
    """Validated, default-filled data -> frozen dataclasses. Numbers become float where the
    field is a float, so ``1e9`` and ``1000000000`` build (and hash) the same."""
    c = d["compute"]
    kind = c["kind"]
    dataflow = c.get("dataflow") or DATAFLOWS[kind][0]
    compute = ComputeUnit(
        kind=kind,
        rows=c["rows"],
        cols=c["cols"],
        dataflow=dataflow,
        dataflows=tuple(c.get("dataflows") or [dataflow]),
        precisions=expand_precisions(c),
        cores=c["cores"],
    )
    memory = tuple(
        MemoryLevel(
            name=m["name"],
            size_bytes=m["size_bytes"],
            bandwidth_bytes_per_cycle=float(m["bandwidth_bytes_per_cycle"]),
            energy_pj_per_byte=float(m["energy_pj_per_byte"]),
            holds=tuple(op for op in OPERANDS if op in m["holds"]),
            off_chip=m["off_chip"],
            double_buffered=m["double_buffered"],
        )
        for m in d["memory"]
    )
    s = d["sparsity"]
    sparsity = SparsitySupport(
        nm_patterns=tuple((n, m) for n, m in s["nm_patterns"]),
        zero_skipping=s["zero_skipping"],
        index_bits_per_nonzero=float(s["index_bits_per_nonzero"]),
    )
    # tunable values keep their TOML type (ints stay ints) so they round-trip as overrides
    tunables = tuple(Tunable(key=t["key"], values=tuple(t["values"])) for t in d["tunables"])
    a = d.get("area")
    area = (
        AreaModel(
            mm2_per_pe=float(a["mm2_per_pe"]),
            mm2_per_kib_sram=float(a["mm2_per_kib_sram"]),
            mm2_per_gbps_dram=float(a["mm2_per_gbps_dram"]),
            base_mm2=float(a["base_mm2"]),
            source=a["source"],
        )
        if a is not None
        else None
    )
    wc = d.get("weight_compression")
    compression = (
        WeightCompression(
            w_bits=tuple(wc["w_bits"]),
            stored_bits_per_weight=tuple(float(b) for b in wc["stored_bits_per_weight"]),
            zero_stored_bits_per_weight=float(wc["zero_stored_bits_per_weight"]),
            bytes_per_output_channel=float(wc["bytes_per_output_channel"]),
        )
        if wc is not None
        else None
    )
    return HardwareProfile(
        name=d["name"],
        description=d["description"],
        family=d["family"],
        schema_version=d["schema_version"],
        clock_hz=float(d["clock_hz"]),
        compute=compute,
        memory=memory,
        sparsity=sparsity,
        overheads=_overheads(d["overheads"]),
        weight_storage=d["weight_storage"],
        weight_compression=compression,
        static_power_w=float(d["static_power_w"]),
        tunables=tunables,
        area=area,
        source=source,
    )


def _overheads(table: dict) -> Overheads:
    """The ``[overheads]`` record from its validated, default-filled table: each key of the
    schema (:data:`~lowbit.hwsim._profile_schema.OVERHEADS`) is the field of that name (a
    key of a rule registered beside lowbit's own: an entry of ``registered`` unless at its
    default, so a profile that leaves it out keeps its record and hash), numbers as floats,
    a table such as ``elementwise_cycles_per_element`` as sorted (key, value) pairs."""
    values: dict[str, object] = {}
    registered: dict[str, object] = {}
    own = {f.name for f in fields(Overheads)}
    for name, spec in OVERHEADS.keys.items():
        value = table[name]
        if isinstance(spec, Table):
            value = tuple((kind, float(v)) for kind, v in sorted(value.items()))
        elif spec.type == "number":
            value = float(value)
        elif isinstance(value, list):  # the record stays hashable
            value = tuple(value)
        if name in own:
            values[name] = value
        elif value != (spec.default if isinstance(spec, Key) else ()):
            registered[name] = value
    return Overheads(**values, registered=tuple(sorted(registered.items())))
