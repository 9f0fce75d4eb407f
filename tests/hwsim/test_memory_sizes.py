"""Memory sizes too small to be physical (issue 15): an off-chip level (DRAM, flash) is where
the tensors its on-chip levels cache live, so one smaller than such a level is refused by
the profile validation; an on-chip buffer too small for any tile is legal and costs what
streaming every operand from off chip costs."""

from __future__ import annotations

import pytest

from lowbit.cli import main
from lowbit.hwsim import simulate
from lowbit.hwsim.errors import ProfileError
from lowbit.hwsim.profiles import load_profile
from lowbit.hwsim.workloads import builtin_workload


@pytest.mark.parametrize(
    "name, key, inner",
    [
        ("npu-systolic-32", "memory.dram.size_bytes", '"ifmap_sram" (65536 bytes)'),
        ("npu-bitfusion", "memory.0.size_bytes", '"wbuf" (65536 bytes)'),
        ("cpu-x86-avx2", "memory.dram.size_bytes", '"l3" (33554432 bytes)'),
        ("npu-ethos-u55", "memory.sram.size_bytes", '"shram" (49152 bytes)'),
    ],
)
def test_an_off_chip_level_smaller_than_what_it_feeds_is_refused(name, key, inner):
    with pytest.raises(ProfileError) as info:
        load_profile(name, overrides={key: 1})
    message = str(info.value)
    assert "size_bytes: off-chip level" in message and "is 1 bytes, smaller than" in message
    assert f"on-chip level {inner}" in message and key in message


def test_an_off_chip_level_as_large_as_its_largest_cache_is_accepted():
    # (its co-design tunables take the SRAMs up to 256 KiB: each value is validated too)
    profile = load_profile("npu-systolic-32", overrides={"memory.dram.size_bytes": 1 << 18})
    assert profile.off_chip("weights").size_bytes == 1 << 18
    with pytest.raises(ProfileError, match=r"tunables\[2\]\.values\[4\]: memory.ifmap_sram"):
        load_profile("npu-systolic-32", overrides={"memory.dram.size_bytes": 1 << 17})
    # a flash holding only weights is not compared with the activation buffers
    load_profile("npu-ethos-u55", overrides={"memory.flash.size_bytes": 49152})


def test_the_cli_says_so_in_one_line(capsys):
    argv = [
        "simulate",
        "--hardware",
        "npu-systolic-32",
        "--workload",
        "resnet18",
        "--set",
        "memory.dram.size_bytes=1",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lowbit: error: ") and err.count("\n") == 1
    assert '"dram" is 1 bytes, smaller than on-chip level "ifmap_sram"' in err


def test_a_tiny_on_chip_buffer_costs_streaming_monotonically():
    workload = builtin_workload("resnet18")
    sizes = (1, 16, 256, 4096, 65536)
    results = [
        simulate(
            workload, load_profile("npu-systolic-32", overrides={"memory.ifmap_sram.size_bytes": s})
        )
        for s in sizes
    ]
    cycles = [r.total_cycles for r in results]
    traffic = [sum(layer.dram_read_bytes for layer in r.layers) for r in results]
    assert cycles == sorted(cycles, reverse=True) and cycles[0] > 2 * cycles[-1]
    assert traffic == sorted(traffic, reverse=True) and traffic[0] > traffic[-1]
