"""The driver's ask/tell loop over the Ray pool, with rungs.

Optuna lives on the driver only: it asks for a trial, the trial's per-layer settings go to an
idle Ray actor (:mod:`lowbit.search.pool`; one per worker, each holds the model and data
once), and the result is handled as soon as it arrives (``ray.wait``), so ``workers`` trials
are always in flight. This is the split Ray Tune's ``OptunaSearch`` uses. A trial that
raises, returns NaN, or runs past the per-trial timeout (per rung evaluation) is told as FAIL
with a ``fail_reason`` user attribute; the study goes on (a timed-out actor is killed and
replaced, since a running actor task cannot be interrupted).

Rungs (:mod:`lowbit.search.fidelity`): with two rungs a trial is first measured at the cheap
rung; the promotion rule is applied on arrival and a promoted trial is sent at once to the
worker that has just measured it (which kept the compressed model), at the full rung. A trial
is told once, at its last rung. User attributes of every trial: ``rung`` (0 cheap, 1 full:
where ``accuracy`` and the told values come from), ``val_samples`` (images behind
``accuracy``), ``accuracy_full``; with two rungs also ``accuracy_cheap``, ``cheap_seq`` (the
order of the study's cheap results, which the rule compares against), ``promoted`` and
``promotion`` (the decision and why), and ``duration_cheap_s`` / ``duration_full_s``
(``duration_s`` is their sum).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.trial import TrialState

from .evaluator import TrialOutcome, TrialRequest
from .fidelity import CHEAP, FULL, CheapResult, Fidelity, decide_promotion
from .pool import EvaluatorActor, RayPool, shutdown_ray, start_ray
from .registry import OBJECTIVES, SAMPLERS
from .space import SearchSpace
from .storage import FAIL_REASON_ATTR, fail_running

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "join_generation",
    "make_sampler",
    "objective_values",
    "EvaluatorActor",
    "RayPool",
    "LoopStats",
    "optimize",
    "shutdown_ray",
    "start_ray",
]

log = logging.getLogger(__name__)


def join_generation(study: optuna.Study, trial: optuna.Trial) -> None:
    """Give ``trial`` its generation now if the study's sampler is genetic (NSGA-II/III).

    Optuna's genetic samplers give a trial its generation when they sample it. A trial whose
    parameters were all enqueued (a warm start) is never sampled: it would belong to no
    generation, so it could never be chosen as a parent and the warm start would be lost on
    the evolution (measured: every trial after the warm starts was drawn from random
    parents). :meth:`optuna.samplers.BaseGASampler.get_trial_generation` puts it in the
    current generation, as a sampled trial would be.
    """
    sampler = study.sampler
    if isinstance(sampler, optuna.samplers.BaseGASampler):
        frozen = study.get_trials(deepcopy=False)[trial.number]
        sampler.get_trial_generation(study, frozen)


def make_sampler(name: str, *, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` (see :data:`SAMPLERS`), seeded."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (valid: {', '.join(SAMPLERS)})")
    return SAMPLERS[name](seed, n_trials)


def objective_values(outcome: TrialOutcome, objectives: Sequence[str]) -> list[float]:
    return [float(getattr(outcome, OBJECTIVES[name][0])) for name in objectives]


@dataclass
class LoopStats:
    """Counts of one optimize() call (this run only): trials told, evaluations per rung,
    promotions, and the seconds of every evaluation by rung."""

    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    evaluations: dict[int, int] = field(default_factory=lambda: {CHEAP: 0, FULL: 0})
    promoted: int = 0
    not_promoted: int = 0
    durations: dict[int, list[float]] = field(default_factory=lambda: {CHEAP: [], FULL: []})


@dataclass(slots=True)
class _Flight:
    """A request in flight: its trial, actor, start time, and earlier rung's time."""

    trial: optuna.Trial
    index: int
    started: float
    request: TrialRequest
    earlier_s: float = 0.0


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(FAIL_REASON_ATTR, reason[:500])
    study.tell(trial, state=TrialState.FAIL)


