"""Several runs side by side: :func:`compare_runs`, one row per (run, method).

Runs of different methods, seeds and targets line up in one long table with each method's
hypervolume (on val and on test) and its speed-up over uniform W8A8 at the fastest Pareto
configuration within 1 point of FP32 (``lowbit.search.summary`` defines both); group it
with pandas for means over seeds::

    table = compare_runs(["runs/a-s0", "runs/a-s1", "runs/b-s0"])
    table.groupby(["hardware", "method"])["hypervolume_val"].agg(["mean", "std"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ._tables import ResultsError, frame
from .run import Run, load_run

__all__ = ["COMPARE_COLUMNS", "compare_runs"]

#: column -> kind (lowbit.results._tables.KINDS), in table order
COMPARE_COLUMNS: dict[str, str] = {
    "run": "text",
    "model": "text",
    "hardware": "text",
    "seed": "int",
    "method": "text",
    "study": "text",
    "completed": "int",
    "failed": "int",
    "pareto_configs": "int",
    "hypervolume_val": "float",
    "hypervolume_test": "float",
    "speedup_vs_w8a8": "float",
    "best_config_id": "text",
    "best_latency_ms": "float",
    "best_accuracy_val": "float",
    "best_accuracy_test": "float",
    "fp32_val": "float",
    "fp32_test": "float",
    "w8a8_latency_ms": "float",
}


def _label(run: Run, taken: set[str]) -> str:
    """The run's directory name, or its whole path when two runs share a name."""
    name = run.run_dir.name
    return name if name not in taken else str(run.run_dir)


def _reference_point(run: Run) -> tuple[float, ...] | None:
    point = (run.summary.get("hypervolume") or {}).get("reference_point")
    return tuple(point) if isinstance(point, list) else None


def compare_runs(
    runs: Sequence[Run | str | Path], *, labels: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per method of every run in ``runs`` (loaded runs or run directories), in
    the order given; columns :data:`COMPARE_COLUMNS` (``docs/results.md``).

    Args:
        labels: the ``run`` column, one per run (default: each run's directory name).

    Raises:
        ResultsError: no runs, labels of another length, a run that cannot be loaded, or
            hypervolumes with different reference points (not comparable).
    """
    if not runs:
        raise ResultsError("compare_runs: give at least one run")
    if labels is not None and len(labels) != len(runs):
        raise ResultsError(f"compare_runs: {len(labels)} labels for {len(runs)} runs")
    loaded = [r if isinstance(r, Run) else load_run(r) for r in runs]
    points = {_reference_point(r) for r in loaded} - {None}
    if len(points) > 1:
        raise ResultsError(
            "compare_runs: the runs' hypervolumes use different reference points "
            f"({', '.join(map(str, sorted(points)))}): they are not comparable"
        )
    rows: list[dict[str, Any]] = []
    taken: set[str] = set()
    for i, run in enumerate(loaded):
        label = labels[i] if labels is not None else _label(run, taken)
        taken.add(label)
        for method, m in run.summary["methods"].items():
            best = m.get("best_within_1pt") or {}
            rows.append(
                {
                    "run": label,
                    "model": run.model,
                    "hardware": run.hardware,
                    "seed": run.seed,
                    "method": method,
                    "study": m.get("study"),
                    "completed": m.get("completed"),
                    "failed": m.get("failed"),
                    "pareto_configs": len(m["pareto"]) if "pareto" in m else None,
                    "hypervolume_val": m.get("hypervolume_val"),
                    "hypervolume_test": m.get("hypervolume_test"),
                    "speedup_vs_w8a8": m.get("speedup_vs_w8a8"),
                    "best_config_id": best.get("config_id"),
                    "best_latency_ms": best.get("latency_ms"),
                    "best_accuracy_val": best.get("accuracy_val"),
                    "best_accuracy_test": best.get("accuracy_test"),
                    "fp32_val": run.fp32_val,
                    "fp32_test": run.fp32_test,
                    "w8a8_latency_ms": run.w8a8_latency_ms,
                }
            )
    columns = {name: [row[name] for row in rows] for name in COMPARE_COLUMNS}
    return frame(columns, COMPARE_COLUMNS)
