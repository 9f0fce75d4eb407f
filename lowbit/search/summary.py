"""What a run reports: Pareto sets re-evaluated on test, hypervolumes, speed-ups, configs.

Hypervolume (stated in summary.json): 2-D, accuracy (maximise, fraction 0-1) vs latency
normalised by the uniform W8A8 latency of the same model on the same target (minimise), with
the fixed reference point (accuracy 0, latency 2 × W8A8). The largest possible value is 2.0;
normalising makes values comparable across methods, models and targets.

"Best within 1 point": among a method's Pareto configurations whose *val* accuracy is at
most 1 point below FP32 val (the ranking split), the fastest; its *test* accuracy is reported.

Rungs (:mod:`lowbit.search.fidelity`): the Pareto sets, the configs and the hypervolumes use
full-rung trials only (accuracy on the whole val split, QAT included), so they compare with
runs that had one rung; trials left at the cheap rung are counted per method under
``rungs`` and listed in trials.csv.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

import optuna
from optuna.trial import TrialState

from lowbit.hwsim.profile import HardwareProfile

from . import results
from .baselines import method as get_method
from .codesign import hardware_variant
from .config import DeploymentConfig
from .evaluator import TrialOutcome, TrialRequest
from .fidelity import CHEAP, FULL, Fidelity
from .pareto import hypervolume_2d, non_dominated
from .runner import OBJECTIVES

__all__ = [
    "HV_REFERENCE",
    "HV_DIRECTIONS",
    "ONE_POINT",
    "MethodSummary",
    "feasible_complete",
    "trials_hypervolume",
    "pareto_trials",
    "summarise_method",
    "test_fronts",
    "describe_spec",
    "run_summary",
    "summary_dict",
]

log = logging.getLogger(__name__)

#: (accuracy, latency / W8A8 latency) reference point of every hypervolume
HV_REFERENCE = (0.0, 2.0)
HV_DIRECTIONS = ("maximize", "minimize")
#: "within 1 point of FP32": accuracy is a fraction, so 1 point = 0.01
ONE_POINT = 0.01


@dataclass(frozen=True, slots=True)
class MethodSummary:
    """One method's results (see the module docstring for the definitions)."""

    name: str
    study: str
    completed: int
    failed: int
    hypervolume_val: float
    hypervolume_test: float
    pareto: tuple[str, ...]
    best_within_1pt: dict[str, Any] | None
    speedup_vs_w8a8: float | None
    this_run: dict[str, Any]
    rungs: dict[str, int] | None = None


def _norm_points(trials: list, w8a8_ms: float) -> list[tuple[float, float]]:
    return [(t.user_attrs["accuracy"], t.user_attrs["latency_ms"] / w8a8_ms) for t in trials]


def trial_rung(trial) -> int:
    """The rung a trial's values come from (trials of runs before rungs: full)."""
    return int(trial.user_attrs.get("rung", FULL))


