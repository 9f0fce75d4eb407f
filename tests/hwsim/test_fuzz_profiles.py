"""Property-based fuzzing of the profile loader (issue 15): whatever a profile file, its
parsed data or a ``--set`` override holds, loading gives a LowbitError (one message) or a
profile that simulates with finite, non-negative numbers -- never another exception.

The examples are derandomized (the same ones every run, so CI cannot fail by chance) and
bounded (``max_examples``), a few seconds each.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fuzzkit import VALUES, fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st

from lowbit.hwsim import simulate
from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profiles import (
    builtin_profile_names,
    builtin_profile_path,
    load_profile,
    load_profile_data,
    parse_set,
    profile_from_dict,
)
from lowbit.hwsim.workloads import builtin_workload

FUZZ = fuzz_settings(250)
NAMES = sorted(builtin_profile_names())
WORKLOAD = builtin_workload("resnet18")


def _loads_or_refuses(load, *, one_line: bool = True) -> None:
    """``load()`` raises a LowbitError (of one line, unless ``one_line`` is False), or gives
    a profile whose simulation is finite."""
    try:
        profile = load()
    except LowbitError as exc:
        assert str(exc) and not (one_line and "\n" in str(exc).strip()), str(exc)
        event("refused")
        return
    try:
        result = simulate(WORKLOAD, profile)
    except LowbitError:
        event("loaded, simulation refused")
        return  # e.g. no precision mode runs the workload's bits
    event("loaded and simulated")
    for value in (result.total_cycles, result.latency_s, result.energy_j):
        assert math.isfinite(value) and value >= 0, (value, profile)


def _leaves(node, path=()):
    """Every key path of a parsed profile, tables and arrays included."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "profile.toml"


@FUZZ
@given(
    name=st.sampled_from(NAMES),
    at=st.floats(min_value=0, max_value=1),
    cut=st.integers(min_value=0, max_value=40),
    insert=st.one_of(st.text(max_size=24), st.binary(max_size=8)),
)
def test_an_edited_profile_file_loads_or_is_refused(scratch, name, at, cut, insert):
    text = builtin_profile_path(name).read_bytes()
    pos = int(at * len(text))
    added = insert.encode("utf-8", "surrogatepass") if isinstance(insert, str) else insert
    scratch.write_bytes(text[:pos] + added + text[pos + cut :])
    _loads_or_refuses(lambda: load_profile(scratch))


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.data())
def test_a_profile_with_any_value_anywhere_loads_or_is_refused(name, data):
    raw = load_profile_data(name)
    path = data.draw(st.sampled_from([p for p in _leaves(raw) if p]), label="path")
    node = raw
    for key in path[:-1]:
        node = node[key]
    if data.draw(st.booleans(), label="delete"):
        del node[path[-1]]
    else:
        node[path[-1]] = data.draw(VALUES, label="value")
    _loads_or_refuses(lambda: profile_from_dict(raw, source="fuzzed profile"))


KEYS = st.one_of(
    st.sampled_from(
        [
            "clock_hz",
            "compute.rows",
            "compute.cols",
            "compute.dataflow",
            "memory.0.size_bytes",
            "memory.dram.size_bytes",
            "memory.1.bandwidth_bytes_per_cycle",
            "memory.-1.holds",
            "compute.precision.0.macs_per_pe_per_cycle",
            "sparsity.nm_patterns",
            "overheads",
            "memory.99.size_bytes",
            "compute..rows",
            "compute.rows.x",
        ]
    ),
    st.text(max_size=24),
)


@FUZZ
@given(
    name=st.sampled_from(NAMES),
    key=KEYS,
    text=st.one_of(
        st.text(max_size=16),
        st.sampled_from(["1e-308", "nan", "-inf", "0", "[]", "1", "64"]),
        st.integers(min_value=-(2**64), max_value=2**64).map(str),
        st.floats().map(repr),
    ),
    value=st.one_of(VALUES, st.integers(min_value=0, max_value=4096), st.floats(0, 1e4)),
)
def test_any_override_applies_or_is_refused(name, key, text, value):
    # a key holding a line break is quoted ('--set 'a\nb': unknown key'): still one line
    one_line = True
    try:  # --set KEY=TEXT as the CLI parses it
        overrides = parse_set([f"{key}={text}"])
    except LowbitError:
        overrides = None
    if overrides is not None:
        _loads_or_refuses(lambda: load_profile(name, overrides=overrides), one_line=one_line)
    # an override as the HTTP API passes it: any value
    _loads_or_refuses(lambda: load_profile(name, overrides={key: value}), one_line=one_line)
