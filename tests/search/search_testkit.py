"""Helpers shared by the search tests: hand-built profiles, a synthetic layer list and a
subprocess search driver."""

from __future__ import annotations

import textwrap
from pathlib import Path

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


#: a search driver as the CLI runs it (its own local Ray, no dashboard), in a subprocess: the
#: synthetic evaluator logs each evaluation to ``log``; "interrupted" and exit code 130 on
#: KeyboardInterrupt
_DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from search_testkit import SYNTHETIC_LAYERS, bitfusion_profile
    from lowbit.search.run import SearchSetup, execute
    from lowbit.search.space import build_space
    from lowbit.search.testing import SyntheticSpec

    space = build_space(SYNTHETIC_LAYERS, bitfusion_profile(), model="synthetic-cnn")
    setup = SearchSetup(n_trials=500, out_dir={run!r}, study_name="k", workers={workers},
                        progress=False)
    try:
        execute(space=space, evaluator=SyntheticSpec(sleep_s=0.1, log_path={log!r}),
                setup=setup)
    except KeyboardInterrupt as exc:
        print("interrupted", exc, file=sys.stderr)
        sys.exit(130)
    """
)


def driver_script(*, run: Path, log: Path, workers: int) -> str:
    """The source of :data:`_DRIVER` for a run directory, log file and worker count."""
    here = str(Path(__file__).parent)
    return _DRIVER.format(here=here, run=str(run), log=str(log), workers=workers)