def feasible_complete(study: optuna.Study) -> list:
    """Full-rung COMPLETE trials whose constraints (if any) all hold (<= 0): what the Pareto
    sets and hypervolumes are computed from."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [
        t for t in trials if trial_rung(t) == FULL and all(v <= 0 for v in t.constraints.values())
    ]


def trials_hypervolume(trials: list, w8a8_ms: float) -> float:
    """Hypervolume of ``trials`` in the (accuracy, latency / W8A8) plane (module docstring)."""
    return hypervolume_2d(
        _norm_points(trials, w8a8_ms), reference=HV_REFERENCE, directions=HV_DIRECTIONS
    )


def pareto_trials(study: optuna.Study, objectives: tuple[str, ...]) -> list:
    """Feasible trials non-dominated in all the study's objectives, one per distinct params
    (the lowest trial number)."""
    trials = feasible_complete(study)
    directions = [OBJECTIVES[o][1] for o in objectives]
    front = [trials[i] for i in non_dominated([t.values for t in trials], directions=directions)]
    seen, out = set(), []
    for t in sorted(front, key=lambda t: t.number):
        key = json.dumps(t.params, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def _config(
    cid: str, trial, outcome: TrialOutcome, *, study, method, space, reference, setup, engine
) -> DeploymentConfig:
    m = reference.measurement
    measured: dict[str, Any] = {}
    if m is not None:
        measured = dict(
            qat_steps=m.qat_steps,
            qat_seed=m.qat_seed,
            calib_split=m.calib_split,
            calib_samples=m.calib_samples,
            calib_seed=m.calib_seed,
            calib_sha256=m.calib_sha256,
            val_samples=m.val_samples,
            test_samples=m.test_samples,
            threads=m.threads,
            cheap_val_samples=m.cheap_val_samples,
        )
    cheap = trial.user_attrs.get("accuracy_cheap")
    hardware_hash, variant = space.hardware_hash, None
    if space.codesign is not None:  # the trial's own hardware, recorded in the same file
        hardware_hash, variant = hardware_variant(space.codesign, trial.params)
    return DeploymentConfig(
        id=cid,
        model=space.model,
        dataset=reference.dataset,
        seed=setup.seed,
        hardware=space.hardware,
        hardware_hash=hardware_hash,
        hardware_variant=variant,
        method=method,
        study=study.study_name,
        trial_number=trial.number,
        plan=json.loads(outcome.plan_json) if outcome.plan_json else {},
        accuracy_val=float(trial.user_attrs["accuracy"]),
        accuracy_test=float(outcome.accuracy),
        fp32_val=reference.fp32_val,
        fp32_test=reference.fp32_test,
        engine=engine,
        latency_ms=float(outcome.latency_ms),
        energy_mj=float(outcome.energy_mj),
        total_cycles=int(outcome.total_cycles),
        size_kib=float(outcome.size_kib),
        layers=outcome.layers,
        lowbit_version=results.versions()["lowbit"],
        rung=trial_rung(trial),
        accuracy_cheap=None if cheap is None else float(cheap),
        **measured,
    )


def test_fronts(
    studies: dict[str, optuna.Study], *, space, pool, setup, screened=None
) -> dict[str, list]:
    """Each method's Pareto trials with their outcome on test, as ``(trial, outcome)``.

    Every distinct configuration is measured once, and all of them in one parallel map:
    methods share configurations (the warm starts and the uniform baselines), and the
    evaluation is deterministic (same plan, calibration subset and QAT seed), so a
    configuration on two fronts has one test outcome, reported under each trial's number.
    """
    fronts = {name: pareto_trials(study, setup.objectives) for name, study in studies.items()}
    requests: dict[str, TrialRequest] = {}
    keys: dict[tuple[str, int], str] = {}
    for name, front in fronts.items():
        mspace = get_method(name).space(space, screened=screened)
        for trial in front:
            settings = mspace.settings(trial.params)
            key = json.dumps(settings, sort_keys=True)
            keys[name, trial.number] = key
            requests.setdefault(
                key, TrialRequest(trial.number, settings, split="test", detail=True)
            )
    measured = pool.map(list(requests.values())) if requests else []
    outcomes = dict(zip(requests, measured, strict=True))
    return {
        name: [(t, replace(outcomes[keys[name, t.number]], number=t.number)) for t in front]
        for name, front in fronts.items()
    }


def summarise_method(name, study, *, tested, space, setup, reference, engine, run_dir, stats):
    """The method's summary + Pareto rows from its Pareto trials measured on test
    (``tested``: :func:`test_fronts`); writes their deployment configs."""
    w8 = reference.w8a8_latency_ms
    rows, ids, kept = [], [], []
    for trial, outcome in tested:
        if outcome.failed:
            log.warning("%s trial %d failed on test: %s", name, trial.number, outcome.error)
            continue
        cid = f"{name}-{trial.number:05d}"
        cfg = _config(
            cid,
            trial,
            outcome,
            study=study,
            method=name,
            space=space,
            reference=reference,
            setup=setup,
            engine=engine,
        )
        cfg.write(run_dir / "configs" / f"{cid}.json")
        ids.append(cid)
        kept.append((trial, outcome))
        rows.append(
            {
                "method": name,
                "config_id": cid,
                "number": trial.number,
                "accuracy_val": trial.user_attrs["accuracy"],
                "accuracy_test": outcome.accuracy,
                "latency_ms": outcome.latency_ms,
                "latency_vs_w8a8": outcome.latency_ms / w8,
                "energy_mj": outcome.energy_mj,
                "size_kib": outcome.size_kib,
                "params": json.dumps(trial.params, sort_keys=True),
                "rung": trial_rung(trial),
                "val_samples": trial.user_attrs.get("val_samples", ""),
                "accuracy_cheap": trial.user_attrs.get("accuracy_cheap", ""),
            }
        )
    hv_test = hypervolume_2d(
        [(o.accuracy, o.latency_ms / w8) for _, o in kept],
        reference=HV_REFERENCE,
        directions=HV_DIRECTIONS,
    )
    ok = [(t, o) for t, o in kept if t.user_attrs["accuracy"] >= reference.fp32_val - ONE_POINT]
    best = None
    if ok:
        t, o = min(ok, key=lambda p: (p[1].latency_ms, -p[0].user_attrs["accuracy"]))
        best = {
            "config_id": f"{name}-{t.number:05d}",
            "latency_ms": o.latency_ms,
            "latency_vs_w8a8": o.latency_ms / w8,
            "accuracy_val": t.user_attrs["accuracy"],
            "accuracy_test": o.accuracy,
            "test_loss_points": (reference.fp32_test - o.accuracy) * 100,
        }
    all_trials = study.get_trials(deepcopy=False)
    states = [t.state for t in all_trials]
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    summary = MethodSummary(
        name=name,
        study=study.study_name,
        completed=states.count(TrialState.COMPLETE),
        failed=states.count(TrialState.FAIL),
        hypervolume_val=trials_hypervolume(feasible_complete(study), w8),
        hypervolume_test=hv_test,
        pareto=tuple(ids),
        best_within_1pt=best,
        speedup_vs_w8a8=(w8 / best["latency_ms"]) if best else None,
        this_run={
            "completed": stats.completed,
            "failed": stats.failed,
            "seconds": stats.seconds,
            "trials_per_minute": 60 * stats.completed / stats.seconds if stats.seconds else None,
            "evaluations": {"cheap": stats.evaluations[CHEAP], "full": stats.evaluations[FULL]},
            "promoted": stats.promoted,
            "not_promoted": stats.not_promoted,
            "median_seconds": {
                "cheap": _median(stats.durations[CHEAP]),
                "full": _median(stats.durations[FULL]),
            },
        },
        rungs={
            "cheap_only": sum(trial_rung(t) == CHEAP for t in complete),
            "full": sum(trial_rung(t) == FULL for t in complete),
            "promoted": sum(t.user_attrs.get("promoted") is True for t in complete),
        },
    )
    return summary, rows


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def describe_spec(spec: Any) -> dict[str, Any]:
    """The evaluator spec's settings for summary.json (the profile is named elsewhere)."""
    out: dict[str, Any] = {"type": type(spec).__name__}
    if is_dataclass(spec):
        for f in fields(spec):
            value = getattr(spec, f.name)
            if isinstance(value, HardwareProfile) or f.metadata.get("summary") is False:
                continue
            out[f.name] = value.to_dict() if isinstance(value, Fidelity) else value
    return out


