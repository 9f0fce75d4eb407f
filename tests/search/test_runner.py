"""The driver on a real local Ray (2 workers) with the synthetic evaluator: failures,
timeouts, constraints, storage URLs and the run directory's contents."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from optuna.trial import TrialState

from lowbit.search import load_config
from lowbit.search.pareto import hypervolume_2d, non_dominated
from lowbit.search.run import SearchSetup, execute
from lowbit.search.storage import FAIL_REASON_ATTR, open_storage
from lowbit.search.summary import HV_REFERENCE
from lowbit.search.testing import SyntheticSpec, synthetic_objectives


def _run(space, tmp_path, spec=None, **kw):
    setup = SearchSetup(
        n_trials=kw.pop("n_trials", 12),
        out_dir=tmp_path / "run",
        study_name="t",
        workers=2,
        progress=False,
        **kw,
    )
    return execute(space=space, evaluator=spec or SyntheticSpec(), setup=setup)


def _trials(tmp_path, name="t", url=None):
    import optuna

    storage = open_storage(url, run_dir=tmp_path / "run")
    return optuna.load_study(study_name=name, storage=storage).trials


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_failures_do_not_stop_the_study(ray_session, synthetic_space, tmp_path):
    spec = SyntheticSpec(fail_numbers=(1,), nan_numbers=(2,))
    result = _run(synthetic_space, tmp_path, spec)
    trials = _trials(tmp_path)
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 12  # the budget counts completed trials
    failed = {t.number: t.user_attrs[FAIL_REASON_ATTR] for t in trials if t.state.name == "FAIL"}
    assert set(failed) == {1, 2}
    assert "synthetic failure of trial 1" in failed[1]
    assert "non-finite" in failed[2]
    assert result.methods["joint"].failed == 2
    rows = _csv(tmp_path / "run" / "trials.csv")
    assert len(rows) == 14 and {r["fail_reason"] != "" for r in rows} == {True, False}


def test_timeout_fails_the_trial_and_replaces_the_worker(ray_session, synthetic_space, tmp_path):
    spec = SyntheticSpec(hang_numbers=(0,))
    _run(synthetic_space, tmp_path, spec, n_trials=4, trial_timeout_s=1.5)
    trials = _trials(tmp_path)
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[FAIL_REASON_ATTR] == "timeout after 1.5 s"
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4


def test_run_directory_is_consistent(ray_session, synthetic_space, tmp_path):
    log = tmp_path / "evals.log"
    spec = SyntheticSpec(log_path=str(log))
    result = _run(synthetic_space, tmp_path, spec, methods=("joint", "uniform", "random"))
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["hypervolume"]["reference_point"] == list(HV_REFERENCE)
    assert set(summary["versions"]) >= {"lowbit", "optuna", "ray", "torch"}
    w8 = summary["reference"]["w8a8_latency_ms"]
    # W8A8 reference from the closed form of the synthetic evaluator
    all8 = synthetic_space.settings(synthetic_space.uniform_params(8, 8))
    assert w8 == pytest.approx(synthetic_objectives(all8)[1])
    rows = _csv(run / "trials.csv")
    pareto = _csv(run / "pareto.csv")
    for method in ("joint", "uniform", "random"):
        done = [r for r in rows if r["method"] == method and r["state"] == "COMPLETE"]
        points = [(float(r["accuracy_val"]), float(r["latency_ms"]) / w8) for r in done]
        hv = hypervolume_2d(points, reference=HV_REFERENCE, directions=("maximize", "minimize"))
        assert summary["methods"][method]["hypervolume_val"] == pytest.approx(hv)
        # pareto.csv holds exactly the non-dominated distinct configurations
        front = {
            json.loads(done[i]["params"]).__repr__()
            for i in non_dominated(points, directions=("maximize", "minimize"))
        }
        mine = [p for p in pareto if p["method"] == method]
        assert {json.loads(p["params"]).__repr__() for p in mine} == front
        for p in mine:
            cfg = load_config(run / "configs" / f"{p['config_id']}.json")
            assert cfg.method == method and cfg.trial_number == int(p["number"])
            assert cfg.accuracy_test == pytest.approx(float(p["accuracy_test"]))
    # each distinct Pareto configuration is measured on test once, whatever method found it
    plans = [
        json.dumps(load_config(run / "configs" / f"{p['config_id']}.json").plan, sort_keys=True)
        for p in pareto
    ]
    tests = [line for line in log.read_text().splitlines() if line.endswith(" test")]
    assert len(tests) == len(set(plans)) < len(plans)  # joint's warm start = uniform W8A8
    uniform = summary["methods"]["uniform"]
    assert uniform["completed"] == 4  # W8A8, W4A8, W4A4, W2A8: all run on this target
    # synthetic accuracy: only W8A8 is within 1 point of FP32, so its speed-up is 1
    assert result.methods["uniform"].speedup_vs_w8a8 == pytest.approx(1.0)


def test_constraints_mark_infeasible_trials(ray_session, synthetic_space, tmp_path):
    all8 = synthetic_space.settings(synthetic_space.uniform_params(8, 8))
    limit = synthetic_objectives(all8)[1] / 4
    _run(synthetic_space, tmp_path, max_latency_ms=limit, n_trials=10)
    trials = [t for t in _trials(tmp_path) if t.state == TrialState.COMPLETE]
    for t in trials:
        c = t.constraints["max_latency_ms"]
        assert c == pytest.approx(t.user_attrs["latency_ms"] - limit)
    pareto = _csv(tmp_path / "run" / "pareto.csv")
    assert all(float(p["latency_ms"]) <= limit for p in pareto)


def test_sqlite_storage_and_rerun_recomputes_nothing(ray_session, synthetic_space, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    log = tmp_path / "evals.log"
    spec = SyntheticSpec(log_path=str(log))
    _run(synthetic_space, tmp_path, spec, storage=url, n_trials=6)
    first = [line for line in log.read_text().splitlines() if line.endswith(" val")]
    _run(synthetic_space, tmp_path, spec, storage=url, n_trials=6)  # same study: complete
    again = [line for line in log.read_text().splitlines() if line.endswith(" val")]
    assert len(again) == len(first)  # no trial evaluated twice (only test re-evaluations)
    assert not (tmp_path / "run" / "study.journal").exists()
    trials = _trials(tmp_path, url=url)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6


def test_extra_objectives(ray_session, synthetic_space, tmp_path):
    _run(synthetic_space, tmp_path, objectives=("accuracy", "latency", "size"), n_trials=5)
    trials = [t for t in _trials(tmp_path) if t.state == TrialState.COMPLETE]
    for t in trials:
        attrs = t.user_attrs
        assert t.values == [attrs["accuracy"], attrs["latency_ms"], attrs["size_kib"]]


def test_warm_starts_are_nsga2s_first_generation(ray_session, synthetic_space, tmp_path):
    """Enqueued warm starts must be NSGA-II parents: without join_generation they carried
    no generation, and the first generation was 8 random trials."""
    _run(synthetic_space, tmp_path, n_trials=20, methods=("joint",))  # population 8
    trials = _trials(tmp_path)
    key = "NSGAIISampler:generation"  # Optuna's BaseGASampler key for this sampler class
    warm = [t for t in trials if t.user_attrs.get("label")]
    assert len(warm) >= 4 and all(t.system_attrs.get(key) == 0 for t in warm)
    generations = [t.system_attrs.get(key) for t in trials]
    assert None not in generations and max(generations) >= 1
    # the warm starts fill generation 0 (one more when 2 workers ask before it completes)
    assert generations.count(0) in (8, 9)


def test_a_space_smaller_than_the_budget_is_evaluated_whole_once(
    ray_session, synthetic_space, tmp_path
):
    """Quantization-only where one layer offers 4 or 8 bits and every other only 8 (a CPU
    that runs sub-8-bit layers at 8 bits has a single point): each point once, not the
    budget's worth of repeats; the joint search still gets its budget; a rerun adds none."""
    first = synthetic_space.layers[0]
    layers = [dataclasses.replace(first, w_bits=(4, 8), a_bits=(8,))] + [
        dataclasses.replace(layer, w_bits=(8,), a_bits=(8,)) for layer in synthetic_space.layers[1:]
    ]
    space = dataclasses.replace(synthetic_space, layers=tuple(layers), w_bits=(4, 8), a_bits=(8,))
    assert space.quant_only().size == 2
    for _ in range(2):
        _run(space, tmp_path, n_trials=6, methods=("joint", "quant-only"))
        quant = [t for t in _trials(tmp_path, "t-quant") if t.state == TrialState.COMPLETE]
        assert sorted(t.params[f"{first.name}.w_bits"] for t in quant) == [4, 8]
        joint = [t for t in _trials(tmp_path) if t.state == TrialState.COMPLETE]
        assert len(joint) == 6
