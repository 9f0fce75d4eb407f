"""The driver's ask/tell loop and the Ray actor pool that evaluates trials.

Optuna lives on the driver only: it asks for a trial, the trial's per-layer settings go to an
idle Ray actor (one per worker; each holds the model and data once), and the result is told
back as soon as it arrives (``ray.wait``), so ``workers`` trials are always in flight. This is
the split Ray Tune's ``OptunaSearch`` uses. A trial that raises, returns NaN, or runs past the
per-trial timeout is told as FAIL with a ``fail_reason`` user attribute; the study goes on
(a timed-out actor is killed and replaced, since a running actor task cannot be interrupted).
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from .evaluator import TrialOutcome, TrialRequest
from .space import SearchSpace
from .storage import FAIL_REASON_ATTR

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "make_sampler",
    "objective_values",
    "EvaluatorActor",
    "RayPool",
    "LoopStats",
    "optimize",
]

log = logging.getLogger(__name__)

#: objective name -> (TrialOutcome field, direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "maximize"),
    "latency": ("latency_ms", "minimize"),
    "energy": ("energy_mj", "minimize"),
    "size": ("size_kib", "minimize"),
}


def _nsga2(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    # population: ~1/5 of the budget (at least 8, at most Optuna's default 50), so even a
    # small budget runs several generations after the random first one.
    population = int(min(50, max(8, n_trials // 5)))
    return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)


def _tpe(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def _random(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _gp(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed)


SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "nsga2": _nsga2,
    "tpe": _tpe,
    "random": _random,
    "gp": _gp,
}


def make_sampler(name: str, *, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` (see :data:`SAMPLERS`), seeded."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (valid: {', '.join(SAMPLERS)})")
    return SAMPLERS[name](seed, n_trials)


def objective_values(outcome: TrialOutcome, objectives: Sequence[str]) -> list[float]:
    return [float(getattr(outcome, OBJECTIVES[name][0])) for name in objectives]


class EvaluatorActor:
    """Ray actor body: builds the evaluator once, answers requests, never raises on a
    trial (an exception becomes a failed :class:`TrialOutcome`)."""

    def __init__(self, spec: Any) -> None:
        # torch-based evaluators set their own thread count (1 per actor) when built
        self.evaluator = spec.build()

    def ready(self) -> bool:
        return True

    def evaluate(self, request: TrialRequest) -> TrialOutcome:
        start = time.perf_counter()
        try:
            return self.evaluator.evaluate(request)
        except Exception as exc:  # noqa: BLE001 - any trial error is recorded, not fatal
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
            return TrialOutcome(
                number=request.number,
                split=request.split,
                duration_s=time.perf_counter() - start,
                error=f"{type(exc).__name__}: {exc}{where}",
            )

    def call(self, method: str, **kwargs: Any) -> Any:
        """Any other evaluator method (e.g. ``reference``, ``hawq_inputs``)."""
        return getattr(self.evaluator, method)(**kwargs)


def start_ray(workers: int, address: str | None) -> bool:
    """Join the Ray cluster at ``address``, or start a local one on loopback with
    ``workers`` CPUs and no dashboard; True if this call started Ray (the caller shuts it
    down), False if it was already running."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # "local" always starts a new single-node cluster (never RAY_ADDRESS's)
        ray.init(
            address="local",
            num_cpus=workers,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            object_store_memory=128 * 1024**2,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    return True


class RayPool:
    """``workers`` evaluator actors on a local (loopback, no dashboard) or given Ray cluster.

    Ray is started here only if it is not running yet, and then shut down by :meth:`close`.
    """

    def __init__(self, spec: Any, *, workers: int, ray_address: str | None = None) -> None:
        import ray

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._ray = ray
        self._started = start_ray(workers, ray_address)
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(EvaluatorActor)
        self.spec = spec
        self.actors = [self._remote.remote(spec) for _ in range(workers)]
        ray.get([a.ready.remote() for a in self.actors])

    @property
    def size(self) -> int:
        return len(self.actors)

    def submit(self, index: int, request: TrialRequest):
        return self.actors[index].evaluate.remote(request)

    def call(self, method: str, **kwargs: Any) -> Any:
        """Run ``method`` on the first actor and wait for it."""
        return self._ray.get(self.actors[0].call.remote(method, **kwargs))

    def map(self, requests: Sequence[TrialRequest]) -> list[TrialOutcome]:
        """Evaluate ``requests`` on all actors (round robin), results in order."""
        refs = [self.submit(i % self.size, r) for i, r in enumerate(requests)]
        return list(self._ray.get(refs))

    def wait(self, refs: list, *, timeout: float) -> list:
        """The refs among ``refs`` that are done (at least one, unless ``timeout`` passes)."""
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        return ready

    def get(self, ref: Any) -> Any:
        return self._ray.get(ref)

    def restart(self, index: int) -> None:
        """Kill actor ``index`` (e.g. stuck past its timeout) and start a fresh one."""
        self._ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._remote.remote(self.spec)
        self._ray.get(self.actors[index].ready.remote())

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


@dataclass
class LoopStats:
    """Counts of one optimize() call (this run only)."""

    completed: int = 0
    failed: int = 0
    seconds: float = 0.0


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(FAIL_REASON_ATTR, reason[:500])
    study.tell(trial, state=TrialState.FAIL)


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    outcome: TrialOutcome,
    *,
    objectives: Sequence[str],
    constraints: dict[str, float],
) -> bool:
    """Tell ``outcome``; returns True if the trial completed."""
    trial.set_user_attr("duration_s", outcome.duration_s)
    if outcome.failed:
        _fail(study, trial, outcome.error or "error")
        return False
    for key in ("accuracy", "latency_ms", "energy_mj", "size_kib"):
        trial.set_user_attr(key, float(getattr(outcome, key)))
    values = objective_values(outcome, objectives)
    if any(not math.isfinite(v) for v in values):
        _fail(study, trial, f"non-finite objective values {values}")
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
    on_result: Callable[[LoopStats], None] | None = None,
) -> LoopStats:
    """Run ``study`` until it has ``n_trials`` COMPLETE trials (earlier runs count).

    Asks at most ``max_asks`` new trials (default: the missing completions plus as many
    failures) so a study whose every trial fails still ends.
    """
    constraints = dict(constraints or {})
    stats = LoopStats()
    start = time.perf_counter()
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if max_asks is None:
        max_asks = 2 * max(0, n_trials - done)
    asks = 0
    idle = list(range(pool.size))
    flying: dict[Any, tuple[optuna.Trial, int, float]] = {}
    try:
        while True:
            while idle and done + len(flying) < n_trials and asks < max_asks:
                trial = study.ask()
                asks += 1
                trial.set_user_attr("method", method)
                try:
                    params = space.suggest(trial)
                    request = TrialRequest(trial.number, space.settings(params))
                except Exception as exc:
                    _fail(study, trial, f"bad parameters: {exc}")  # never leave it RUNNING
                    raise
                index = idle.pop()
                flying[pool.submit(index, request)] = (trial, index, time.monotonic())
            if not flying:
                break
            wait_s = 1.0
            if trial_timeout_s is not None:
                oldest = min(t0 for _, _, t0 in flying.values())
                wait_s = max(0.01, min(wait_s, oldest + trial_timeout_s - time.monotonic()))
            ready = pool.wait(list(flying), timeout=wait_s)
            for ref in ready:
                trial, index, _ = flying.pop(ref)
                idle.append(index)
                try:
                    outcome = pool.get(ref)
                except Exception as exc:  # noqa: BLE001 - a dead actor fails its trial only
                    pool.restart(index)
                    _fail(study, trial, f"worker error: {type(exc).__name__}: {exc}")
                    stats.failed += 1
                    continue
                if _tell(study, trial, outcome, objectives=objectives, constraints=constraints):
                    stats.completed += 1
                    done += 1
                else:
                    stats.failed += 1
            if trial_timeout_s is not None:
                now = time.monotonic()
                for ref, (trial, index, t0) in list(flying.items()):
                    if now - t0 > trial_timeout_s:
                        flying.pop(ref)
                        pool.restart(index)
                        idle.append(index)
                        _fail(study, trial, f"timeout after {trial_timeout_s:g} s")
                        stats.failed += 1
            if on_result is not None:
                stats.seconds = time.perf_counter() - start
                on_result(stats)
    except BaseException:
        # Ctrl-C or a driver error: the trials in flight will never be told
        for trial, _, _ in flying.values():
            _fail(study, trial, "interrupted")
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
