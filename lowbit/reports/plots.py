"""Run-level figures of the report (PNG bytes): the Pareto frontier, hypervolume vs
trials, and simulated vs measured latency."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lowbit.search.registry import METHODS_SHOWN, MethodInfo

from ._figure import METHOD_COLORS, OTHER_COLOR, SERIES_COLORS, pyplot, style, time_unit, to_png
from .rundata import RunData, uniform_label

__all__ = ["pareto_png", "hypervolume_png", "validation_png"]

#: points of a validation scatter labelled with their config id at most (more would overlap)
MAX_LABELS = 10


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated (latency ↓, accuracy ↑) points, by latency."""
    best: list[tuple[float, float]] = []
    for lat, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not best or acc > best[-1][1]:
            best.append((lat, acc))
    return best


def pareto_png(run: RunData, *, fp32_latency_ms: float | None) -> bytes:
    """Accuracy (val) vs simulated latency: every trial, each method's front, the uniform
    and HAWQ points labelled, FP32 marked. The view spans 20 points below FP32 (further
    when fewer than 3 front points lie there); how many trials lie lower is in the legend."""
    plt = pyplot()
    unit = time_unit(run.w8a8_latency_ms)
    fp32 = 100 * run.summary["reference"]["fp32_val"]
    fig, ax = plt.subplots(figsize=(8.6, 5.2))
    shown: list[float] = []  # accuracies of the fronts and fixed points (sets the view)
    everything: list[float] = []
    infeasible_drawn = False
    for method in run.methods:
        info = METHODS_SHOWN.get(method) or MethodInfo(method, color=OTHER_COLOR)
        color = info.color
        done = [t for t in run.method_trials(method) if t.complete and math.isfinite(t.latency_ms)]
        ok = [t for t in done if t.feasible]
        bad = [t for t in done if not t.feasible]
        everything += [100 * t.accuracy_val for t in done]
        if bad:
            ax.scatter(
                [t.latency_ms * unit.per_ms for t in bad],
                [100 * t.accuracy_val for t in bad],
                marker="x",
                s=16,
                color="#b0b0b0",
                linewidths=0.8,
                zorder=1,
                label=None if infeasible_drawn else "infeasible trial (over a constraint)",
            )
            infeasible_drawn = True
            if info.bits_labels:
                for t in bad:
                    ax.annotate(
                        uniform_label(t.params) or method,
                        (t.latency_ms * unit.per_ms, 100 * t.accuracy_val),
                        fontsize=7,
                        textcoords="offset points",
                        xytext=(4, 6),
                        color="#9a9a9a",
                    )
        if info.fixed:  # a few fixed configurations: marked points
            marker = info.marker
            for t in ok:
                x, y = t.latency_ms * unit.per_ms, 100 * t.accuracy_val
                shown.append(y)
                ax.scatter(
                    [x],
                    [y],
                    marker=marker,
                    s=46,
                    color=color,
                    zorder=4,
                    edgecolors="white",
                    linewidths=0.8,
                )
                if info.bits_labels:
                    ax.annotate(
                        uniform_label(t.params) or method,
                        (x, y),
                        fontsize=8,
                        textcoords="offset points",
                        xytext=(4, 6),
                        color=color,
                    )
            if ok:
                ax.scatter(
                    [],
                    [],
                    marker=marker,
                    color=color,
                    label=info.legend or method,
                )
            continue
        pts = [(t.latency_ms * unit.per_ms, 100 * t.accuracy_val) for t in ok]
        ax.scatter(
            [p[0] for p in pts],
            [p[1] for p in pts],
            s=12,
            color=color,
            alpha=0.3,
            zorder=2,
            linewidths=0,
        )
        full = [p for p, t in zip(pts, ok, strict=True) if t.rung == 1]  # like summary.json
        front = _front(full)
        shown += [p[1] for p in front]
        if front:
            ax.step(
                [p[0] for p in front],
                [p[1] for p in front],
                where="post",
                color=color,
                linewidth=1.9,
                marker="o",
                markersize=4.5,
                zorder=3,
                label=f"{method}: Pareto front of {len(full)} full-rung trials"
                if len(full) < len(ok)
                else f"{method}: Pareto front of {len(ok)} trials",
            )
    ax.axhline(fp32, color="#b22222", linestyle="--", linewidth=1.1, zorder=0)
    if fp32_latency_ms is not None:
        ax.scatter(
            [fp32_latency_ms * unit.per_ms],
            [fp32],
            marker="*",
            s=160,
            color="#b22222",
            zorder=5,
            label=f"FP32 ({fp32:.2f}%)",
        )
    else:
        ax.plot([], [], color="#b22222", linestyle="--", label=f"FP32 accuracy ({fp32:.2f}%)")
    floor = fp32 - 20
    if sum(1 for a in shown if a >= floor) < 3:  # the fronts lie lower: show all of them
        floor = min(shown + [floor])
    floor = max(0.0, floor - 1.5)
    top = max(shown + [fp32]) + max(0.8, 0.06 * (fp32 - floor))
    ax.set_ylim(floor, top)
    hidden = sum(1 for a in everything if a < floor)
    ax.axvline(run.w8a8_latency_ms * unit.per_ms, color="#555555", linestyle=":", linewidth=1)
    ax.annotate(
        "W8A8",
        (run.w8a8_latency_ms * unit.per_ms, floor),
        textcoords="offset points",
        xytext=(3, 4),
        fontsize=8,
        color="#555555",
    )
    style(
        ax,
        title=f"Accuracy vs simulated latency — {run.model} on {run.hardware}",
        xlabel=f"simulated latency per inference ({unit.label})",
        ylabel="validation accuracy (%)",
    )
    legend = ax.legend(
        fontsize=8,
        loc="lower right",
        framealpha=0.92,
        title=(
            f"{hidden} trial{'' if hidden == 1 else 's'} below {floor:.0f}% not shown"
            if hidden
            else None
        ),
        title_fontsize=8,
    )
    legend.set_zorder(6)
    return to_png(fig)