def _finite(outcome: TrialOutcome, objectives: Sequence[str]) -> list[float] | None:
    values = objective_values(outcome, objectives)
    return values if all(math.isfinite(v) for v in values) else None


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    outcome: TrialOutcome,
    *,
    objectives: Sequence[str],
    constraints: dict[str, float],
    total_s: float,
) -> bool:
    """Tell ``outcome`` (the trial's last rung); returns True if the trial completed."""
    trial.set_user_attr("duration_s", total_s)
    if outcome.failed:
        _fail(study, trial, outcome.error or "error")
        return False
    for key, _direction in OBJECTIVES.values():  # every objective's value, searched or not
        trial.set_user_attr(key, float(getattr(outcome, key)))
    trial.set_user_attr("rung", outcome.rung)
    trial.set_user_attr("val_samples", outcome.samples)
    if outcome.rung == FULL:
        trial.set_user_attr("accuracy_full", float(outcome.accuracy))
    values = _finite(outcome, objectives)
    if values is None:
        _fail(study, trial, f"non-finite objective values {objective_values(outcome, objectives)}")
        return False
    # constraints (Optuna 5: Trial.set_constraint before tell; <= 0 is feasible), also kept
    # as user attributes for the CSV
    if "max_latency_ms" in constraints:
        c = outcome.latency_ms - constraints["max_latency_ms"]
        trial.set_constraint("max_latency_ms", c)
        trial.set_user_attr("constraint.max_latency_ms", c)
    if "min_accuracy" in constraints:
        c = constraints["min_accuracy"] - outcome.accuracy
        trial.set_constraint("min_accuracy", c)
        trial.set_user_attr("constraint.min_accuracy", c)
    study.tell(trial, values)
    return True


def _costs(outcome: TrialOutcome, objectives: Sequence[str]) -> tuple[float, ...]:
    """The exact objectives (all minimised; latency first) of an outcome."""
    return tuple(float(getattr(outcome, OBJECTIVES[o][0])) for o in objectives[1:])


def _cheap_history(study: optuna.Study, objectives: Sequence[str]) -> list[CheapResult]:
    """The study's cheap results so far (a resumed study keeps its earlier ones)."""
    keys = [OBJECTIVES[o][0] for o in objectives[1:]]
    out = []
    trials = study.get_trials(deepcopy=False)
    for t in sorted(trials, key=lambda t: (t.user_attrs.get("cheap_seq", 0), t.number)):
        attrs = t.user_attrs
        if "accuracy_cheap" in attrs and all(k in attrs for k in keys):
            costs = tuple(float(attrs[k]) for k in keys)
            out.append(CheapResult(t.number, float(attrs["accuracy_cheap"]), costs))
    return out


def _cheap_result(
    trial: optuna.Trial,
    outcome: TrialOutcome,
    *,
    history: list[CheapResult],
    fidelity: Fidelity,
    objectives: Sequence[str],
    constraints: dict[str, float],
) -> bool:
    """Record a trial's cheap-rung outcome and decide its promotion (module docstring)."""
    trial.set_user_attr("accuracy_cheap", float(outcome.accuracy))
    for key in ("latency_ms", "energy_mj", "size_kib"):
        trial.set_user_attr(key, float(getattr(outcome, key)))
    point = CheapResult(trial.number, float(outcome.accuracy), _costs(outcome, objectives))
    decision = decide_promotion(
        point,
        history,
        samples=outcome.samples or fidelity.cheap_val or 1,
        z=fidelity.margin_se,
        max_latency_ms=constraints.get("max_latency_ms"),
        min_accuracy=constraints.get("min_accuracy"),
    )
    trial.set_user_attr("cheap_seq", len(history))
    trial.set_user_attr("promoted", decision.promote)
    trial.set_user_attr("promotion", decision.reason)
    history.append(point)
    return decision.promote


