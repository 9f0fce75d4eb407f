"""The Ray side of a search: one evaluator actor per worker, and the pool that drives them.

Each actor builds its evaluator once from the spec (the model and data are fetched once per
worker) and answers requests; a trial's exception becomes a failed outcome, never an actor
crash. Ray is started on loopback without a dashboard unless a cluster address is given.

Stopping: ``ray.init`` makes SIGTERM call ``sys.exit``. :func:`start_ray` keeps a SIGTERM
handler the program had set (the service worker's, or SIG_IGN), and otherwise makes SIGTERM raise
``KeyboardInterrupt("SIGTERM")``, as Ctrl-C does: either way the driver unwinds, fails the
trials it has in flight with a reason (:func:`lowbit.search.runner.optimize`) and shuts its
Ray cluster down (:func:`shutdown_ray`, in ``finally`` blocks), so no Ray process is left.
A driver killed outright (SIGKILL) cannot do that: a local cluster's processes are then
killed by a watcher :func:`start_ray` starts with it (:mod:`lowbit.search.ray_reaper`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

from . import ray_reaper
from .evaluator import TrialOutcome, TrialRequest

__all__ = ["EvaluatorActor", "RayPool", "shutdown_ray", "start_ray"]


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


#: Ray's logger of the token-authentication notice at a local cluster's start
_RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def start_ray(workers: int, address: str | None) -> bool:
    """Join the Ray cluster at ``address``, or start a local one on loopback with
    ``workers`` CPUs and no dashboard; True if this call started Ray (the caller shuts it
    down), False if it was already running."""
    import ray

    if ray.is_initialized():
        return False
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray_children = ray_reaper.children()
        # Ray >= 2.59 protects a local cluster with a token by default and logs a WARNING
        # saying so at every start: a notice of the secure default, not a problem, kept
        # out of lowbit's output (the logger only speaks at this start)
        logging.getLogger(_RAY_AUTH_LOGGER).setLevel(logging.ERROR)
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
        _REAPER[:] = [ray_reaper.start_reaper(before=ray_children)]  # its processes die with us
    if main:  # ray.init replaced it with sys.exit (module docstring)
        _SIGTERM_BEFORE[:] = [before]
        keep = callable(before) or before == signal.SIG_IGN
        signal.signal(signal.SIGTERM, before if keep else _terminated)
    return True


#: the SIGTERM handler before :func:`start_ray` started Ray (restored by shutdown_ray)
_SIGTERM_BEFORE: list[Any] = []
#: the watcher of the local cluster :func:`start_ray` started (:mod:`.ray_reaper`)
_REAPER: list[Any] = []


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def shutdown_ray() -> None:
    """Shut down the Ray cluster :func:`start_ray` started; restore the SIGTERM handler."""
    import ray

    ray.shutdown()
    if _REAPER:
        ray_reaper.stop_reaper(_REAPER.pop())
    if _SIGTERM_BEFORE and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _SIGTERM_BEFORE.pop())


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
            shutdown_ray()
