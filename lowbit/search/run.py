"""A search run: set up the studies, run every method on the Ray pool, report.

:func:`run_search` (re-exported as ``lowbit.search.run_search``) takes one
:class:`lowbit.search.setup.SearchSetup` for zoo and user models: it makes the model ready
(:mod:`lowbit.search.zoo`, :mod:`lowbit.search.user`), starts Ray and calls :func:`execute`,
which works with any evaluator spec (tests use a synthetic one) and writes the run directory
(see results.py).

What is reported (hypervolume, speed-ups, configs) is defined in :mod:`lowbit.search.summary`.

Rungs (:mod:`lowbit.search.fidelity`): the evaluator spec's ``fidelity`` (zoo searches: the
rung settings of :class:`lowbit.search.setup.ZooModel`) says
whether trials start at the cheap rung; every method, baselines included, runs on the same
rungs with the same promotion rule, and summary.json records the settings under
``fidelity``. A study's definition (checked on resume) includes the fidelity unless it is
the single full rung calibrated on all of val (what studies were before rungs).

Co-design (``co_design=True``, :mod:`lowbit.search.codesign`): the profile's tunables join the
space, the area budget is a constraint, summary.json gets a ``co_design`` section and every
deployment config is written with its hardware under ``hardware``: the ``overrides`` it
chose, their ``area_mm2`` and the variant's ``content_hash`` (the base profile's hash stays
in ``base_content_hash``).
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import TrialState

from lowbit.hwsim import DEFAULT_ENGINE
from lowbit.hwsim.errors import LowbitError

from . import results
from .baselines import method as get_method
from .baselines import uniform_configs
from .evaluator import Reference
from .fidelity import Fidelity
from .greedy import calibrated_warm_configs, pool_measure
from .progress import Progress
from .runner import OBJECTIVES, RayPool, optimize, shutdown_ray, start_ray
from .screen import base_params, load_or_screen, screen_summary
from .setup import SearchResult, SearchSetup, UserModel
from .space import SearchSpace
from .storage import driver_lock, open_storage, recover_interrupted
from .summary import (
    feasible_complete,
    run_summary,
    summarise_method,
    test_fronts,
    trials_hypervolume,
)

__all__ = ["execute", "run_search"]

log = logging.getLogger(__name__)


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
    name,
    *,
    space,
    pool,
    storage,
    setup,
    reference,
    fidelity,
    screen=None,
    screened=None,
    greedy_cache=None,
) -> tuple[optuna.Study, Any]:
    """One method's study: warm starts on a new study (with a screen, its greedy points,
    measured into ``greedy_cache``, shared by the run's methods), then the search."""
    method = get_method(name)
    study_name = method.study_name(setup.study_name)
    mspace = method.space(space, screened=screened)
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
    if method.warm_start is not None and not study.trials:
        hardware, on = _warm_start_hardware(mspace)
        warm = method.warm_start(mspace, pool, setup.seed)
        if screen is not None:  # greedy points from the screen's measurements, calibrated
            measure = pool_measure(pool=pool, space=mspace, rung=screen.rung, cache=greedy_cache)
            before = len(greedy_cache)
            # the screen's base is W8A8 where the target's widest bits are 8: its full-rung
            # accuracy is the reference's, and the floor holds at the full rung
            w8a8_base = base_params(space) == space.uniform_params(8, 8)
            full = reference.w8a8_val if w8a8_base else None
            greedy = calibrated_warm_configs(
                screen, mspace, measure=measure, base_full_accuracy=full
            )
            if not method.bits_only:  # and the quantization-only ones: the space holds them
                greedy += calibrated_warm_configs(
                    screen, mspace, measure=measure, bits_only=True, base_full_accuracy=full
                )
            _say(
                setup,
                f"[screen] {name}: {len(greedy)} greedy warm starts, calibrated with "
                f"{len(greedy_cache) - before} measurements",
            )
            if greedy:  # the measured points supersede the uniformly pruned / low-ranked
                # guesses, never on a front with a screen
                uniform = uniform_configs(mspace, pool, setup.seed)
                warm = [c for c in warm if c in uniform]
            warm += greedy
        warm = [  # points of the space, each once (W4A4 is W4A8 where activations are 8-bit)
            (label, p)
            for i, (label, p) in enumerate(warm)
            if _fits(mspace, p) and p not in [q for _, q in warm[:i]]
        ]
        for label, params in warm[: setup.n_trials]:
            study.enqueue_trial({**params, **hardware}, user_attrs={"label": label + on})
    fixed = method.fixed
    if fixed is None and mspace.size <= setup.n_trials:
        fixed = _every_point  # a space this small is evaluated whole, each point once
    if fixed is not None:
        names = set(mspace.distributions())

        def point(params: dict[str, Any]) -> dict[str, Any]:  # the sampled params only
            return {k: v for k, v in params.items() if k in names}

        known = [  # a waiting (enqueued) trial's params are still its fixed params
            point(t.params or t.system_attrs.get("fixed_params", {}))
            for t in study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING)
            )
        ]
        for label, params in fixed(mspace, pool, setup.seed):
            if point(params) not in known:
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


