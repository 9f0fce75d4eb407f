"""compare_runs: several runs (here two seeds) in one long table, one row per method."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lowbit.results import COMPARE_COLUMNS, ResultsError, compare_runs, load_run


def test_one_row_per_run_and_method_with_the_summarys_numbers(runs):
    table = compare_runs(runs)
    assert list(table.columns) == list(COMPARE_COLUMNS)
    assert list(table.run) == ["synthetic-s0"] * 3 + ["synthetic-s1"] * 3
    assert list(table.seed) == [0, 0, 0, 1, 1, 1]
    for row in table.to_dict("records"):
        summary = json.loads((runs[row["seed"]] / "summary.json").read_text())
        m = summary["methods"][row["method"]]
        assert row["hypervolume_val"] == m["hypervolume_val"]
        assert row["hypervolume_test"] == m["hypervolume_test"]
        assert row["completed"] == m["completed"] and row["failed"] == m["failed"] == 1
        assert row["pareto_configs"] == len(m["pareto"])
        best = m["best_within_1pt"]
        if best is None:  # no Pareto config within 1 point of FP32
            assert pd.isna(row["best_config_id"]) and pd.isna(row["speedup_vs_w8a8"])
            continue
        assert row["best_config_id"] == best["config_id"]
        assert row["best_latency_ms"] == best["latency_ms"]
        assert row["speedup_vs_w8a8"] == pytest.approx(
            summary["reference"]["w8a8_latency_ms"] / best["latency_ms"]
        )
    # means over seeds, per method, with plain pandas
    means = table.groupby("method")["hypervolume_val"].mean()
    for method in ("joint", "uniform", "random"):
        mine = table[table.method == method].hypervolume_val
        assert means[method] == pytest.approx(mine.sum() / 2)


def test_loaded_runs_labels_and_errors(runs, run_copy):
    loaded = [load_run(p) for p in runs]
    table = compare_runs(loaded, labels=["a", "b"])
    assert set(table.run) == {"a", "b"}
    same_name = compare_runs([runs[0], run_copy.parent / "copy"])
    assert same_name.run.nunique() == 2
    with pytest.raises(ResultsError, match="2 labels for 1 runs"):
        compare_runs(runs[:1], labels=["a", "b"])
    with pytest.raises(ResultsError, match="at least one run"):
        compare_runs([])
    summary = json.loads((run_copy / "summary.json").read_text())
    summary["hypervolume"]["reference_point"] = [0.0, 4.0]
    (run_copy / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ResultsError, match="different reference points"):
        compare_runs([runs[0], run_copy])
