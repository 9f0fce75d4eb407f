"""hwsim.area: the linear silicon-area model of a profile's [area] table."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from lowbit.hwsim.area import area_breakdown, area_mm2
from lowbit.hwsim.errors import ProfileError
from lowbit.hwsim.profiles import builtin_profile_names, load_profile

#: every NPU and FPGA built-in declares [[tunables]] and [area] (co-design needs both)
CODESIGN_TARGETS = [n for n in builtin_profile_names() if load_profile(n).family in ("npu", "fpga")]


def test_golden_npu_systolic_32():
    # lowbit/hardware_profiles/npu-systolic-32.toml: base 0.5 mm2 + 32x32 PEs x 0.0007
    # + (64 + 64 + 32) KiB on-chip x 0.006 + 12.8 B/cycle x 1 GHz = 12.8 GB/s x 0.2
    expected = 0.5 + 1024 * 0.0007 + 160 * 0.006 + 12.8 * 0.2
    assert area_mm2(load_profile("npu-systolic-32")) == pytest.approx(expected)


def test_breakdown_adds_up_and_counts_the_right_things():
    profile = load_profile("npu-bitfusion")
    b = area_breakdown(profile)
    assert b.total_mm2 == pytest.approx(b.pe_mm2 + b.sram_mm2 + b.dram_mm2 + b.base_mm2)
    assert b.pes == profile.compute.rows * profile.compute.cols * profile.compute.cores
    assert b.sram_kib == sum(m.size_bytes for m in profile.memory if not m.off_chip) / 1024
    assert b.to_dict()["total_mm2"] == pytest.approx(b.total_mm2)


@pytest.mark.parametrize(
    ("key", "small", "large"),
    [
        ("compute.rows", 8, 64),
        ("memory.wbuf.size_bytes", 32_768, 131_072),
        ("memory.dram.bandwidth_bytes_per_cycle", 16.0, 32.0),
    ],
)
def test_more_hardware_costs_more_area(key, small, large):
    less = area_mm2(load_profile("npu-bitfusion", overrides={key: small}))
    more = area_mm2(load_profile("npu-bitfusion", overrides={key: large}))
    assert more > less


def test_a_profile_without_an_area_model_is_a_clear_error():
    profile = replace(load_profile("npu-bitfusion"), area=None)
    with pytest.raises(ProfileError, match=r"area: missing"):
        area_mm2(profile)


@pytest.mark.parametrize("name", CODESIGN_TARGETS)
def test_npu_and_fpga_builtins_are_ready_for_codesign(name):
    profile = load_profile(name)
    assert profile.tunables and profile.area is not None and profile.area.source
    for tunable in profile.tunables:
        for value in tunable.values:
            variant = load_profile(name, overrides={tunable.key: value})
            area = area_mm2(variant)
            assert math.isfinite(area) and area > 0
