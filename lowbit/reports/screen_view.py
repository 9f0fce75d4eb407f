"""The report's sensitivity-screen section: each layer's one-at-a-time accuracies.

A search with an accuracy constraint first measures every layer's choices one at a time
(:mod:`lowbit.search.screen`; ``screen.json`` in the run directory). The table shows, per
layer and setting, each choice's accuracy with only that change from the base, and strikes
out the choices the search did not offer (alone below the floor). It is the model's
per-layer sensitivity: which layers tolerate 4 bits, pruning or low rank, and which do not.
"""

from __future__ import annotations

import json
from pathlib import Path

from lowbit.search.screen import Screen, ScreenEntry

from .html import Raw, esc, section, table

__all__ = ["screen_section"]

#: settings in column order, with their headers
_COLUMNS = (
    ("w_bits", "weight bits"),
    ("a_bits", "activation bits"),
    ("keep", "keep ratio"),
    ("nm", "N:M"),
    ("rank_fraction", "rank fraction"),
)


def _choice(entry: ScreenEntry) -> str:
    acc = entry.accuracy
    text = f"{entry.value}: " + ("not measured" if acc is None else f"{acc * 100:.1f} %")
    if entry.kept:
        return esc(text)
    return f'<s title="dropped: alone below the floor">{esc(text)}</s>'


def screen_section(run_dir: Path, summary: dict) -> Raw | None:
    """The section, or None when the run has no screen (or its file cannot be read, or is
    damaged: :meth:`lowbit.search.screen.Screen.from_dict` checks every field)."""
    info = summary.get("screen")
    if not isinstance(info, dict):
        return None
    sizes = (info.get("size_after"), info.get("size_before"))
    try:
        text = (run_dir / str(info.get("file", "screen.json"))).read_text("utf-8")
        result = Screen.from_dict(json.loads(text))
    except (OSError, ValueError):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in sizes):
        return None
    cells: dict[str, dict[str, list[str]]] = {}
    for entry in result.entries:
        layer, setting = entry.param.rsplit(".", 1)
        cells.setdefault(layer, {}).setdefault(setting, []).append(_choice(entry))
    used = [(k, h) for k, h in _COLUMNS if any(k in row for row in cells.values())]
    rows = [
        [layer] + [Raw("<br>".join(row.get(k, [])) or "–") for k, _ in used]
        for layer, row in cells.items()
    ]
    dropped = sum(len(v) for v in result.dropped.values())
    intro = (
        f"Before searching, each layer's choices were measured one at a time on the base "
        f"(uniform W8A8, dense, full rank: {result.base_accuracy * 100:.1f} % on "
        f"{result.samples:,} val images). {dropped} choices fell below the floor of "
        f"{result.floor * 100:.1f} % by more than the measurement's noise and were not "
        f"searched (struck out; harsher ones after them were not measured). "
        f"{result.evaluations} evaluations, {result.seconds:.0f} s; the searched space has "
        f"{sizes[0]:.3g} of {sizes[1]:.3g} configurations. The fixed baselines keep the full "
        f"space."
    )
    return section(
        "screen",
        "Per-layer sensitivity (screen)",
        table(["layer"] + [h for _, h in used], rows),
        intro=intro,
    )