def summary_dict(s: MethodSummary) -> dict[str, Any]:
    return {
        "study": s.study,
        "completed": s.completed,
        "failed": s.failed,
        "hypervolume_val": s.hypervolume_val,
        "hypervolume_test": s.hypervolume_test,
        "pareto": list(s.pareto),
        "best_within_1pt": s.best_within_1pt,
        "speedup_vs_w8a8": s.speedup_vs_w8a8,
        "this_run": s.this_run,
        "rungs": s.rungs,
    }


def run_summary(
    *, space, evaluator, setup, reference, engine, fidelity: Fidelity, summaries, seconds
) -> dict[str, Any]:
    """summary.json of a run (:func:`lowbit.search.run.execute`)."""
    constraints = dict(setup.constraints)
    described = describe_spec(evaluator)
    if space.codesign is not None:
        described.pop("codesign", None)  # summary.json's co_design section says it all
        if space.codesign.area_budget_mm2 is not None:
            constraints["max_area_mm2"] = space.codesign.area_budget_mm2
    m = reference.measurement
    summary = {
        "schema_version": 1,
        "run_dir": str(setup.out_dir),
        "model": space.model,
        "dataset": reference.dataset,
        "hardware": {"name": space.hardware, "content_hash": space.hardware_hash},
        "study": setup.study_name,
        "seed": setup.seed,
        "sampler": setup.sampler,
        "n_trials": setup.n_trials,
        "workers": setup.workers,
        "objectives": list(setup.objectives),
        "constraints": constraints,
        "engine": engine,
        "evaluator": described,
        "fidelity": {
            **fidelity.to_dict(),
            "measurement": None if m is None else {f.name: getattr(m, f.name) for f in fields(m)},
            "pareto_and_hypervolume": "full-rung trials only",
        },
        "search_space": {"parameters": len(space.distributions()), "size": space.size},
        "reference": {
            "fp32_val": reference.fp32_val,
            "fp32_test": reference.fp32_test,
            "w8a8_latency_ms": reference.w8a8_latency_ms,
            "w8a8_energy_mj": reference.w8a8_energy_mj,
            "w8a8_val": reference.w8a8_val,
            "w8a8_test": reference.w8a8_test,
        },
        "hypervolume": {
            "objectives": ["accuracy", "latency / w8a8_latency"],
            "directions": list(HV_DIRECTIONS),
            "reference_point": list(HV_REFERENCE),
            "max": HV_REFERENCE[1],
            "trials": "full-rung trials only",
        },
        "methods": {name: summary_dict(s) for name, s in summaries.items()},
        "seconds": seconds,
        "versions": results.versions(),
    }
    if space.codesign is not None:
        summary["co_design"] = space.codesign.describe()
    # a spec may state its own sections (a user model: its metric and user_model.json)
    summary.update(getattr(evaluator, "summary_sections", None) or {})
    return summary
