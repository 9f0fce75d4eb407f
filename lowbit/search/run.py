"""A search run: set up the studies, run every method on the Ray pool, report.

:func:`run_search` (re-exported as ``search.run_search``) is the zoo entry point; it derives
the space from the model and profile and calls :func:`execute`, which works with any
evaluator spec (tests use a synthetic one) and writes the run directory (see results.py).

What is reported (hypervolume, speed-ups, configs) is defined in :mod:`lowbit.search.summary`.

Rungs (:mod:`lowbit.search.fidelity`): the evaluator spec's ``fidelity`` (zoo searches:
``fidelity``/``cheap_val``/``calib_samples``/``promote_margin`` of :func:`run_search`) says
whether trials start at the cheap rung; every method, baselines included, runs on the same
rungs with the same promotion rule, and summary.json records the settings under
``fidelity``. A study's definition (checked on resume) includes the fidelity unless it is
the single full rung calibrated on all of val (what studies were before rungs).

Co-design (``co_design=True``, :mod:`lowbit.search.codesign`): the profile's tunables join the
space, the area budget is a constraint, summary.json gets a ``co_design`` section and every
deployment config records its hardware under ``hardware``: the ``overrides`` it chose,
their ``area_mm2`` and the variant's ``content_hash`` (the base profile's hash stays in
``base_content_hash``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profile import HardwareProfile

from . import results
from .baselines import method as get_method
from .baselines import uniform_configs
from .codesign import CoDesign, build_codesign, record_hardware
from .evaluator import Reference
from .fidelity import (
    DEFAULT_CALIB_SAMPLES,
    DEFAULT_CHEAP_VAL,
    DEFAULT_MARGIN_SE,
    Fidelity,
    resolve_fidelity,
)
from .progress import Progress
from .runner import OBJECTIVES, SAMPLERS, RayPool, optimize, shutdown_ray, start_ray
from .space import SearchSpace, build_space, describe_model
from .storage import driver_lock, open_storage, recover_interrupted
from .summary import (
    MethodSummary,
    feasible_complete,
    run_summary,
    summarise_method,
    test_fronts,
    trials_hypervolume,
)
from .zoo_evaluator import ZooEvaluatorSpec, share_zoo_data

__all__ = ["SearchSetup", "SearchResult", "execute", "run_search", "zoo_space"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SearchSetup:
    """Everything about a run except the model/target (which the space and spec carry)."""

    n_trials: int
    out_dir: Path
    study_name: str
    workers: int = 1
    storage: str | None = None
    sampler: str = "nsga2"
    seed: int = 0
    ray_address: str | None = None
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    methods: tuple[str, ...] = ("joint",)
    objectives: tuple[str, ...] = ("accuracy", "latency")
    trial_timeout_s: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        problems = []
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            problems.append(f"n_trials: must be a positive integer, got {self.n_trials!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            problems.append(f"workers: must be a positive integer, got {self.workers!r}")
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler: unknown {self.sampler!r} (valid: {', '.join(SAMPLERS)})")
        for name in self.methods:
            try:
                get_method(name)
            except ValueError as exc:
                problems.append(f"methods: {exc}")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown:
            problems.append(f"objectives: unknown {unknown} (valid: {', '.join(OBJECTIVES)})")
        if self.objectives[:2] != ("accuracy", "latency"):
            problems.append("objectives: must start with accuracy, latency")
        if len(set(self.objectives)) != len(self.objectives):
            problems.append(f"objectives: repeated names in {list(self.objectives)}")
        for key in ("max_latency_ms", "trial_timeout_s"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                problems.append(f"{key}: must be > 0, got {value!r}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            problems.append(f"min_accuracy: must be a fraction in [0, 1], got {self.min_accuracy}")
        if problems:
            raise LowbitError("invalid search settings: " + "; ".join(problems))

    @property
    def constraints(self) -> dict[str, float]:
        out = {}
        if self.max_latency_ms is not None:
            out["max_latency_ms"] = float(self.max_latency_ms)
        if self.min_accuracy is not None:
            out["min_accuracy"] = float(self.min_accuracy)
        return out


@dataclass(frozen=True, slots=True)
class SearchResult:
    run_dir: Path
    summary: dict[str, Any]
    methods: dict[str, MethodSummary] = field(default_factory=dict)


def _open_study(
    storage, name: str, setup: SearchSetup, space: SearchSpace, sampler, fidelity: Fidelity
):
    recovered = recover_interrupted(storage, name)
    if recovered:
        log.warning("study %s: trials %s were left running and are now FAIL", name, recovered)
    directions = [OBJECTIVES[o][1] for o in setup.objectives]
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        directions=directions,
        load_if_exists=True,
    )
    definition: dict[str, Any] = {"space": space.to_dict(), "objectives": list(setup.objectives)}
    if not fidelity.legacy:
        definition["fidelity"] = fidelity.definition()
    key = json.dumps(definition)
    stored = study.user_attrs.get("definition")
    if stored is None:
        study.set_user_attr("definition", key)
    elif stored != key:
        raise LowbitError(
            f"study {name!r} in this storage was created with another search space, other "
            "objectives or another fidelity; use a new --study name or --out directory"
        )
    return study


def _run_method(
    name, *, space, pool, storage, setup, reference, fidelity
) -> tuple[optuna.Study, Any]:
    method = get_method(name)
    study_name = method.study_name(setup.study_name)
    mspace = method.space(space)
    existing = 0
    try:
        existing = len(storage.get_all_trials(storage.get_study_id_from_name(study_name)))
    except KeyError:
        pass
    # a resumed study gets a different seed so it does not replay the first trials
    sampler = method.make_sampler(
        setup.sampler, seed=setup.seed + 7919 * existing, n_trials=setup.n_trials
    )
    study = _open_study(storage, study_name, setup, mspace, sampler, fidelity)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    n_trials, max_asks = setup.n_trials, None
    if method.warm_start and not study.trials:
        hardware, on = _warm_start_hardware(mspace)
        for label, params in uniform_configs(mspace, pool, setup.seed)[: setup.n_trials]:
            study.enqueue_trial({**params, **hardware}, user_attrs={"label": label + on})
    if method.fixed is not None:
        known = [
            t.params
            for t in study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING)
            )
        ]
        for label, params in method.fixed(mspace, pool, setup.seed):
            if params not in known:
                study.enqueue_trial(params, user_attrs={"label": label})
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        n_trials, max_asks = done + waiting, waiting
    progress = Progress(name, total=max(0, n_trials - done), enabled=setup.progress)

    def report(stats) -> None:
        trials = feasible_complete(study)
        hv = trials_hypervolume(trials, reference.w8a8_latency_ms) if trials else None
        progress.update(done=stats.completed, failed=stats.failed, hypervolume=hv)

    try:
        stats = optimize(
            study,
            mspace,
            pool,
            n_trials=n_trials,
            objectives=setup.objectives,
            constraints=setup.constraints,
            method=name,
            trial_timeout_s=setup.trial_timeout_s,
            max_asks=max_asks,
            fidelity=fidelity,
            on_result=report,
        )
    finally:
        progress.close()
    return study, stats


def _warm_start_hardware(space: SearchSpace) -> tuple[dict[str, Any], str]:
    """Co-design: the ``hw:`` params the warm start uses when the profile as given is over
    the area budget (:meth:`lowbit.search.codesign.CoDesign.warm_start_overrides`) and a label
    suffix saying so; ``({}, "")`` otherwise."""
    codesign = space.codesign
    if codesign is None:
        return {}, ""
    overrides = codesign.warm_start_overrides()
    if overrides is None or overrides == codesign.overrides({}):
        return {}, ""
    params = {c.param: overrides[c.key] for c in codesign.choices if len(c.values) > 1}
    return params, " (largest hardware within the area budget)"


def execute(*, space: SearchSpace, evaluator: Any, setup: SearchSetup) -> SearchResult:
    """Run ``setup.methods`` with ``evaluator`` (a picklable spec with ``build()``, and a
    ``fidelity`` if it measures at two rungs) on ``space``; write the run directory and
    return its summary. Holds the study's driver lock throughout (a second driver of the
    study is refused: :func:`lowbit.search.storage.driver_lock`)."""
    with driver_lock(setup.storage, run_dir=setup.out_dir, study=setup.study_name):
        return _execute(space=space, evaluator=evaluator, setup=setup)


def _execute(*, space: SearchSpace, evaluator: Any, setup: SearchSetup) -> SearchResult:
    engine = getattr(evaluator, "engine", "analytic")  # the simulator engine the spec uses
    fidelity = getattr(evaluator, "fidelity", None) or Fidelity()
    run_dir = setup.out_dir
    storage = open_storage(setup.storage, run_dir=run_dir)
    results.atomic_write_text(run_dir / "space.json", space.to_json() + "\n")
    start = time.perf_counter()
    pool = RayPool(evaluator, workers=setup.workers, ray_address=setup.ray_address)
    try:
        w8a8 = space.settings(space.uniform_params(8, 8))
        reference: Reference = pool.call("reference", w8a8=w8a8)
        studies = {}
        for name in setup.methods:
            studies[name] = _run_method(
                name, space=space, pool=pool, storage=storage, setup=setup, reference=reference,
                fidelity=fidelity,
            )  # fmt: skip
        summaries, pareto_rows, trial_rows = {}, [], []
        tested = test_fronts(
            {name: study for name, (study, _) in studies.items()}, space=space, pool=pool,
            setup=setup,
        )  # fmt: skip
        for name, (study, stats) in studies.items():
            summary, rows = summarise_method(
                name, study, tested=tested[name], space=space, setup=setup,
                reference=reference, engine=engine, run_dir=run_dir, stats=stats,
            )  # fmt: skip
            summaries[name] = summary
            pareto_rows.extend(rows)
            trial_rows.extend(results.trial_rows(study, name))
    finally:
        pool.close()
    results.write_csv(run_dir / "trials.csv", trial_rows, results.TRIAL_COLUMNS)
    results.write_csv(run_dir / "pareto.csv", pareto_rows, results.PARETO_COLUMNS)
    if space.codesign is not None:
        record_hardware(run_dir, codesign=space.codesign, pareto_rows=pareto_rows)
    summary = run_summary(
        space=space, evaluator=evaluator, setup=setup, reference=reference, engine=engine,
        fidelity=fidelity, summaries=summaries, seconds=time.perf_counter() - start,
    )  # fmt: skip
    results.write_json(run_dir / "summary.json", summary)
    return SearchResult(run_dir=run_dir, summary=summary, methods=summaries)


def _profile(hardware: str | Path | HardwareProfile) -> HardwareProfile:
    if isinstance(hardware, HardwareProfile):
        return hardware
    from lowbit.hwsim.profiles import load_profile

    return load_profile(hardware)


def run_search(
    *,
    model: str,
    hardware: str | Path | HardwareProfile,
    n_trials: int,
    out_dir: str | Path,
    workers: int = 1,
    study_name: str | None = None,
    storage: str | None = None,
    sampler: str = "nsga2",
    seed: int = 0,
    ray_address: str | None = None,
    max_latency_ms: float | None = None,
    min_accuracy: float | None = None,
    methods: tuple[str, ...] = ("joint",),
    objectives: tuple[str, ...] = ("accuracy", "latency"),
    pin_first_last: bool = False,
    trial_timeout_s: float | None = None,
    finetune_steps: int = 0,
    progress: bool = True,
    co_design: bool = False,
    area_budget_mm2: float | None = None,
    fidelity: str = "auto",
    cheap_val: int = DEFAULT_CHEAP_VAL,
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    promote_margin: float = DEFAULT_MARGIN_SE,
) -> SearchResult:
    """Multi-objective search of per-layer compression for zoo ``model`` on ``hardware``.

    With ``co_design`` the profile's ``[[tunables]]`` are searched too, under the area
    budget ``area_budget_mm2`` (mm², from the profile's ``[area]`` model); ``hardware``
    must then be a built-in name or a ``.toml`` file (its raw data is varied).

    Rungs (:mod:`lowbit.search.fidelity`): ``fidelity`` ``auto`` (two rungs when val has
    more than 2,000 images), ``multi`` or ``full``; ``cheap_val`` val images at the cheap
    rung, ``calib_samples`` calibration images (every rung), ``promote_margin`` the
    promotion margin in standard errors. The trained model and the val/test tensors go to
    the workers once, through Ray's object store.

    Example (runs Ray; a few minutes)::

        result = run_search(model="digits-cnn", hardware="npu-bitfusion", n_trials=60,
                            out_dir="runs/cnn-bitfusion", methods=("joint", "uniform"))
        result.summary["methods"]["joint"]["speedup_vs_w8a8"]
    """
    if area_budget_mm2 is not None and not co_design:
        raise LowbitError("an area budget needs co-design (co_design=True / --co-design)")
    codesign = None
    if co_design:
        if isinstance(hardware, HardwareProfile):
            raise LowbitError(
                "co-design needs the profile as a built-in name or a .toml file, not a "
                "built HardwareProfile"
            )
        try:
            codesign, profile = build_codesign(hardware, area_budget_mm2=area_budget_mm2)
        except ValueError as exc:
            raise LowbitError(str(exc)) from None
    else:
        profile = _profile(hardware)
    space = zoo_space(model, profile, pin_first_last=pin_first_last, codesign=codesign)
    setup = SearchSetup(
        n_trials=n_trials,
        out_dir=Path(out_dir),
        study_name=study_name or f"{model}-{profile.name}-s{seed}",
        workers=workers,
        storage=storage,
        sampler=sampler,
        seed=seed,
        ray_address=ray_address,
        max_latency_ms=max_latency_ms,
        min_accuracy=min_accuracy,
        methods=tuple(methods),
        objectives=tuple(objectives),
        trial_timeout_s=trial_timeout_s,
        progress=progress,
    )
    if not isinstance(finetune_steps, int) or finetune_steps < 0:
        raise LowbitError(f"finetune_steps must be a non-negative integer, got {finetune_steps!r}")
    from lowbit import models
    from lowbit.models.data import split_sizes

    # train once here, not once per worker; a model trained now shows its progress
    base = models.load_trained(model, seed=seed, progress=progress or None)
    resolved = resolve_fidelity(
        mode=fidelity, val_samples=split_sizes(base.dataset)["val"], cheap_val=cheap_val,
        calib_samples=calib_samples, margin_se=promote_margin,
    )  # fmt: skip
    spec = ZooEvaluatorSpec(
        model=model, profile=profile, seed=seed, pin_first_last=pin_first_last,
        finetune_steps=finetune_steps, codesign=codesign, fidelity=resolved,
    )  # fmt: skip
    started = start_ray(workers, ray_address)
    try:
        return execute(space=space, evaluator=share_zoo_data(spec), setup=setup)
    finally:
        if started:
            shutdown_ray()


def zoo_space(
    model: str,
    hardware: str | Path | HardwareProfile,
    *,
    pin_first_last: bool = False,
    codesign: CoDesign | None = None,
) -> SearchSpace:
    """The search space of zoo ``model`` on ``hardware`` (no training, no Ray); with
    ``codesign`` (:func:`lowbit.search.codesign.build_codesign`) the hardware parameters too."""
    from lowbit.models.zoo import build

    profile = _profile(hardware)
    layers = describe_model(build(model))
    return build_space(
        layers, profile, model=model, pin_first_last=pin_first_last, codesign=codesign
    )