def _every_point(space: SearchSpace, pool: Any, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """Every configuration of ``space`` (for a space no larger than the trial budget: a
    sampler would only repeat points; quantization-only on a target that runs every
    sub-8-bit layer at 8 bits has one)."""
    dists = space.distributions()
    return [
        ("enumerated", dict(zip(dists, point, strict=True)))
        for point in itertools.product(*(d.choices for d in dists.values()))
    ]


def _say(setup: SearchSetup, line: str) -> None:
    """A line on stderr beside the progress lines (when the setup shows progress)."""
    if setup.progress:
        print(line, file=sys.stderr, flush=True)


def _fits(space: SearchSpace, params: dict[str, Any]) -> bool:
    """Whether ``params`` is a point of ``space`` (a warm start may use a choice the
    sensitivity screen dropped: it then cannot be feasible, and is left out)."""
    try:
        space.settings(params)
    except ValueError:
        return False
    return True


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
    engine = getattr(evaluator, "engine", DEFAULT_ENGINE)  # the simulator engine the spec uses
    fidelity = getattr(evaluator, "fidelity", None) or Fidelity()
    run_dir = setup.out_dir
    storage = open_storage(setup.storage, run_dir=run_dir)
    results.atomic_write_text(run_dir / "space.json", space.to_json() + "\n")
    start = time.perf_counter()
    pool = RayPool(evaluator, workers=setup.workers, ray_address=setup.ray_address)
    screen, screened = None, None
    try:
        w8a8 = space.settings(space.uniform_params(8, 8))
        reference: Reference = pool.call("reference", w8a8=w8a8)
        if setup.screens and any(get_method(m).fixed is None for m in setup.methods):
            _say(setup, "[screen] measuring each layer's choices one at a time ...")
            screen = load_or_screen(
                space=space,
                pool=pool,
                floor=setup.min_accuracy,
                fidelity=fidelity,
                run_dir=run_dir,
                write=results.atomic_write_text,
            )
            screened = screen.apply(space)
            dropped = sum(len(v) for v in screen.dropped.values())
            _say(
                setup,
                f"[screen] {screen.evaluations} evaluations ({screen.seconds:.0f} s): "
                f"{dropped} choices below the floor {screen.floor:.2%} dropped",
            )
        studies, greedy_cache = {}, {}
        for name in setup.methods:
            studies[name] = _run_method(
                name,
                space=space,
                pool=pool,
                storage=storage,
                setup=setup,
                reference=reference,
                fidelity=fidelity,
                screen=screen,
                screened=screened,
                greedy_cache=greedy_cache,
            )
        summaries, pareto_rows, trial_rows = {}, [], []
        tested = test_fronts(
            {name: study for name, (study, _) in studies.items()},
            space=space,
            pool=pool,
            setup=setup,
            screened=screened,
        )
        for name, (study, stats) in studies.items():
            summary, rows = summarise_method(
                name,
                study,
                tested=tested[name],
                space=space,
                setup=setup,
                reference=reference,
                engine=engine,
                run_dir=run_dir,
                stats=stats,
            )
            summaries[name] = summary
            pareto_rows.extend(rows)
            trial_rows.extend(results.trial_rows(study, name))
    finally:
        pool.close()
    results.write_csv(run_dir / "trials.csv", trial_rows, results.TRIAL_COLUMNS)
    results.write_csv(run_dir / "pareto.csv", pareto_rows, results.PARETO_COLUMNS)
    summary = run_summary(
        space=space,
        evaluator=evaluator,
        setup=setup,
        reference=reference,
        engine=engine,
        fidelity=fidelity,
        summaries=summaries,
        seconds=time.perf_counter() - start,
    )
    if screen is not None:
        summary["screen"] = screen_summary(screen, space=space, screened=screened)
    results.write_json(run_dir / "summary.json", summary)
    return SearchResult(run_dir=run_dir, summary=summary, methods=summaries)


def run_search(setup: SearchSetup) -> SearchResult:
    """Multi-objective search of per-layer compression for ``setup.model`` (a
    :class:`ZooModel` or a :class:`UserModel`) on ``setup.hardware``: make the model ready
    (:func:`lowbit.search.zoo.prepare_zoo`, :func:`lowbit.search.user.prepare_user`), start
    Ray unless it runs, ship the model and data to the workers once, :func:`execute`.

    Example (runs Ray; a few minutes)::

        result = run_search(SearchSetup(
            model=ZooModel(name="digits-cnn"), hardware="npu-bitfusion", n_trials=60,
            out_dir="runs/cnn-bitfusion", methods=("joint", "uniform")))
        result.summary["methods"]["joint"]["speedup_vs_w8a8"]

    Raises:
        LowbitError: the setup has no model or hardware, or a setting is invalid (one line).
    """
    if setup.model is None or setup.hardware is None:
        raise LowbitError(
            "run_search: the setup needs a model (ZooModel or UserModel) and a hardware target"
        )
    if isinstance(setup.model, UserModel):
        from .user import prepare_user as prepare
    else:
        from .zoo import prepare_zoo as prepare
    prepared = prepare(setup)
    if setup.study_name is None:
        setup = replace(setup, study_name=prepared.study_name)
    started = start_ray(setup.workers, setup.ray_address)
    try:
        with prepared.evaluator() as evaluator:
            return execute(space=prepared.space, evaluator=evaluator, setup=setup)
    finally:
        if started:
            shutdown_ray()
