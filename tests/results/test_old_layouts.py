"""Run directories of older layouts still load: trials.csv and pareto.csv as the first
release wrote them (JSON params cell, no rungs, no timestamps) and schema-1 configs."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pandas as pd

from lowbit.results import load_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "search"))
from test_config import as_schema_1  # noqa: E402  (the same schema-1 rewrite)

#: the columns of the first release (lowbit.search.results before rungs)
FIRST_TRIAL_COLUMNS = (
    "method",
    "study",
    "number",
    "state",
    "accuracy_val",
    "latency_ms",
    "energy_mj",
    "size_kib",
    "values",
    "params",
    "duration_s",
    "fail_reason",
    "feasible",
)
FIRST_PARETO_COLUMNS = (
    "method",
    "config_id",
    "number",
    "accuracy_val",
    "accuracy_test",
    "latency_ms",
    "latency_vs_w8a8",
    "energy_mj",
    "size_kib",
    "params",
)


def _rewrite(path, columns):
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _schema_1(path):
    """A config as written before rungs (lowbit.search.results, schema 1)."""
    path.write_text(json.dumps(as_schema_1(json.loads(path.read_text()))))


def test_first_layout_loads_with_the_same_values(run_copy):
    new = load_run(run_copy)
    _rewrite(run_copy / "trials.csv", FIRST_TRIAL_COLUMNS)
    _rewrite(run_copy / "pareto.csv", FIRST_PARETO_COLUMNS)
    for path in (run_copy / "configs").glob("*.json"):
        _schema_1(path)
    old = load_run(run_copy)
    # the same columns, in the same dtypes; what the old files hold is equal
    assert list(old.trials.columns) == list(new.trials.columns)
    assert list(old.pareto.columns) == list(new.pareto.columns)
    assert (old.trials.dtypes == new.trials.dtypes).all()
    shared = [c for c in FIRST_TRIAL_COLUMNS if c not in ("values", "params")] + list(new.params)
    pd.testing.assert_frame_equal(old.trials[shared], new.trials[shared])
    shared = [c for c in FIRST_PARETO_COLUMNS if c != "params"] + ["total_cycles"]
    pd.testing.assert_frame_equal(old.pareto[shared], new.pareto[shared])
    pd.testing.assert_frame_equal(old.layers, new.layers)
    # what the old files do not hold: before rungs every trial was measured on all of val
    assert (old.trials.rung == 1).all() and (old.pareto.rung == 1).all()
    for column in ("val_samples", "accuracy_cheap", "promoted", "promotion", "started_at"):
        assert old.trials[column].isna().all(), column
    assert old.pareto.val_samples.isna().all()


def test_a_run_without_configs_of_newer_keys_and_extra_columns(run_copy):
    """Columns a newer lowbit may add are ignored; rows keep their order."""
    path = run_copy / "trials.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    columns = [*rows[0], "from_the_future"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({**r, "from_the_future": "x"} for r in rows)
    run = load_run(run_copy)
    assert "from_the_future" not in run.trials.columns
    assert list(run.trials.number) == [int(r["number"]) for r in rows]
