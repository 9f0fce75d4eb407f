"""Two small run directories shared by the results tests (synthetic evaluator, real driver:
about a second each), and copies to damage."""

from __future__ import annotations

import shutil

import pytest
from results_testkit import make_run


@pytest.fixture(scope="session")
def runs(ray_session, tmp_path_factory):
    """Two runs of the same space (seeds 0 and 1; joint, uniform and random; trial 2 of
    every study fails)."""
    base = tmp_path_factory.mktemp("results-runs")
    out = []
    for seed in (0, 1):
        path = base / f"synthetic-s{seed}"
        make_run(path, methods=("joint", "uniform", "random"), seed=seed, fail_numbers=(2,))
        out.append(path)
    return out


@pytest.fixture
def run_copy(runs, tmp_path):
    """A copy of the first run to modify."""
    return shutil.copytree(runs[0], tmp_path / "copy")
