"""Bounded, weighted non-linear least squares by Gauss-Newton (split from
:mod:`lowbit.models.hostcal._fit`, which fits the host profile with it)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FRESH_JACOBIANS", "ITERATIONS", "_gauss_newton", "log_error"]

#: Gauss-Newton steps of a fit (the best estimate seen is kept)
ITERATIONS = 10
#: the steps that simulate every parameter's feature afresh (one simulation each); the later
#: ones keep the last: near the estimate hwsim's cost is close to linear in each parameter,
#: and the simulations were nearly all of a calibration's fitting time (18-20 s of it on an
#: AMD Zen 3). Refitting eight sidecars of that CPU, every fitted constant came out within
#: 1.6 % of the fit with ten fresh steps (most within 0.5 %), in 0.4x the time; fresh
#: features in the first two steps only moved some by 5-7 %
FRESH_JACOBIANS = 3


def _gauss_newton(
    simulate,
    measured: np.ndarray,
    weight: np.ndarray,
    start: dict[str, float],
    lower: dict[str, float] | None = None,
    prior: dict[str, float] | None = None,
    robust: float | None = None,
):
    """Non-negative weighted least squares of ``simulate(params) ≈ measured``, by
    Gauss-Newton: hwsim's CPU cost is nearly linear in each parameter (counted events times
    a cost), but not exactly (the tiler's choices and compute/traffic overlap move with the
    MAC rate), so it is linearised around the current estimate -- each parameter's feature
    is the change of the simulated time per unit of it -- and solved again, a few times
    (:data:`ITERATIONS`; the features simulated afresh in the first :data:`FRESH_JACOBIANS`
    only); the estimate with the smallest weighted error is returned. Each step is a bounded linear
    least squares: every parameter at least its ``lower`` bound (0 by default; the cycles
    per MAC at least what the core's physical peak allows), so the fit cannot run away.
    ``prior``: parameter -> weight of a pull towards its ``start`` value (relative).
    ``robust``: Huber's loss on each row's relative error, quadratic up to ``robust`` and
    linear beyond (each step reweights the rows by where the last estimate left them), so
    one row far off -- a timing a shared machine disturbed through a whole calibration, or
    a shape the model cannot follow -- pulls the fit no harder than ``robust`` does."""
    from scipy.optimize import lsq_linear

    theta = dict(start)
    keys = tuple(start)
    per_unit = ("mac", "lib", "amac", "mac32", "stream")  # never 0: a rate or bandwidth is finite
    lows = {k: (lower or {}).get(k, 1 / 4096 if k in per_unit else 0.0) for k in keys}
    theta = {k: max(v, lows[k]) for k, v in theta.items()}
    prior = {k: w for k, w in (prior or {}).items() if k in keys}
    ridge = np.array([[w / start[k] if j == k else 0.0 for j in keys] for k, w in prior.items()])
    pull = np.array(list(prior.values()))

    def relative(at: np.ndarray) -> np.ndarray:
        return np.abs(at / measured - 1)

    def row_share(at: np.ndarray) -> np.ndarray:
        """each row's share of its weight (squared) under Huber's loss at ``at``"""
        if robust is None:
            return np.ones_like(at)
        rel = relative(at)
        return np.where(rel <= robust, 1.0, robust / np.maximum(rel, 1e-300))

    def cost(at: np.ndarray, th: dict[str, float]) -> float:
        if robust is None:
            data = float(np.sum(((at - measured) * weight) ** 2))
        else:
            rel = relative(at)
            loss = np.where(rel <= robust, rel**2, 2 * robust * rel - robust**2)
            data = float(np.sum((weight * measured) ** 2 * loss))
        return data + sum((w * (th[k] / start[k] - 1)) ** 2 for k, w in prior.items())

    best, best_theta = math.inf, theta
    for iteration in range(ITERATIONS):
        at = simulate(theta)
        error = cost(at, theta)
        if error < best:  # the steps may overshoot: keep the best estimate seen
            best, best_theta = error, theta
        if iteration < FRESH_JACOBIANS:
            columns = []
            for key in keys:
                step = 0.25 * max(theta[key], start[key])
                columns.append((simulate({**theta, key: theta[key] + step}) - at) / step)
            features = np.stack(columns, axis=1)
        target = measured - at + features @ np.array([theta[k] for k in keys])
        bounds = np.array([lows[k] for k in keys])
        w = weight * np.sqrt(row_share(at))
        a, b = features * w[:, None], target * w
        if prior:
            a, b = np.vstack([a, ridge]), np.concatenate([b, pull])
        solved = lsq_linear(a, b, bounds=(bounds, np.inf)).x
        theta = {k: max(float(v), lows[k]) for k, v in zip(keys, solved, strict=True)}
    if cost(simulate(theta), theta) < best:
        best_theta = theta
    return best_theta


def log_error(sim: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Squared log error of simulated against measured times, per row (the fits' report)."""
    return (np.log(np.maximum(sim, 1e-12)) - np.log(measured)) ** 2
