"""Multi-fidelity search: the subsets, the promotion rule, and a run on local Ray with the
synthetic evaluator, whose cheap-rung accuracy is a known function of the settings, so every
promotion decision can be checked against the rule."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from optuna.trial import TrialState

from lowbit.hwsim.errors import LowbitError
from lowbit.models.export.calib_subset import stratified_subset, subset_sha256
from lowbit.search.fidelity import (
    CHEAP,
    FULL,
    CheapResult,
    Fidelity,
    accuracy_margin,
    decide_promotion,
    resolve_fidelity,
)
from lowbit.search.pareto import hypervolume_2d
from lowbit.search.run import SearchSetup, execute
from lowbit.search.storage import open_storage
from lowbit.search.summary import HV_DIRECTIONS, HV_REFERENCE
from lowbit.search.testing import SyntheticSpec, synthetic_cheap_accuracy, synthetic_objectives

METHODS = ("joint", "random", "uniform")


def test_stratified_subset_is_fixed_sorted_and_stratified():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])
    index = stratified_subset(labels, samples=190, seed=3)
    assert len(index) == 190 and len(set(index)) == 190
    assert np.all(np.diff(index) > 0)  # sorted, distinct
    share = np.bincount(labels[index], minlength=10) / 190
    assert np.abs(share - np.bincount(labels) / len(labels)).max() < 1 / 190 + 1e-12
    assert np.array_equal(index, stratified_subset(labels, samples=190, seed=3))
    assert not np.array_equal(index, stratified_subset(labels, samples=190, seed=4))
    assert subset_sha256(index) == subset_sha256(list(index))
    # as many samples as labels (or more): every position, in order (the whole split)
    assert np.array_equal(stratified_subset(labels, samples=10**6, seed=0), np.arange(950))


def test_resolve_fidelity():
    toy = resolve_fidelity(mode="auto", val_samples=359)
    assert toy.rungs == (FULL,) and toy.calib_samples == 359 and toy.legacy
    real = resolve_fidelity(mode="auto", val_samples=5000)
    assert real.rungs == (CHEAP, FULL) and real.cheap_val == 1000 and real.calib_samples == 512
    assert not real.legacy
    forced = resolve_fidelity(mode="multi", val_samples=359, cheap_val=150, calib_samples=100)
    assert forced.multi and forced.cheap_val == 150 and forced.calib_samples == 100
    assert not resolve_fidelity(mode="full", val_samples=5000).multi
    with pytest.raises(LowbitError) as err:
        resolve_fidelity(mode="multi", val_samples=359)  # 1,000 cheap images > 359
    assert "cheap_val" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(LowbitError, match="fidelity: unknown 'half'.*calib_samples"):
        resolve_fidelity(mode="half", val_samples=359, calib_samples=0)


def test_promotion_rule():
    margin = accuracy_margin(0.9, samples=1000, z=2.0)
    assert margin == pytest.approx(2 * (0.9 * 0.1 / 1000) ** 0.5)
    # the margin is the candidate's: 2 standard errors at its own accuracy (~0.017 here)
    fast_good = CheapResult(1, 0.95, (1.0,))
    slow = CheapResult(2, 0.92, (2.0,))
    close = CheapResult(3, 0.94, (2.0,))
    assert 0.01 < accuracy_margin(0.94, samples=1000, z=2.0) < 0.03
    faster_worse = CheapResult(4, 0.5, (0.5,))
    decide = decide_promotion
    assert decide(fast_good, [], samples=1000, z=2.0).promote
    kept = decide(slow, [fast_good], samples=1000, z=2.0)
    assert not kept.promote and kept.dominated_by == 1 and "trial 1" in kept.reason
    assert decide(close, [fast_good], samples=1000, z=2.0).promote  # within the noise
    assert decide(faster_worse, [fast_good, slow], samples=1000, z=2.0).promote  # fastest
    assert decide(slow, [fast_good], samples=1000, z=0.0, max_latency_ms=5.0).promote is False
    over = decide(fast_good, [], samples=1000, z=2.0, max_latency_ms=0.5)
    assert not over.promote and "latency constraint" in over.reason
    # every exact objective counts: a smaller model is not dropped for a faster one
    small = CheapResult(5, 0.80, (2.0, 1.0))
    assert decide(small, [CheapResult(6, 0.95, (1.0, 3.0))], samples=1000, z=2.0).promote


def _study(run_dir, name):
    import optuna

    return optuna.load_study(study_name=name, storage=open_storage(None, run_dir=run_dir))


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _hv(trials, w8):
    points = [(t.values[0], t.user_attrs["latency_ms"] / w8) for t in trials]
    return hypervolume_2d(points, reference=HV_REFERENCE, directions=HV_DIRECTIONS)


@pytest.fixture(scope="module")
def multi_run(ray_session, synthetic_space, tmp_path_factory):
    """joint, random and uniform on two rungs; the cheap rung reads 0.05 too high, +-0.01."""
    fidelity = resolve_fidelity(mode="multi", val_samples=5000, cheap_val=1000)
    spec = SyntheticSpec(
        fidelity=fidelity,
        cheap_noise=0.01,
        cheap_bias=0.05,
        log_path=str(tmp_path_factory.mktemp("log") / "evals.log"),
    )
    run = tmp_path_factory.mktemp("multi") / "run"
    setup = SearchSetup(
        n_trials=24, out_dir=run, study_name="f", workers=2, progress=False, methods=METHODS
    )
    result = execute(space=synthetic_space, evaluator=spec, setup=setup)
    return result, spec, run


def test_promotion_follows_the_rule_and_is_recorded(multi_run, synthetic_space):
    result, spec, run = multi_run
    promoted = kept = 0
    for method in METHODS:
        study = _study(run, result.methods[method].study)
        trials = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(trials) == result.summary["methods"][method]["completed"]
        history: list[CheapResult] = []
        for t in sorted(trials, key=lambda t: t.user_attrs["cheap_seq"]):
            attrs = t.user_attrs
            settings = synthetic_space.settings(t.params)
            cheap = synthetic_cheap_accuracy(settings, noise=0.01, bias=0.05)
            assert attrs["accuracy_cheap"] == pytest.approx(cheap)
            point = CheapResult(t.number, attrs["accuracy_cheap"], (attrs["latency_ms"],))
            decision = decide_promotion(point, history, samples=1000, z=2.0)
            history.append(point)
            assert attrs["promoted"] is decision.promote
            assert attrs["promotion"] == decision.reason
            if decision.promote:  # told once, with the full rung's values
                promoted += 1
                full = synthetic_objectives(settings)[0]
                assert attrs["rung"] == FULL and attrs["val_samples"] == 5000
                assert t.values[0] == pytest.approx(full) == attrs["accuracy_full"]
            else:  # never measured at the full rung: keeps its cheap values and rung 0
                kept += 1
                assert attrs["rung"] == CHEAP and attrs["val_samples"] == 1000
                assert t.values[0] == attrs["accuracy_cheap"] and "accuracy_full" not in attrs
            assert t.values[1] == attrs["latency_ms"]
        assert sorted(t.user_attrs["cheap_seq"] for t in trials) == list(range(len(trials)))
    assert promoted and kept  # both decisions happen in this run
    # counted from the evaluator's own log: a kept trial was never measured in full
    lines = open(spec.log_path, encoding="utf-8").read().splitlines()
    val = [line for line in lines if line.split()[1] == "val"]
    assert sum(line.endswith(" cheap") for line in val) == promoted + kept
    assert sum(not line.endswith(" cheap") for line in val) == promoted


def test_summary_counts_the_rungs(multi_run):
    result, _, run = multi_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fidelity"]["rungs"] == ["cheap", "full"]
    assert summary["fidelity"]["cheap_val"] == 1000
    assert summary["fidelity"]["pareto_and_hypervolume"] == "full-rung trials only"
    for method in METHODS:
        m = summary["methods"][method]
        rungs, this_run = m["rungs"], m["this_run"]
        assert rungs["cheap_only"] + rungs["full"] == m["completed"]
        assert rungs["promoted"] == rungs["full"] == this_run["promoted"]
        assert this_run["evaluations"] == {"cheap": m["completed"], "full": rungs["full"]}
        assert this_run["not_promoted"] == rungs["cheap_only"]


def test_pareto_and_hypervolume_use_full_rung_trials_only(multi_run):
    result, _, run = multi_run
    summary = json.loads((run / "summary.json").read_text())
    w8 = summary["reference"]["w8a8_latency_ms"]
    pareto = _csv(run / "pareto.csv")
    assert pareto and {p["rung"] for p in pareto} == {"1"}
    differs = False
    for method in METHODS:
        trials = _study(run, result.methods[method].study).get_trials(states=(TrialState.COMPLETE,))
        full = [t for t in trials if t.user_attrs["rung"] == FULL]
        assert summary["methods"][method]["hypervolume_val"] == pytest.approx(_hv(full, w8))
        differs |= _hv(trials, w8) > _hv(full, w8) + 1e-12
        numbers = {int(p["number"]) for p in pareto if p["method"] == method}
        assert numbers <= {t.number for t in full}
        for p in (p for p in pareto if p["method"] == method):
            cfg = json.loads((run / "configs" / f"{p['config_id']}.json").read_text())
            assert cfg["accuracy"]["rung"] == 1 and cfg["accuracy"]["val_samples"] == 5000
            assert cfg["accuracy"]["cheap_val_samples"] == 1000
            assert cfg["accuracy"]["cheap_val"] == pytest.approx(float(p["accuracy_cheap"]))
    # the cheap rung reads high here: counting its trials would have changed the numbers
    assert differs
    rows = _csv(run / "trials.csv")
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert {r["rung"] for r in done} == {"0", "1"}
    assert all((r["rung"] == "1") == (r["promoted"] == "True") for r in done)
    assert all(r["accuracy_full"] == "" for r in done if r["rung"] == "0")


def test_a_study_cannot_resume_with_another_fidelity(multi_run, synthetic_space):
    _, spec, run = multi_run
    setup = SearchSetup(n_trials=24, out_dir=run, study_name="f", workers=2, progress=False)
    with pytest.raises(LowbitError, match="another fidelity"):
        execute(space=synthetic_space, evaluator=SyntheticSpec(), setup=setup)


def test_one_rung_measures_every_trial_in_full(ray_session, synthetic_space, tmp_path):
    log = tmp_path / "evals.log"
    spec = SyntheticSpec(fidelity=Fidelity(), log_path=str(log))
    setup = SearchSetup(
        n_trials=5, out_dir=tmp_path / "run", study_name="one", workers=2, progress=False
    )
    execute(space=synthetic_space, evaluator=spec, setup=setup)
    assert "cheap" not in log.read_text()
    for row in _csv(tmp_path / "run" / "trials.csv"):
        assert row["rung"] == "1" and row["promoted"] == "" and row["accuracy_cheap"] == ""
        assert row["accuracy_full"] == row["accuracy_val"]
