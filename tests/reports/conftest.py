"""One small real search run shared by the report tests (co-design, so the hardware views
are exercised too): digits-cnn on npu-bitfusion, 3 methods, 8 trials each."""

from __future__ import annotations

import logging
import os

import pytest

#: below npu-bitfusion as given (3.94 mm2): the co-design budget binds
BUDGET_MM2 = 3.5


@pytest.fixture(scope="session")
def report_cache(tmp_path_factory):
    """A session model cache (LOWBIT_CACHE) unless one is set, before Ray starts."""
    before = os.environ.get("LOWBIT_CACHE")
    if not before:
        os.environ["LOWBIT_CACHE"] = str(tmp_path_factory.mktemp("lowbit-cache"))
    yield os.environ["LOWBIT_CACHE"]
    if not before:
        os.environ.pop("LOWBIT_CACHE", None)


@pytest.fixture(scope="session")
def report_ray(report_cache):
    """One small local Ray (2 CPUs, loopback, no dashboard) kept for the session, so later
    in-process searches reuse it instead of starting their own."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            object_store_memory=128 * 1024**2,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_run(report_ray, tmp_path_factory):
    """The run directory of a tiny real search (Ray, 2 workers)."""
    from search import run_search

    out = tmp_path_factory.mktemp("tiny-run") / "run"
    run_search(
        model="digits-cnn",
        hardware="npu-bitfusion",
        n_trials=8,
        out_dir=out,
        workers=2,
        methods=("joint", "uniform", "quant-only"),
        co_design=True,
        area_budget_mm2=BUDGET_MM2,
        progress=False,
    )
    return out
