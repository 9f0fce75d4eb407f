"""The run directory's files, all written atomically (temp file + ``os.replace``).

``trials.csv``      one row per trial of every method (params and values as JSON cells); the
                    ``rung`` its values come from (0 cheap, 1 full), ``val_samples`` behind
                    ``accuracy_val``, both rungs' accuracies where known, the promotion
                    decision and why (:mod:`lowbit.search.fidelity`); when the trial started
                    and finished (``started_at``, ``finished_at``: ISO 8601, UTC)
``pareto.csv``      each method's final Pareto configurations (full rung), val and test accuracy
``summary.json``    methods, hypervolumes, speed-ups, reference point, seeds, fidelity, versions
``configs/<id>.json`` one deployment configuration per Pareto point (written once, complete:
                    :class:`lowbit.search.config.DeploymentConfig`)

The journal (``study.journal``) is the source of truth: at the end of every run these files
are rebuilt from it for the methods of that run (a resumed run rewrites them complete; a
rerun with fewer methods leaves the other studies in the journal but not in the files).
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.fileio import atomic_write_text

from .storage import FAIL_REASON_ATTR

__all__ = [
    "TRIAL_COLUMNS",
    "PARETO_COLUMNS",
    "atomic_write_text",
    "write_json",
    "write_csv",
    "trial_rows",
    "versions",
]

TRIAL_COLUMNS = (
    "method",
    "study",
    "number",
    "state",
    "rung",
    "accuracy_val",
    "val_samples",
    "latency_ms",
    "energy_mj",
    "size_kib",
    "values",
    "params",
    "duration_s",
    "fail_reason",
    "feasible",
    "accuracy_cheap",
    "accuracy_full",
    "promoted",
    "promotion",
    "started_at",
    "finished_at",
)
PARETO_COLUMNS = (
    "method",
    "config_id",
    "number",
    "rung",
    "accuracy_val",
    "val_samples",
    "accuracy_test",
    "latency_ms",
    "latency_vs_w8a8",
    "energy_mj",
    "size_kib",
    "params",
    "accuracy_cheap",
)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; a NaN or infinite float (JSON has no
    such numbers, the readers refuse them) raises LowbitError naming its key, unwritten."""
    if (where := _non_finite_key(data)) is not None:
        raise LowbitError(
            f"{path}: {where[0]}: {float(where[1])!r} is not a finite number (JSON "
            "cannot hold NaN or Infinity); nothing was written"
        )
    return atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _non_finite_key(data: Any, key: str = "") -> tuple[str, float] | None:
    """The key path (``a.b[2].c``) and value of the first NaN/infinite float in ``data``."""
    if isinstance(data, float):
        return None if math.isfinite(data) else (key or "(the top level)", data)
    if isinstance(data, dict):
        items = ((f"{key}.{k}" if key else str(k), v) for k, v in data.items())
    elif isinstance(data, (list, tuple)):
        items = ((f"{key}[{i}]", v) for i, v in enumerate(data))
    else:
        return None
    for path, value in items:
        found = _non_finite_key(value, path)
        if found is not None:
            return found
    return None


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return atomic_write_text(path, buf.getvalue())


def trial_rows(study: optuna.Study, method: str) -> list[dict[str, Any]]:
    """One CSV row per trial of ``study`` (any state)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        feasible = all(v <= 0 for v in t.constraints.values()) if t.constraints else True
        rows.append(
            {
                "method": method,
                "study": study.study_name,
                "number": t.number,
                "state": t.state.name,
                "rung": attrs.get("rung", ""),
                "accuracy_val": attrs.get("accuracy", ""),
                "val_samples": attrs.get("val_samples", ""),
                "latency_ms": attrs.get("latency_ms", ""),
                "energy_mj": attrs.get("energy_mj", ""),
                "size_kib": attrs.get("size_kib", ""),
                "values": json.dumps(t.values) if t.state == TrialState.COMPLETE else "",
                "params": json.dumps(t.params, sort_keys=True),
                "duration_s": attrs.get("duration_s", ""),
                "fail_reason": attrs.get(FAIL_REASON_ATTR, ""),
                "feasible": feasible if t.state == TrialState.COMPLETE else "",
                "accuracy_cheap": attrs.get("accuracy_cheap", ""),
                "accuracy_full": attrs.get("accuracy_full", ""),
                "promoted": attrs.get("promoted", ""),
                "promotion": attrs.get("promotion", ""),
                "started_at": _utc(t.datetime_start),
                "finished_at": _utc(t.datetime_complete),
            }
        )
    return rows


def _utc(moment: datetime | None) -> str:
    """An Optuna timestamp (naive, local time) as ISO 8601 in UTC; "" when unset."""
    return moment.astimezone(timezone.utc).isoformat() if moment is not None else ""


def versions() -> dict[str, str]:
    """Installed versions of lowbit and the libraries that shape results."""
    out = {}
    for name in ("lowbit", "optuna", "ray", "torch", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
