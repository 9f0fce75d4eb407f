"""Progress of a search run directory, also while its search is still running.

A finished run is read from its summary.json and pareto.csv. A running one is read from its
study journal (``study.journal``, search/storage.py): the journal is append-only and a
reader skips a line still being written, so reading it from another process is safe. Each
method's study is ``<study><suffix>`` (search/baselines.py); its current Pareto set is the
feasible completed full-rung trials (search/fidelity.py) no other one dominates in
(accuracy, latency), and the hypervolume is normalised by the W8A8 latency once the W8A8
warm-start trial has run (search/summary.py defines both).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["run_status"]


def _finished(run_dir: Path) -> dict[str, Any]:
    from .rundata import load_run

    run = load_run(run_dir)
    methods = {}
    for name, m in run.summary["methods"].items():
        methods[name] = {
            "study": m.get("study"),
            "completed": m.get("completed", 0),
            "failed": m.get("failed", 0),
            "running": 0,
            "hypervolume": m.get("hypervolume_val"),
            "pareto": [
                {
                    "config_id": p.config_id,
                    "number": p.number,
                    "accuracy_val": p.accuracy_val,
                    "accuracy_test": p.accuracy_test,
                    "latency_ms": p.latency_ms,
                }
                for p in run.pareto
                if p.method == name
            ],
        }
    return {"finished": True, "w8a8_latency_ms": run.w8a8_latency_ms, "methods": methods}


def _study_status(storage, study_id: int, w8a8_ms: float | None) -> dict[str, Any]:
    from optuna.trial import TrialState

    from lowbit.search.pareto import hypervolume_2d, non_dominated
    from lowbit.search.summary import HV_DIRECTIONS, HV_REFERENCE

    trials = storage.get_all_trials(study_id, deepcopy=False)
    states = [t.state for t in trials]
    ok = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and "accuracy" in t.user_attrs
        and "latency_ms" in t.user_attrs
        and t.user_attrs.get("rung", 1) == 1  # full-rung trials only, as summary.json
        and all(v <= 0 for v in t.constraints.values())
    ]
    points = [(t.user_attrs["accuracy"], t.user_attrs["latency_ms"]) for t in ok]
    front = [ok[i] for i in non_dominated(points, directions=("maximize", "minimize"))]
    hv = None
    if w8a8_ms:  # no feasible point yet: 0, as search/summary.py counts it
        hv = hypervolume_2d(
            [(a, lat / w8a8_ms) for a, lat in points],
            reference=HV_REFERENCE,
            directions=HV_DIRECTIONS,
        )
    return {
        "completed": states.count(TrialState.COMPLETE),
        "failed": states.count(TrialState.FAIL),
        "running": states.count(TrialState.RUNNING),
        "hypervolume": hv,
        "pareto": [
            {
                "number": t.number,
                "accuracy_val": t.user_attrs["accuracy"],
                "latency_ms": t.user_attrs["latency_ms"],
            }
            for t in sorted(front, key=lambda t: t.user_attrs["latency_ms"])
        ],
    }


def _w8a8_ms(storage, study_ids: list[int]) -> float | None:
    """Latency of the W8A8 warm-start / uniform trial (the normalisation), once it ran."""
    for study_id in study_ids:
        for t in storage.get_all_trials(study_id, deepcopy=False):
            latency = t.user_attrs.get("latency_ms")
            if t.user_attrs.get("label") == "W8A8" and isinstance(latency, float):
                return latency if math.isfinite(latency) and latency > 0 else None
    return None


def run_status(run_dir: str | Path, *, study: str | None = None) -> dict[str, Any]:
    """The progress of the search in ``run_dir``.

    Args:
        run_dir: the search's ``--out`` directory.
        study: the run's study name (methods are ``study + suffix``); default: the
            shortest study name in the journal.

    Returns:
        ``{"finished", "w8a8_latency_ms", "methods": {name: {"study", "completed",
        "failed", "running", "hypervolume", "pareto": [...]}}}``; ``methods`` is empty
        before the search has created its studies.
    """
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        return _finished(run_dir)
    from lowbit.search.baselines import METHODS
    from lowbit.search.storage import JOURNAL_FILE, open_storage

    empty: dict[str, Any] = {"finished": False, "w8a8_latency_ms": None, "methods": {}}
    if not (run_dir / JOURNAL_FILE).is_file():
        return empty
    storage = open_storage(None, run_dir=run_dir)
    studies = {
        s.study_name: storage.get_study_id_from_name(s.study_name)
        for s in storage.get_all_studies()
    }
    if not studies:
        return empty
    base = study or min(studies, key=len)
    by_method = {
        name: studies[base + m.suffix] for name, m in METHODS.items() if base + m.suffix in studies
    }
    w8a8 = _w8a8_ms(storage, list(by_method.values()))
    methods = {
        name: {"study": base + METHODS[name].suffix, **_study_status(storage, sid, w8a8)}
        for name, sid in by_method.items()
    }
    return {"finished": False, "w8a8_latency_ms": w8a8, "methods": methods}
