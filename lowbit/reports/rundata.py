"""Read a search run directory (search/results.py describes its files) for a report.

Only what a finished run leaves is read: ``summary.json``, ``trials.csv``, ``pareto.csv``,
``configs/<id>.json`` and, when ``lowbit validate`` ran, ``validation.json``. Problems a user
can cause (a path that is no run directory, a run still in progress, a damaged file) raise
one :class:`ReportError` saying what to do.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowbit.hwsim.errors import InputFileError, LowbitError
from lowbit.hwsim.fileio import read_json

__all__ = ["ReportError", "Trial", "ParetoRow", "RunData", "load_run", "uniform_label"]

_CONFIG_ID = re.compile(r"^[a-z][a-z0-9-]*-\d{5}$")


class ReportError(LowbitError):
    """A run directory cannot be reported on (missing, unfinished or damaged files)."""


@dataclass(frozen=True, slots=True)
class Trial:
    """One row of trials.csv (numbers are NaN where the trial has none); ``rung``: where its
    accuracy comes from (0 the cheap val subset, 1 all of val; runs before rungs: 1)."""

    method: str
    number: int
    state: str
    accuracy_val: float
    latency_ms: float
    feasible: bool
    params: dict[str, Any]
    rung: int = 1

    @property
    def complete(self) -> bool:
        return self.state == "COMPLETE"


@dataclass(frozen=True, slots=True)
class ParetoRow:
    """One row of pareto.csv: a final configuration re-evaluated on test."""

    method: str
    config_id: str
    number: int
    accuracy_val: float
    accuracy_test: float
    latency_ms: float
    latency_vs_w8a8: float
    energy_mj: float
    size_kib: float
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunData:
    """Everything a report shows about one run."""

    run_dir: Path
    summary: dict[str, Any]
    trials: tuple[Trial, ...]
    pareto: tuple[ParetoRow, ...]
    configs: dict[str, dict[str, Any]]
    validation: dict[str, Any] | None

    @property
    def model(self) -> str:
        return self.summary["model"]

    @property
    def hardware(self) -> str:
        return self.summary["hardware"]["name"]

    @property
    def w8a8_latency_ms(self) -> float:
        return float(self.summary["reference"]["w8a8_latency_ms"])

    @property
    def methods(self) -> list[str]:
        return list(self.summary["methods"])

    def method_trials(self, method: str) -> list[Trial]:
        return [t for t in self.trials if t.method == method]


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return -1


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise ReportError(f"{path}: missing ({what})")
    try:
        return read_json(path, what=what)
    except InputFileError as exc:
        raise ReportError(f"{exc}; rerun the search to rewrite it") from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (written at the end of a search run)") from None
    except (OSError, csv.Error) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from None


def _params(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        raise ReportError(f"{where}: params is not valid JSON") from None
    if not isinstance(value, dict):
        raise ReportError(f"{where}: params must be a JSON object")
    return value


def load_run(run_dir: str | Path) -> RunData:
    """Read the run directory ``run_dir``.

    Raises:
        ReportError: no such directory, no summary.json (not a run directory, or the run
            has not finished), or a damaged file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory (give the --out of a lowbit search)")
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        hint = (
            "the search has not finished yet (or was interrupted: rerun it to resume)"
            if (run_dir / "study.journal").exists()
            else "not a search run directory"
        )
        raise ReportError(f"{run_dir}: no summary.json: {hint}")
    summary = _read_json(summary_path, "the run summary")
    from lowbit.search.checks import summary_problems

    problems = summary_problems(summary)
    if problems:
        raise ReportError(f"{summary_path}: not a lowbit run summary: " + "; ".join(problems))
    trials = []
    for i, row in enumerate(_read_csv(run_dir / "trials.csv")):
        where = f"{run_dir / 'trials.csv'} row {i + 2}"
        trials.append(
            Trial(
                method=row.get("method", ""),
                number=_int(row.get("number", "")),
                state=row.get("state", ""),
                accuracy_val=_float(row.get("accuracy_val", "")),
                latency_ms=_float(row.get("latency_ms", "")),
                feasible=row.get("feasible", "") == "True",
                params=_params(row.get("params", ""), where),
                rung=0 if row.get("rung", "") == "0" else 1,
            )
        )
    pareto = []
    configs: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(_read_csv(run_dir / "pareto.csv")):
        where = f"{run_dir / 'pareto.csv'} row {i + 2}"
        cid = row.get("config_id", "")
        if not _CONFIG_ID.match(cid):
            raise ReportError(f"{where}: bad config_id {cid!r}")
        pareto.append(
            ParetoRow(
                method=row["method"],
                config_id=cid,
                number=_int(row.get("number", "")),
                accuracy_val=_float(row["accuracy_val"]),
                accuracy_test=_float(row["accuracy_test"]),
                latency_ms=_float(row["latency_ms"]),
                latency_vs_w8a8=_float(row["latency_vs_w8a8"]),
                energy_mj=_float(row["energy_mj"]),
                size_kib=_float(row["size_kib"]),
                params=_params(row.get("params", ""), where),
            )
        )
        config_path = run_dir / "configs" / f"{cid}.json"
        config = _read_json(config_path, "a deployment config")
        if isinstance(config, dict) and config.get("model") != summary["model"]:
            raise ReportError(
                f"{config_path}: a config of model {config.get('model')!r}, but the run "
                f"searched {summary['model']!r}"
            )
        configs[cid] = config
    validation = None
    if (run_dir / "validation.json").is_file():
        validation = _read_json(run_dir / "validation.json", "lowbit validate's results")
    return RunData(
        run_dir=run_dir,
        summary=summary,
        trials=tuple(trials),
        pareto=tuple(pareto),
        configs=configs,
        validation=validation if isinstance(validation, dict) else None,
    )


def uniform_label(params: dict[str, Any]) -> str | None:
    """``"W4A8"`` when every layer of ``params`` has the same bits and is dense, unpruned
    and full rank; None otherwise (hardware ``hw:`` parameters are ignored)."""
    w = {v for k, v in params.items() if k.endswith(".w_bits")}
    a = {v for k, v in params.items() if k.endswith(".a_bits")}
    if len(a) != 1 or len(w) > 1:
        return None
    for key, value in params.items():
        if key.endswith(".keep") or key.endswith(".rank_fraction"):
            if value != 1.0:
                return None
        elif key.endswith(".nm") and value != "dense":
            return None
    (a_bits,) = a
    w_bits = next(iter(w)) if w else a_bits
    return f"W{w_bits}A{a_bits}"
