"""Helpers shared by the search tests: hand-built profiles and a synthetic layer list."""

from __future__ import annotations

from lowbit.hwsim.profile import (
    ComputeUnit,
    HardwareProfile,
    MemoryLevel,
    Precision,
    SparsitySupport,
)
from lowbit.search.space import LayerInfo


def make_profile(
    name: str,
    precisions: list[tuple[int, int, float]],
    *,
    weight_storage: str = "promoted",
    nm_patterns: tuple[tuple[int, int], ...] = (),
) -> HardwareProfile:
    """A small vector-kind target with the given (w, a, MACs/PE/cycle) modes."""
    return HardwareProfile(
        name=name,
        description="test target",
        family="npu",
        schema_version=1,
        clock_hz=1e9,
        compute=ComputeUnit(
            kind="vector",
            rows=8,
            cols=8,
            dataflow="vector",
            dataflows=("vector",),
            precisions=tuple(Precision(w, a, m, 1.0) for w, a, m in precisions),
        ),
        memory=(
            MemoryLevel("dram", 1 << 30, 8.0, 100.0, ("weights", "inputs", "outputs"), True),
            MemoryLevel("sram", 1 << 20, 64.0, 1.0, ("weights", "inputs", "outputs")),
        ),
        sparsity=SparsitySupport(nm_patterns=nm_patterns),
        weight_storage=weight_storage,
    )


#: a small CNN-like model: conv1 -> conv2 -> fc1 -> fc2 (conv1, conv2, fc1 are producers)
SYNTHETIC_LAYERS = (
    LayerInfo("conv1", "conv", out_channels=16, reduction=9, full_rank=9, producer=True),
    LayerInfo("conv2", "conv", out_channels=32, reduction=144, full_rank=32, producer=True),
    LayerInfo("fc1", "linear", out_channels=64, reduction=128, full_rank=64, producer=True),
    LayerInfo("fc2", "linear", out_channels=10, reduction=64, full_rank=10),
)


def bitfusion_profile() -> HardwareProfile:
    """BitFusion-style bit-flexible modes, throughput (8/w)·(8/a) (Sharma et al., ISCA 2018),
    with 2:4 sparsity support."""
    modes = [(w, a, (8 / w) * (8 / a)) for w in (2, 4, 8) for a in (2, 4, 8)]
    return make_profile("test-bitfusion", modes, nm_patterns=((2, 4),))
