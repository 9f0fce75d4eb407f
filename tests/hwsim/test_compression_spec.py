"""The shared per-layer spec (:mod:`lowbit.hwsim.compression`): one spelling per knob, its
checks, the rules every layer applies, and the compatibility shims (32 = float, out_keep)."""

from __future__ import annotations

import re
import warnings
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

from lowbit.hwsim.compression import (
    FLOAT_BITS,
    KNOBS,
    Compression,
    CompressionError,
    kept_channels,
    spec_bits,
    storage_bits,
)
from lowbit.hwsim.workload import Conv2d, Linear

ROOT = Path(__file__).resolve().parents[2]


def test_the_knobs_are_one_typed_frozen_record() -> None:
    assert KNOBS == (
        "w_bits",
        "a_bits",
        "keep",
        "in_keep",
        "nm",
        "density",
        "rank",
        "rank_fraction",
    )
    c = Compression(w_bits=4, keep=0.5)
    with pytest.raises(FrozenInstanceError):
        c.keep = 1.0  # type: ignore[misc]
    assert Compression() == Compression(w_bits=8, a_bits=8)  # a simulator layer: dense W8A8


def test_float_is_none_and_32_is_read_as_float() -> None:
    assert Compression(w_bits=32, a_bits=32) == Compression(w_bits=None, a_bits=None)
    fp = Compression(w_bits=None, a_bits=4)
    assert (fp.w_bits, fp.w_storage_bits, fp.a_storage_bits) == (None, FLOAT_BITS, 4)
    for bits in (None, 1, 4, 8, 16):
        assert spec_bits(storage_bits(bits)) == bits


def test_every_problem_is_reported_at_once_with_its_knob() -> None:
    with pytest.raises(CompressionError) as info:
        Compression(w_bits=0, a_bits=17, keep=0.0, nm=(3, 2), rank=0, density=2.0)
    keys = [p.split(":")[0] for p in info.value.problems]
    assert keys == ["w_bits", "a_bits", "keep", "density", "nm", "rank"]
    assert isinstance(info.value, ValueError)
    with pytest.raises(CompressionError, match="at most one of rank and rank_fraction"):
        Compression(rank=4, rank_fraction=0.5)


def test_old_out_keep_keyword_is_read_as_keep_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="spelled keep"):
        c = Compression(out_keep=0.5)
    assert c == Compression(keep=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert replace(c, w_bits=4).keep == 0.5  # replace() never trips the shim


@pytest.mark.parametrize("full", [0, 1, 7, 64, 300])
@pytest.mark.parametrize("fraction", [0.01, 0.25, 0.5, 0.99, 1.0])
def test_rank_of_a_fraction(full: int, fraction: float) -> None:
    rank = Compression(rank_fraction=fraction).rank_of(full)
    expected = max(1, round(fraction * full)) if full else None
    assert rank == (expected if expected is not None and expected < full else None)
    if full:
        assert Compression(rank=full).rank_of(full) is None  # not below full rank


def test_pinned_and_matmul_rules() -> None:
    spec = Compression(w_bits=4, a_bits=None, keep=0.5, nm=(2, 4), density=0.5, rank=3)
    assert spec.pinned() == Compression(w_bits=8, a_bits=None)
    assert spec.for_matmul() == Compression(w_bits=None, a_bits=None)
    assert Compression(w_bits=2, a_bits=6, keep=0.5).for_matmul() == Compression(6, 6)


def test_a_rank_fraction_becomes_the_layers_integer_rank() -> None:
    fc = Linear(name="fc", in_features=64, out_features=32)
    (lowrank,) = [fc.with_compression(Compression(rank_fraction=0.25))]
    assert lowrank.compression == Compression(rank=8)
    assert [g.N for g in lowrank.gemms()] == [8, 32]
    direct = Linear(
        name="fc", in_features=64, out_features=32, compression=Compression(rank_fraction=0.25)
    )
    assert direct.gemms() == lowrank.gemms()
    grouped = Conv2d(
        name="dw", in_h=4, in_w=4, in_c=8, out_c=8, k_h=3, k_w=3, out_h=4, out_w=4, groups=8
    )
    assert grouped.with_compression(Compression(rank_fraction=0.5)).compression.rank is None


def test_kept_channels_is_the_simulators_rule() -> None:
    for n in (1, 3, 16, 33):
        for keep in (0.01, 0.25, 0.5, 0.9, 1.0):
            fc = Linear(name="fc", in_features=n, out_features=n)
            (g,) = fc.with_compression(Compression(keep=keep, in_keep=keep)).gemms()
            assert g.N == g.K == kept_channels(n, keep)


def test_out_keep_is_spelled_only_in_the_compatibility_shim() -> None:
    """One spelling per knob: the old name of ``keep`` appears in the shim of
    lowbit/hwsim/compression.py alone (and in this test)."""
    pattern = re.compile(r"\bout_keep\b")
    places = sorted(
        str(path.relative_to(ROOT))
        for top in ("lowbit", "tests", "docs", "examples")
        for path in (ROOT / top).rglob("*")
        if path.suffix in (".py", ".md", ".json", ".toml")
        and pattern.search(path.read_text(encoding="utf-8", errors="replace"))
    )
    here = str(Path(__file__).resolve().relative_to(ROOT))
    assert places == sorted(["lowbit/hwsim/compression.py", here])
