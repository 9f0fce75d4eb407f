"""Fixtures for the hwsim tests: small targets built in Python, and the built-ins."""

from __future__ import annotations

from functools import cache

import pytest

from lowbit.hwsim.profile import (
    ComputeUnit,
    HardwareProfile,
    MemoryLevel,
    Overheads,
    Precision,
    SparsitySupport,
)

GIB = 1 << 30


def make_profile(
    *,
    kind: str = "systolic",
    rows: int = 32,
    cols: int = 32,
    cores: int = 1,
    dataflow: str = "os",
    precisions: tuple[Precision, ...] = (Precision(8, 8, 1.0, 0.2),),
    dram_bytes_per_cycle: float = 16.0,
    sram_bytes: tuple[int, int, int] = (64 * 1024, 64 * 1024, 32 * 1024),
    double_buffered: bool = True,
    shared_sram: int | None = None,
    sparsity: SparsitySupport | None = None,
    layer_cycles: int = 0,
    tile_cycles: int = 0,
    weight_storage: str = "packed",
    static_power_w: float = 0.0,
    flash_bytes_per_cycle: float | None = None,
    name: str = "test-target",
) -> HardwareProfile:
    """A SCALE-Sim-like target: separate ifmap / filter / ofmap SRAMs (or one shared
    level) over one DRAM; optionally weights in a flash of their own (a second port)."""
    memory = []
    if flash_bytes_per_cycle is not None:
        memory.append(
            MemoryLevel("flash", 64 << 20, flash_bytes_per_cycle, 30.0, ("weights",), off_chip=True)
        )
        dram_holds = ("inputs", "outputs")
    else:
        dram_holds = ("weights", "inputs", "outputs")
    memory.append(
        MemoryLevel("dram", 4 * GIB, dram_bytes_per_cycle, 100.0, dram_holds, off_chip=True)
    )
    if shared_sram is not None:
        memory.append(
            MemoryLevel(
                "sram",
                shared_sram,
                64.0,
                2.0,
                ("weights", "inputs", "outputs"),
                double_buffered=double_buffered,
            )
        )
    else:
        for level, size, holds in zip(
            ("ifmap", "filter", "ofmap"),
            sram_bytes,
            ("inputs", "weights", "outputs"),
            strict=True,
        ):
            memory.append(
                MemoryLevel(level, size, 64.0, 2.0, (holds,), double_buffered=double_buffered)
            )
    dataflows = ("vector",) if kind == "vector" else ("os", "ws", "is")
    return HardwareProfile(
        name=name,
        description="test target",
        family="npu",
        schema_version=1,
        clock_hz=1e9,
        compute=ComputeUnit(kind, rows, cols, dataflow, dataflows, precisions, cores),
        memory=tuple(memory),
        sparsity=sparsity or SparsitySupport(),
        overheads=Overheads(layer_cycles=layer_cycles, tile_cycles=tile_cycles),
        weight_storage=weight_storage,
        static_power_w=static_power_w,
    )


@pytest.fixture
def make_target():
    """The :func:`make_profile` factory (keyword arguments as documented there)."""
    return make_profile


@pytest.fixture
def npu32() -> HardwareProfile:
    """32×32 INT8 output-stationary array, SCALE-Sim's default-like buffers."""
    return make_profile()


def _builtin_profile_names() -> list[str]:
    try:
        from lowbit.hwsim.profiles import builtin_profile_names
    except ImportError:  # pragma: no cover - only while profiles are being written
        return []
    return builtin_profile_names()


def _builtin_workload_names() -> list[str]:
    try:
        from lowbit.hwsim.workloads import BUILTIN_WORKLOADS
    except ImportError:  # pragma: no cover
        return []
    return sorted(BUILTIN_WORKLOADS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test taking ``profile_name`` / ``workload_name`` over all built-ins."""
    if "profile_name" in metafunc.fixturenames:
        metafunc.parametrize("profile_name", _builtin_profile_names())
    if "workload_name" in metafunc.fixturenames:
        metafunc.parametrize("workload_name", _builtin_workload_names())


@cache
def _load_builtin(name: str) -> HardwareProfile:
    from lowbit.hwsim.profiles import load_profile

    return load_profile(name)


@pytest.fixture
def builtin_profile(profile_name: str) -> HardwareProfile:
    """The built-in profile ``profile_name`` (loaded once per session)."""
    return _load_builtin(profile_name)


@pytest.fixture
def builtin_workload_(workload_name: str):
    """The built-in workload ``workload_name``."""
    from lowbit.hwsim.workloads import builtin_workload

    return builtin_workload(workload_name)
