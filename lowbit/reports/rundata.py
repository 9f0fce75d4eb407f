"""A search run for a report, from the DataFrames of :func:`lowbit.results.load_run` (which
reads the run directory's files: ``summary.json``, ``trials.csv``, ``pareto.csv``,
``configs/<id>.json`` and, when ``lowbit validate`` ran, ``validation.json``). Problems a
user can cause (a path that is no run directory, a run still in progress, a damaged file)
raise one :class:`ReportError` saying what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lowbit.hwsim.errors import LowbitError

if TYPE_CHECKING:
    from lowbit.results import Run

__all__ = ["ReportError", "Trial", "ParetoRow", "RunData", "load_run", "uniform_label"]


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
    """Everything a report shows about one run: its DataFrames (``tables``, a
    :class:`lowbit.results.Run`) and, from them, its trials and Pareto rows as records."""

    tables: Run
    trials: tuple[Trial, ...]
    pareto: tuple[ParetoRow, ...]

    @property
    def run_dir(self) -> Path:
        return self.tables.run_dir

    @property
    def summary(self) -> dict[str, Any]:
        return self.tables.summary

    @property
    def configs(self) -> dict[str, dict[str, Any]]:
        return self.tables.configs

    @property
    def validation(self) -> dict[str, Any] | None:
        """validation.json of ``lowbit validate`` (None: it did not run)."""
        return self.tables.validation_summary

    @property
    def model(self) -> str:
        return self.tables.model

    @property
    def hardware(self) -> str:
        return self.tables.hardware

    @property
    def w8a8_latency_ms(self) -> float:
        return self.tables.w8a8_latency_ms

    @property
    def methods(self) -> list[str]:
        return list(self.tables.methods)

    def method_trials(self, method: str) -> list[Trial]:
        return [t for t in self.trials if t.method == method]


def _native(value: Any) -> Any:
    """A table cell as a plain Python value; None where it is missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _params(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The row's parameters (the columns ``names`` it has a value in)."""
    values = {name: _native(row[name]) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def _number(value: Any) -> float:
    value = _native(value)
    return math.nan if value is None else float(value)


def _trial(row: dict[str, Any], names: tuple[str, ...]) -> Trial:
    number = _native(row["number"])
    return Trial(
        method=_native(row["method"]) or "",
        number=-1 if number is None else number,
        state=_native(row["state"]) or "",
        accuracy_val=_number(row["accuracy_val"]),
        latency_ms=_number(row["latency_ms"]),
        feasible=_native(row["feasible"]) is True,
        params=_params(row, names),
        rung=0 if _native(row["rung"]) == 0 else 1,
    )


def _pareto_row(row: dict[str, Any], names: tuple[str, ...]) -> ParetoRow:
    number = _native(row["number"])
    return ParetoRow(
        method=row["method"],
        config_id=row["config_id"],
        number=-1 if number is None else number,
        accuracy_val=_number(row["accuracy_val"]),
        accuracy_test=_number(row["accuracy_test"]),
        latency_ms=_number(row["latency_ms"]),
        latency_vs_w8a8=_number(row["latency_vs_w8a8"]),
        energy_mj=_number(row["energy_mj"]),
        size_kib=_number(row["size_kib"]),
        params=_params(row, names),
    )


def load_run(run_dir: str | Path) -> RunData:
    """Read the run directory ``run_dir`` (:func:`lowbit.results.load_run`).

    Raises:
        ReportError: no such directory, no summary.json (not a run directory, or the run
            has not finished), or a damaged file.
    """
    from lowbit.results import ResultsError
    from lowbit.results import load_run as load_tables

    try:
        tables = load_tables(run_dir)
    except ResultsError as exc:
        raise ReportError(str(exc)) from None
    names = tables.params
    pareto_names = tuple(n for n in tables.pareto.columns if n in set(names))
    return RunData(
        tables=tables,
        trials=tuple(_trial(r, names) for r in tables.trials.to_dict("records")),
        pareto=tuple(_pareto_row(r, pareto_names) for r in tables.pareto.to_dict("records")),
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