def hypervolume_png(run: RunData) -> bytes:
    """Hypervolume of the feasible full-rung trials so far vs completed trials, per method
    (trials left at the cheap rung count as trials, not as points: as in summary.json)."""
    from lowbit.search.pareto import hypervolume_2d
    from lowbit.search.summary import HV_DIRECTIONS, HV_REFERENCE

    plt = pyplot()
    w8 = run.w8a8_latency_ms
    fig, ax = plt.subplots(figsize=(8.6, 3.8))
    for method in run.methods:
        done = sorted((t for t in run.method_trials(method) if t.complete), key=lambda t: t.number)
        xs, ys, points = [], [], []
        for i, t in enumerate(done, start=1):
            if t.feasible and t.rung == 1 and math.isfinite(t.latency_ms):
                points.append((t.accuracy_val, t.latency_ms / w8))
            xs.append(i)
            ys.append(
                hypervolume_2d(points, reference=HV_REFERENCE, directions=HV_DIRECTIONS)
                if points
                else 0.0
            )
        if not xs:
            continue
        color = METHOD_COLORS.get(method, OTHER_COLOR)
        ax.step(
            xs, ys, where="post", color=color, linewidth=1.8, label=f"{method} (final {ys[-1]:.3f})"
        )
        ax.scatter([xs[-1]], [ys[-1]], color=color, s=18, zorder=3)
    style(
        ax,
        title="Search progress: hypervolume vs trials",
        xlabel="completed trials",
        ylabel="hypervolume (max 2.0)",
    )
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    return to_png(fig)


def validation_png(
    series: Sequence[tuple[str, Sequence[tuple[str, float, float]]]],
    *,
    x_label: str,
    y_label: str,
    title: str,
) -> bytes:
    """Simulated (x) vs measured (y) latency: one colour per series (batch size), the first
    series' points labelled with their config (up to :data:`MAX_LABELS`), and the y = x line
    with ±15% bands."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 5.2))
    values: list[float] = []
    for (name, points), color in zip(series, SERIES_COLORS, strict=False):
        xs = [p[1] for p in points]
        ys = [p[2] for p in points]
        values += xs + ys
        ax.scatter(xs, ys, s=34, color=color, zorder=3, label=name)
        if name == series[0][0] and len(points) <= MAX_LABELS:  # label one series only
            for label, x, y in points:
                ax.annotate(
                    label,
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=7,
                    color="#444444",
                )
    if values:
        lo, hi = min(values) * 0.8, max(values) * 1.25
        line = [lo * (hi / lo) ** (i / 50) for i in range(51)]
        ax.plot(line, line, color="#444444", linewidth=1, label="simulated = measured")
        for f in (0.85, 1.15):
            ax.plot(line, [v * f for v in line], color="#888888", linestyle=":", linewidth=0.8)
        if hi / lo > 10:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    style(ax, title=title + " (dotted: ±15%)", xlabel=x_label, ylabel=y_label)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    return to_png(fig)
