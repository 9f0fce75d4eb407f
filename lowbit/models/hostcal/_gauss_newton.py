"""Bounded, weighted non-linear least squares by Gauss-Newton (split from
:mod:`lowbit.models.hostcal._fit`, which fits the host profile with it)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["_gauss_newton"]


def _gauss_newton(
    simulate,
    measured: np.ndarray,
    weight: np.ndarray,
    start: dict[str, float],
    lower: dict[str, float] | None = None,
    prior: dict[str, float] | None = None,
):
    """Non-negative weighted least squares of ``simulate(params) ≈ measured``, by
    Gauss-Newton: hwsim's CPU cost is nearly linear in each parameter (counted events times
    a cost), but not exactly (the tiler's choices and compute/traffic overlap move with the
    MAC rate), so it is linearised around the current estimate -- each parameter's feature
    is the change of the simulated time per unit of it -- and solved again, a few times; the
    estimate with the smallest weighted error is returned. Each step is a bounded linear
    least squares: every parameter at least its ``lower`` bound (0 by default; the cycles
    per MAC at least what the core's physical peak allows), so the fit cannot run away.
    ``prior``: parameter -> weight of a pull towards its ``start`` value (relative)."""
    from scipy.optimize import lsq_linear

    theta = dict(start)
    keys = tuple(start)
    per_unit = ("mac", "lib", "amac", "mac32", "stream")  # never 0: a rate or bandwidth is finite
    lows = {k: (lower or {}).get(k, 1 / 4096 if k in per_unit else 0.0) for k in keys}
    theta = {k: max(v, lows[k]) for k, v in theta.items()}
    prior = {k: w for k, w in (prior or {}).items() if k in keys}
    ridge = np.array([[w / start[k] if j == k else 0.0 for j in keys] for k, w in prior.items()])
    pull = np.array(list(prior.values()))

    def cost(at: np.ndarray, th: dict[str, float]) -> float:
        data = float(np.sum(((at - measured) * weight) ** 2))
        return data + sum((w * (th[k] / start[k] - 1)) ** 2 for k, w in prior.items())

    best, best_theta = math.inf, theta
    for _ in range(10):
        at = simulate(theta)
        error = cost(at, theta)
        if error < best:  # the steps may overshoot: keep the best estimate seen
            best, best_theta = error, theta
        columns = []
        for key in keys:
            step = 0.25 * max(theta[key], start[key])
            columns.append((simulate({**theta, key: theta[key] + step}) - at) / step)
        features = np.stack(columns, axis=1)
        target = measured - at + features @ np.array([theta[k] for k in keys])
        bounds = np.array([lows[k] for k in keys])
        a, b = features * weight[:, None], target * weight
        if prior:
            a, b = np.vstack([a, ridge]), np.concatenate([b, pull])
        solved = lsq_linear(a, b, bounds=(bounds, np.inf)).x
        theta = {k: max(float(v), lows[k]) for k, v in zip(keys, solved, strict=True)}
    if cost(simulate(theta), theta) < best:
        best_theta = theta
    return best_theta
