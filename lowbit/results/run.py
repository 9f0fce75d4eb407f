"""A search run directory as DataFrames: :func:`load_run` and the :class:`Run` it returns.

It reads what a finished run leaves (:mod:`lowbit.search.results` describes the files):
``summary.json``, ``trials.csv``, ``pareto.csv``, ``configs/<id>.json`` and, when
``lowbit validate`` ran, ``validation.csv`` / ``validation.json``. Files of older layouts
load too (a trials.csv without rungs or timestamps, schema 1 configs). Anything a user can
cause (no run directory, a run still in progress, a truncated or garbled file) raises one
:class:`~lowbit.results.ResultsError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lowbit.hwsim.errors import InputFileError
from lowbit.hwsim.fileio import read_json

from ._tables import Column, ResultsError, empty_table, params_frame, read_table
from .layers import layers_frame, resimulate, stored_rows

__all__ = ["PARETO_SCHEMA", "TRIAL_SCHEMA", "VALIDATION_SCHEMA", "Run", "load_run"]

#: trials.csv: the 13 columns of the first layout are required, later ones optional
#: (``rung`` defaults to 1: every trial was measured on all of val before rungs)
TRIAL_SCHEMA = (
    Column("method", "text", True),
    Column("study", "text", True),
    Column("number", "int", True),
    Column("state", "text", True),
    Column("rung", "int", default=1),
    Column("val_samples", "int"),
    Column("accuracy_val", "float", True),
    Column("latency_ms", "float", True),
    Column("energy_mj", "float", True),
    Column("size_kib", "float", True),
    Column("feasible", "bool", True),
    Column("duration_s", "float", True),
    Column("fail_reason", "text", True),
    Column("accuracy_cheap", "float"),
    Column("accuracy_full", "float"),
    Column("promoted", "bool"),
    Column("promotion", "text"),
    Column("started_at", "time"),
    Column("finished_at", "time"),
    Column("params", "json", True),
)
PARETO_SCHEMA = (
    Column("method", "text", True),
    Column("config_id", "text", True),
    Column("number", "int", True),
    Column("rung", "int", default=1),
    Column("val_samples", "int"),
    Column("accuracy_val", "float", True),
    Column("accuracy_test", "float", True),
    Column("accuracy_cheap", "float"),
    Column("latency_ms", "float", True),
    Column("latency_vs_w8a8", "float", True),
    Column("energy_mj", "float", True),
    Column("size_kib", "float", True),
    Column("params", "json", True),
)
_VALIDATION_TEXT = ("config_id", "source", "method", "export_dir")
_CONFIG_ID = re.compile(r"^[a-z][a-z0-9-]*-\d{5}$")


def _validation_schema() -> tuple[Column, ...]:
    from lowbit.search.validate import VALIDATION_COLUMNS

    return tuple(
        Column(name, "text" if name in _VALIDATION_TEXT else "float", name == "config_id")
        for name in VALIDATION_COLUMNS
    )


VALIDATION_SCHEMA = _validation_schema()


@dataclass(frozen=True, slots=True)
class Run:
    """One search run as tables (columns, dtypes and units: ``docs/results.md``).

    Attributes:
        run_dir: the run directory.
        summary: ``summary.json`` as parsed (methods, hypervolumes, reference, seeds, ...).
        trials: one row per trial of every method, one column per searched parameter.
        pareto: each method's final Pareto configurations, with their total cycles and (co-design)
            area from the config, one column per parameter.
        layers: one row per simulated layer of every Pareto config.
        validation: one row per configuration ``lowbit validate`` measured (no rows if
            it did not run).
        configs: config id -> its ``configs/<id>.json`` as parsed (validated).
        validation_summary: ``validation.json`` as parsed (rank correlations, MAPE, ...)
            or None.
    """

    run_dir: Path
    summary: dict[str, Any]
    trials: pd.DataFrame
    pareto: pd.DataFrame
    layers: pd.DataFrame
    validation: pd.DataFrame
    configs: dict[str, dict[str, Any]]
    validation_summary: dict[str, Any] | None = None

    @property
    def model(self) -> str:
        return self.summary["model"]

    @property
    def hardware(self) -> str:
        return self.summary["hardware"]["name"]

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.summary["methods"])

    @property
    def seed(self) -> int | None:
        return self.summary.get("seed")

    @property
    def w8a8_latency_ms(self) -> float:
        return float(self.summary["reference"]["w8a8_latency_ms"])

    @property
    def fp32_val(self) -> float:
        return float(self.summary["reference"]["fp32_val"])

    @property
    def fp32_test(self) -> float:
        return float(self.summary["reference"]["fp32_test"])

    @property
    def params(self) -> tuple[str, ...]:
        """The searched parameters: the trials table's parameter columns."""
        return tuple(c for c in self.trials.columns if c not in _TRIAL_FIXED)


