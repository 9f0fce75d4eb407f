"""One small real search run shared by the report tests (co-design, so the hardware views
are exercised too): digits-cnn on npu-bitfusion, 3 methods, 8 trials each."""

from __future__ import annotations

import pytest

#: below npu-bitfusion as given (3.94 mm2): the co-design budget binds
BUDGET_MM2 = 3.5


@pytest.fixture(scope="session")
def tiny_run(ray_session, tmp_path_factory):
    """The run directory of a tiny real search (Ray, 2 workers)."""
    from lowbit.search import SearchSetup, ZooModel, run_search

    out = tmp_path_factory.mktemp("tiny-run") / "run"
    setup = SearchSetup(
        model=ZooModel(name="digits-cnn"),
        hardware="npu-bitfusion",
        n_trials=8,
        out_dir=out,
        workers=2,
        methods=("joint", "uniform", "quant-only"),
        co_design=True,
        area_budget_mm2=BUDGET_MM2,
        progress=False,
    )
    run_search(setup)
    return out
