"""Pareto dominance, non-dominated sorting and the exact 2-D hypervolume.

Points are sequences of objective values with a direction per objective ("maximize" or
"minimize"). Internally everything is turned into minimisation by negating maximised
objectives, so one dominance rule serves all.

The hypervolume is the area dominated by a point set and bounded by a fixed reference point
(Zitzler & Thiele, "Multiobjective optimization using evolutionary algorithms — a comparative
case study", PPSN 1998). For two objectives it is computed exactly by sorting the front on the
first objective and summing rectangles (the "slicing" sweep).

Example:
    >>> hv = hypervolume_2d([(0.9, 0.5), (0.8, 0.3)], reference=(0.0, 2.0),
    ...                     directions=("maximize", "minimize"))
    >>> round(hv, 6)  # 0.9·(2 − 0.5) + 0.8·(0.5 − 0.3)
    1.51
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DIRECTIONS", "dominates", "non_dominated", "non_dominated_sort", "hypervolume_2d"]

DIRECTIONS = ("maximize", "minimize")


def _signs(directions: Sequence[str], n: int) -> tuple[float, ...]:
    if len(directions) != n:
        raise ValueError(f"{len(directions)} directions given for {n} objectives")
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ValueError(f"unknown directions {bad} (valid: {', '.join(DIRECTIONS)})")
    return tuple(-1.0 if d == "maximize" else 1.0 for d in directions)


def _as_min(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[tuple]:
    if not points:
        return []
    n = len(points[0])
    signs = _signs(directions, n)
    out = []
    for i, p in enumerate(points):
        if len(p) != n:
            raise ValueError(f"point {i} has {len(p)} values, expected {n}")
        out.append(tuple(s * float(v) for s, v in zip(signs, p, strict=True)))
    return out


def _dom_min(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` in minimisation: no worse everywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def dominates(a: Sequence[float], b: Sequence[float], *, directions: Sequence[str]) -> bool:
    """Whether point ``a`` Pareto-dominates point ``b``."""
    ma, mb = _as_min([a, b], directions)
    return _dom_min(ma, mb)


def non_dominated(points: Sequence[Sequence[float]], *, directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (duplicates are all kept), in input
    order."""
    fronts = non_dominated_sort(points, directions=directions)
    return sorted(fronts[0]) if fronts else []


def non_dominated_sort(
    points: Sequence[Sequence[float]], *, directions: Sequence[str]
) -> list[list[int]]:
    """Fast non-dominated sort (Deb et al., "A fast and elitist multiobjective genetic
    algorithm: NSGA-II", IEEE TEC 2002): fronts of indices, best front first. O(M·N²)."""
    pts = _as_min(points, directions)
    n = len(pts)
    dominated_by: list[list[int]] = [[] for _ in range(n)]
    count = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if _dom_min(pts[i], pts[j]):
                dominated_by[i].append(j)
                count[j] += 1
            elif _dom_min(pts[j], pts[i]):
                dominated_by[j].append(i)
                count[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return fronts


def hypervolume_2d(
    points: Sequence[Sequence[float]],
    *,
    reference: Sequence[float],
    directions: Sequence[str],
) -> float:
    """Exact area dominated by ``points`` and bounded by ``reference`` (two objectives).

    Points that do not strictly improve on the reference in both objectives add nothing.
    The sweep: after minimisation, sort the non-dominated points by the first objective;
    each adds the rectangle ``(ref0 − x_i) × (y_{i−1} − y_i)`` with ``y_0 = ref1``.
    """
    if len(reference) != 2 or len(directions) != 2:
        raise ValueError(
            f"hypervolume_2d needs a 2-D reference and 2 directions, got {list(reference)}"
        )
    bad = [list(p) for p in points if len(p) != 2]
    if bad:
        raise ValueError(f"hypervolume_2d needs 2 objectives per point, got {bad[0]}")
    pts = _as_min(points, directions)
    (ref,) = _as_min([reference], directions)
    inside = [p for p in pts if p[0] < ref[0] and p[1] < ref[1]]
    front = sorted(set(inside))  # ascending first objective, then second
    area = 0.0
    y_prev = ref[1]
    for x, y in front:
        if y < y_prev:  # dominated points (y >= y_prev) add nothing
            area += (ref[0] - x) * (y_prev - y)
            y_prev = y
    return area