_TRIAL_FIXED = frozenset(c.name for c in TRIAL_SCHEMA)


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise ResultsError(f"{path}: missing ({what})")
    try:
        return read_json(path, what=what)
    except InputFileError as exc:
        raise ResultsError(f"{exc}; rerun the search to rewrite it") from None


def _with_params(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``params`` cell (JSON object) spread over one column each."""
    spread = params_frame(list(table["params"]))
    return pd.concat([table.drop(columns="params"), spread], axis=1)


def _summary(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir}: no such run directory (give the --out of a lowbit search)")
    path = run_dir / "summary.json"
    if not path.is_file():
        hint = (
            "the search has not finished yet (or was interrupted: rerun it to resume)"
            if (run_dir / "study.journal").exists()
            else "not a search run directory"
        )
        raise ResultsError(f"{run_dir}: no summary.json: {hint}")
    summary = _read_json(path, "the run summary")
    from lowbit.search.checks import summary_problems

    problems = summary_problems(summary)
    if problems:
        raise ResultsError(f"{path}: not a lowbit run summary: " + "; ".join(problems))
    return summary


def _configs(run_dir: Path, pareto: pd.DataFrame, model: str) -> dict[str, dict[str, Any]]:
    from lowbit.search.config import ConfigError, DeploymentConfig

    configs = {}
    for i, cid in enumerate(pareto["config_id"]):
        if cid is pd.NA or not _CONFIG_ID.match(cid):
            raise ResultsError(f"{run_dir / 'pareto.csv'}: row {i + 2}: bad config_id {cid!r}")
        path = run_dir / "configs" / f"{cid}.json"
        data = _read_json(path, "a deployment config")
        try:
            DeploymentConfig.from_dict(data, source=str(path))
        except ConfigError as exc:
            raise ResultsError(str(exc)) from None
        if data["model"] != model:
            raise ResultsError(
                f"{path}: a config of model {data['model']!r}, but the run searched {model!r}"
            )
        configs[cid] = data
    return configs


def _validation(run_dir: Path) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    summary = None
    if (run_dir / "validation.json").is_file():
        summary = _read_json(run_dir / "validation.json", "lowbit validate's results")
        summary = summary if isinstance(summary, dict) else None
    path = run_dir / "validation.csv"
    if path.is_file():
        return read_table(path, VALIDATION_SCHEMA, what="validation table"), summary
    return empty_table(VALIDATION_SCHEMA), summary


def load_run(run_dir: str | Path, *, resimulate_layers: bool = False) -> Run:
    """The run directory ``run_dir`` as a :class:`Run`.

    Args:
        run_dir: the ``--out`` of a finished ``lowbit search`` (or ``run_search``).
        resimulate_layers: also split every Pareto config's per-layer cycles into compute,
            stall and overhead, with DRAM bytes and roofline numbers, by re-simulating it
            (:func:`lowbit.results.layers.resimulate`: builds the zoo model's shapes, no
            training; slower). Without it those columns are ``<NA>``.

    Raises:
        ResultsError: no such directory, no summary.json (not a run directory, or the run
            has not finished), or a missing, truncated or damaged file (named).
    """
    run_dir = Path(run_dir)
    summary = _summary(run_dir)
    trials = _with_params(read_table(run_dir / "trials.csv", TRIAL_SCHEMA, what="trials table"))
    pareto = read_table(run_dir / "pareto.csv", PARETO_SCHEMA, what="Pareto table")
    configs = _configs(run_dir, pareto, summary["model"])
    rows = []
    for cid in pareto["config_id"]:
        if resimulate_layers:
            rows.extend(resimulate(configs[cid]).rows)
        else:
            rows.extend(stored_rows(configs[cid])[1])
    pareto = pareto.assign(
        total_cycles=pd.array(
            [configs[c]["simulation"]["total_cycles"] for c in pareto["config_id"]], "Int64"
        ),
        area_mm2=[_area(configs[c]) for c in pareto["config_id"]],
    )
    validation, validation_summary = _validation(run_dir)
    return Run(
        run_dir=run_dir,
        summary=summary,
        trials=trials,
        pareto=_with_params(pareto),
        layers=layers_frame(rows),
        validation=validation,
        configs=configs,
        validation_summary=validation_summary,
    )


def _area(config: dict[str, Any]) -> float:
    area = config.get("hardware", {}).get("area_mm2")
    return float(area) if isinstance(area, (int, float)) else float("nan")
