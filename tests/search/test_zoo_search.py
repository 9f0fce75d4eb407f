"""A real (small) search: digits-cnn on the built-in BitFusion profile, 2 Ray workers.

Every deployment config the run writes must reproduce: its plan fits the model, the
simulator gives its latency again, and compressing the model with it gives its test
accuracy again.
"""

from __future__ import annotations

import json

import pytest

from lowbit.search import SearchSetup, ZooModel, load_config, run_search


@pytest.mark.slow
def test_zoo_search_configs_reproduce(ray_session, tmp_path):
    from lowbit import hwsim, models
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.accuracy import accuracy, as_model_input

    profile = load_profile("npu-bitfusion")
    setup = SearchSetup(
        model=ZooModel(name="digits-cnn"),
        hardware=profile,
        n_trials=6,
        out_dir=tmp_path / "run",
        workers=2,
        methods=("joint", "uniform", "hawq"),
        progress=False,
    )
    result = run_search(setup)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["hardware"]["content_hash"] == profile.content_hash()
    assert summary["methods"]["joint"]["completed"] == 6
    assert summary["methods"]["uniform"]["completed"] == 4  # W8A8 W4A8 W4A4 W2A8 all run
    assert 1 <= summary["methods"]["hawq"]["completed"] <= 3
    ids = [cid for m in result.methods.values() for cid in m.pareto]
    assert ids
    base = models.load_trained("digits-cnn")
    x, y = models.load_split("digits", "test")
    calib, _ = models.load_split("digits", "val")
    for cid in ids:
        cfg = load_config(tmp_path / "run" / "configs" / f"{cid}.json")
        plan = models.CompressionPlan.from_dict(cfg.plan)
        plan.check(base)
        sim = hwsim.simulate(models.to_workload(base, plan), profile)
        assert cfg.latency_ms == pytest.approx(sim.latency_s * 1e3)
        assert sum(layer.total_cycles for layer in cfg.layers) == sim.total_cycles
        small = models.compress(base, plan, calib=as_model_input(base, calib))
        assert cfg.accuracy_test == pytest.approx(accuracy(small, as_model_input(base, x), y))
