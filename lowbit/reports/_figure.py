"""Shared matplotlib set-up of the report's figures: Agg backend, style, PNG output, units.

Every figure has a title, axis labels with units and a legend where it has series. Colours
are fixed per method so the same method looks the same in every figure.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from lowbit.search.registry import METHODS_SHOWN

__all__ = [
    "METHOD_COLORS",
    "OTHER_COLOR",
    "SERIES_COLORS",
    "TimeUnit",
    "time_unit",
    "pyplot",
    "style",
    "to_png",
]

#: one colour per search method, as the registry gives it
#: (:data:`lowbit.search.registry.METHODS_SHOWN`, in its order); a method without one (a run
#: of a newer lowbit) is drawn in OTHER_COLOR
METHOD_COLORS = {name: m.color for name, m in METHODS_SHOWN.items()}
OTHER_COLOR = "#2a9d8f"
SERIES_COLORS = ("#1f5fbf", "#e07b00", "#2a9d8f", "#7b3fa8")
_DPI = 110


@dataclass(frozen=True, slots=True)
class TimeUnit:
    """How latencies are shown: ``label`` ("µs") and ``per_ms`` (units in one ms)."""

    label: str
    per_ms: float


def time_unit(latency_ms: float) -> TimeUnit:
    """µs below 1 ms, ms up to 10 s, else s."""
    if latency_ms < 1.0:
        return TimeUnit("µs", 1e3)
    if latency_ms < 1e4:
        return TimeUnit("ms", 1.0)
    return TimeUnit("s", 1e-3)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def style(ax, *, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left", fontweight="bold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def to_png(fig, *, dpi: int = _DPI) -> bytes:
    """``fig`` laid out and rendered as PNG bytes; the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()
