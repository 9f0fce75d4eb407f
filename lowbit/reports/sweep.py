"""The figure of a hardware sweep (``sweep.png`` of ``lowbit sweep``), from a
:class:`~lowbit.hwsim.sweep.Sweep`.

One workload: latency against the first varied key, one line per combination of the others.
A suite: speed-up against the first varied key, one line per workload and the suite's
geometric mean (bold) when one key varies, else the geometric mean per combination of the
others.
"""

from __future__ import annotations

from lowbit.hwsim.sweep import Sweep, SweepPoint, format_value, suite_points

from ._figure import pyplot, to_png

__all__ = ["sweep_png"]

_DPI = 100


def sweep_png(sweep: Sweep, *, title: str) -> bytes:
    """The sweep's figure (module docstring) as PNG bytes."""
    return _suite_png(sweep, title=title) if sweep.is_suite else _single_png(sweep, title=title)


def _x(point: SweepPoint, numeric: bool) -> object:
    return point.values[0] if numeric else str(point.values[0])


def _legend(keys: tuple[str, ...], values: tuple) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in zip(keys, values, strict=True))


def _single_png(sweep: Sweep, *, title: str) -> bytes:
    plt = pyplot()
    rest = sweep.keys[1:]
    lines: dict[tuple, list[SweepPoint]] = {}
    for p in sweep.points:
        lines.setdefault(p.values[1:], []).append(p)
    numeric = _numeric(sweep)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, points in lines.items():
        ys = [p.latency_s * 1e3 for p in points]
        ax.plot(
            [_x(p, numeric) for p in points], ys, marker="o", label=_legend(rest, label) or None
        )
    _decorate(ax, sweep, numeric=numeric, title=title, ylabel="latency (ms)")
    if rest:
        ax.legend(fontsize="small")
    return to_png(fig, dpi=_DPI)


def _suite_png(sweep: Sweep, *, title: str) -> bytes:
    plt = pyplot()
    rest = sweep.keys[1:]
    numeric = _numeric(sweep)
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    if not rest:
        for name in sweep.workloads:
            pts = [p for p in sweep.points if p.workload == name]
            xs = [_x(p, numeric) for p in pts]
            ax.plot(xs, [p.speedup for p in pts], marker="o", alpha=0.6, label=name)
    for point_rest in dict.fromkeys(p.values[1:] for p in sweep.points):
        chosen = [p for p in sweep.points if p.values[1:] == point_rest]
        summary = suite_points(chosen, by=(0,))
        xs = [s.values[0] if numeric else str(s.values[0]) for s in summary]
        ax.plot(
            xs,
            [s.geomean_speedup for s in summary],
            marker="s",
            linewidth=2.4,
            color=None if rest else "black",
            label=f"geomean {_legend(rest, point_rest)}".strip(),
        )
    ylabel = "speed-up vs the profile as given (x)"
    _decorate(ax, sweep, numeric=numeric, title=title, ylabel=ylabel, unit_line=True)
    ax.legend(fontsize="small")
    return to_png(fig, dpi=_DPI)


def _numeric(sweep: Sweep) -> bool:
    return all(isinstance(p.values[0], (int, float)) for p in sweep.points)


def _decorate(
    ax, sweep: Sweep, *, numeric: bool, title: str, ylabel: str, unit_line: bool = False
) -> None:
    """Axis scale, labels, title and grid shared by both figures."""
    values = [p.values[0] for p in sweep.points]
    # sizes are usually varied in powers of two: a log2 axis when they span 4x or more
    if numeric and min(values) > 0 and max(values) >= 4 * min(values):
        ax.set_xscale("log", base=2)
        ticks = sorted(set(values))
        ax.set_xticks(ticks, [format_value(t) for t in ticks])
        ax.minorticks_off()
    if unit_line:
        ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle=":")
    ax.set_xlabel(sweep.keys[0])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