def optimize(
    study: optuna.Study,
    space: SearchSpace,
    pool: RayPool,
    *,
    n_trials: int,
    objectives: Sequence[str],
    constraints: dict[str, float] | None = None,
    method: str = "joint",
    trial_timeout_s: float | None = None,
    max_asks: int | None = None,
    fidelity: Fidelity | None = None,
    on_result: Callable[[LoopStats], None] | None = None,
) -> LoopStats:
    """Run ``study`` until it has ``n_trials`` COMPLETE trials (earlier runs count).

    Asks at most ``max_asks`` new trials (default: the missing completions plus as many
    failures) so a study whose every trial fails still ends. ``fidelity`` (default: the full
    rung only) gives the rungs and the promotion margin (module docstring).
    """
    constraints = dict(constraints or {})
    fidelity = fidelity or Fidelity()
    stats = LoopStats()
    start = time.perf_counter()
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if max_asks is None:
        max_asks = 2 * max(0, n_trials - done)
    history = _cheap_history(study, objectives) if fidelity.multi else []
    # trials running already are not this call's (none in a run: the driver recovered them)
    earlier = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    asks = 0
    idle = list(range(pool.size))
    flying: dict[Any, _Flight] = {}

    def finish(flight: _Flight, outcome: TrialOutcome) -> int:
        """Tell the trial's last rung; 1 if it completed."""
        total = flight.earlier_s + outcome.duration_s
        told = _tell(
            study,
            flight.trial,
            outcome,
            objectives=objectives,
            constraints=constraints,
            total_s=total,
        )
        stats.completed += told
        stats.failed += not told
        return int(told)

    try:
        while True:
            while idle and done + len(flying) < n_trials and asks < max_asks:
                trial = study.ask()
                asks += 1
                join_generation(study, trial)
                trial.set_user_attr("method", method)
                try:
                    params = space.suggest(trial)
                    request = TrialRequest(
                        trial.number, space.settings(params), rung=fidelity.first_rung
                    )
                except Exception as exc:
                    _fail(study, trial, f"bad parameters: {exc}")  # never leave it RUNNING
                    raise
                index = idle.pop()
                flying[pool.submit(index, request)] = _Flight(
                    trial, index, time.monotonic(), request
                )
            if not flying:
                break
            wait_s = 1.0
            if trial_timeout_s is not None:
                oldest = min(f.started for f in flying.values())
                wait_s = max(0.01, min(wait_s, oldest + trial_timeout_s - time.monotonic()))
            ready = pool.wait(list(flying), timeout=wait_s)
            for ref in ready:
                flight = flying.pop(ref)
                idle.append(flight.index)
                try:
                    outcome = pool.get(ref)
                except Exception as exc:  # noqa: BLE001 - a dead actor fails its trial only
                    pool.restart(flight.index)
                    _fail(study, flight.trial, f"worker error: {type(exc).__name__}: {exc}")
                    stats.failed += 1
                    continue
                rung = flight.request.rung
                if not outcome.failed:
                    stats.evaluations[rung] += 1
                    stats.durations[rung].append(outcome.duration_s)
                    flight.trial.set_user_attr(
                        "duration_cheap_s" if rung == CHEAP else "duration_full_s",
                        outcome.duration_s,
                    )
                if rung == CHEAP and not outcome.failed and _finite(outcome, objectives):
                    promote = _cheap_result(
                        flight.trial,
                        outcome,
                        history=history,
                        fidelity=fidelity,
                        objectives=objectives,
                        constraints=constraints,
                    )
                    if promote:
                        # the worker that measured the cheap rung kept the compressed model
                        stats.promoted += 1
                        idle.remove(flight.index)
                        request = replace(flight.request, rung=FULL)
                        flying[pool.submit(flight.index, request)] = _Flight(
                            flight.trial,
                            flight.index,
                            time.monotonic(),
                            request,
                            earlier_s=outcome.duration_s,
                        )
                        continue
                    stats.not_promoted += 1
                done += finish(flight, outcome)
            if trial_timeout_s is not None:
                now = time.monotonic()
                for ref, flight in list(flying.items()):
                    if now - flight.started > trial_timeout_s:
                        flying.pop(ref)
                        pool.restart(flight.index)
                        idle.append(flight.index)
                        _fail(study, flight.trial, f"timeout after {trial_timeout_s:g} s")
                        stats.failed += 1
            if on_result is not None:
                stats.seconds = time.perf_counter() - start
                on_result(stats)
    except BaseException as exc:
        # Ctrl-C, SIGTERM or a driver error: the trials asked here and not told never will
        # be (those in flight, and one caught between its ask and its submission)
        cause = (str(exc) if isinstance(exc, KeyboardInterrupt) else "") or type(exc).__name__
        storage = study._storage  # Optuna has no public handle on a study's storage
        fail_running(storage, study.study_name, reason=f"interrupted ({cause})", keep=earlier)
        raise
    stats.seconds = time.perf_counter() - start
    if done < n_trials:
        log.warning(
            "study %s: stopped after %d asks with %d/%d completed trials (too many failures)",
            study.study_name,
            asks,
            done,
            n_trials,
        )
    return stats
