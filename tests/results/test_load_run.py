"""load_run on runs written by the search: the DataFrames hold exactly what trials.csv,
pareto.csv, summary.json and configs/*.json hold, in the documented columns and dtypes."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from lowbit.results import LAYER_COLUMNS, Run, load_run
from lowbit.results.run import PARETO_SCHEMA, TRIAL_SCHEMA
from lowbit.search.pareto import hypervolume_2d
from lowbit.search.summary import HV_DIRECTIONS, HV_REFERENCE, ONE_POINT

#: pandas dtype of each kind of column (docs/results.md)
DTYPES = {
    "text": "string",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "time": "datetime64[us, UTC]",
}


def _csv(path):
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _config(run_dir, cid):
    return json.loads((run_dir / "configs" / f"{cid}.json").read_text())


def _native(value):
    return None if value is pd.NA or (isinstance(value, float) and pd.isna(value)) else value


def test_trials_are_trials_csv_with_one_column_per_parameter(runs):
    run = load_run(runs[0])
    rows = _csv(runs[0] / "trials.csv")
    assert len(run.trials) == len(rows) > 0
    fixed = [c.name for c in TRIAL_SCHEMA if c.name != "params"]
    assert list(run.trials.columns[: len(fixed)]) == fixed
    for column in TRIAL_SCHEMA:
        if column.name != "params":
            assert str(run.trials[column.name].dtype) == DTYPES[column.kind], column.name
    params = [json.loads(r["params"]) for r in rows]
    assert set(run.params) == {name for p in params for name in p}
    assert all(n.endswith(("w_bits", "a_bits", "keep", "rank_fraction")) for n in run.params)
    for name in run.params:
        want = "Int64" if name.endswith("_bits") else "float64"
        assert str(run.trials[name].dtype) == want, name
    for i, (row, p) in enumerate(zip(rows, params, strict=True)):
        got = run.trials.iloc[i]
        assert got["method"] == row["method"] and got["number"] == int(row["number"])
        assert got["state"] == row["state"]
        assert {n: _native(got[n]) for n in run.params if _native(got[n]) is not None} == p
        if row["state"] == "COMPLETE":
            assert got["accuracy_val"] == float(row["accuracy_val"])
            assert got["latency_ms"] == float(row["latency_ms"])
            assert got["feasible"] == (row["feasible"] == "True")
            assert pd.isna(got["fail_reason"])
        else:
            assert got["fail_reason"] == row["fail_reason"] != ""
            assert pd.isna(got["accuracy_val"]) and pd.isna(got["feasible"])
        assert got["started_at"] <= got["finished_at"]
        assert got["started_at"] == pd.Timestamp(row["started_at"])


def test_trials_agree_with_the_summary(runs):
    run = load_run(runs[0])
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert run.summary == summary and run.methods == tuple(summary["methods"])
    w8 = summary["reference"]["w8a8_latency_ms"]
    assert run.w8a8_latency_ms == w8 and run.seed == summary["seed"] == 0
    states = run.trials.groupby(["method", "state"]).size()
    for method, m in summary["methods"].items():
        assert states[method, "COMPLETE"] == m["completed"]
        assert states.get((method, "FAIL"), 0) == m["failed"]
        done = run.trials[(run.trials.method == method) & (run.trials.state == "COMPLETE")]
        points = list(zip(done.accuracy_val, done.latency_ms / w8, strict=True))
        hv = hypervolume_2d(points, reference=HV_REFERENCE, directions=HV_DIRECTIONS)
        assert hv == pytest.approx(m["hypervolume_val"])
    assert (run.trials.method == "joint").any() and (run.trials.state == "FAIL").any()


def test_pareto_rows_equal_their_configs(runs):
    run = load_run(runs[0])
    summary = run.summary
    assert [c.name for c in PARETO_SCHEMA if c.name != "params"] == list(
        run.pareto.columns[: len(PARETO_SCHEMA) - 1]
    )
    assert str(run.pareto["total_cycles"].dtype) == "Int64"
    assert run.pareto["area_mm2"].isna().all()  # no co-design
    for method, m in summary["methods"].items():
        mine = run.pareto[run.pareto.method == method]
        assert list(mine.config_id) == m["pareto"]
    assert set(run.configs) == set(run.pareto.config_id)
    for row in run.pareto.to_dict("records"):
        config = _config(runs[0], row["config_id"])
        assert run.configs[row["config_id"]] == config
        assert row["number"] == config["trial_number"] and row["method"] == config["method"]
        assert row["accuracy_val"] == config["accuracy"]["val"]
        assert row["accuracy_test"] == config["accuracy"]["test"]
        assert row["latency_ms"] == config["simulation"]["latency_ms"]
        assert row["energy_mj"] == config["simulation"]["energy_mj"]
        assert row["size_kib"] == config["size_kib"]
        assert row["total_cycles"] == config["simulation"]["total_cycles"]
        assert row["rung"] == config["accuracy"]["rung"] == 1
        assert row["latency_vs_w8a8"] == pytest.approx(row["latency_ms"] / run.w8a8_latency_ms)
        plan = config["plan"]["layers"]
        for name in run.params:
            layer, knob = name.split(".")
            value = plan[layer][knob]
            assert row[name] == (1.0 if value is None else value), name  # None: full rank


def test_fastest_within_one_point_is_the_summarys_best(runs):
    run = load_run(runs[0])
    for method, m in run.summary["methods"].items():
        rows = run.pareto[run.pareto.method == method]
        ok = rows[rows.accuracy_val >= run.fp32_val - ONE_POINT]
        best = m["best_within_1pt"]
        if best is None:
            assert ok.empty
            continue
        assert ok.sort_values("latency_ms").iloc[0]["config_id"] == best["config_id"]


def test_layers_are_the_configs_simulated_layers(runs):
    run = load_run(runs[0])
    assert list(run.layers.columns) == list(LAYER_COLUMNS)
    for name, kind in LAYER_COLUMNS.items():
        assert str(run.layers[name].dtype) == DTYPES[kind], name
    assert not run.layers["resimulated"].any()
    for name in ("compute_cycles", "stall_cycles", "overhead_cycles", "dram_bytes", "bound"):
        assert run.layers[name].isna().all()  # configs store totals only
    assert list(dict.fromkeys(run.layers.config_id)) == list(run.pareto.config_id)
    for cid, table in run.layers.groupby("config_id", sort=False):
        config = _config(runs[0], cid)
        stored = config["simulation"]["layers"]
        assert len(table) == len(stored) == 4
        for got, want in zip(table.to_dict("records"), stored, strict=True):
            assert got["layer"] == want["name"] and got["op"] == want["op"]
            for key in ("w_bits", "a_bits", "macs", "total_cycles", "latency_ms", "energy_mj"):
                assert got[key] == want[key], key
            spec = config["plan"]["layers"][want["name"]]
            assert got["keep"] == spec.get("keep", 1.0) and got["nm"] == "dense"
            assert got["rank_fraction"] == (spec["rank_fraction"] or 1.0) and pd.isna(got["rank"])
            assert got["method"] == config["method"]


def test_layers_of_a_model_outside_the_zoo_keep_their_totals_when_resimulated(runs):
    plain = load_run(runs[0])
    again = load_run(runs[0], resimulate_layers=True)  # synthetic-cnn is no zoo model
    pd.testing.assert_frame_equal(plain.layers, again.layers)


def test_validation_is_empty_with_its_columns_when_validate_did_not_run(runs):
    from lowbit.search.validate import VALIDATION_COLUMNS

    run = load_run(runs[0])
    assert run.validation.empty and list(run.validation.columns) == list(VALIDATION_COLUMNS)
    assert str(run.validation["config_id"].dtype) == "string"
    assert str(run.validation["simulated_ms_b1"].dtype) == "float64"
    assert run.validation_summary is None


def test_validation_rows_load(run_copy):
    from lowbit.search.results import write_csv
    from lowbit.search.validate import VALIDATION_COLUMNS

    run = load_run(run_copy)
    rows = []
    for i, cid in enumerate(run.pareto.config_id):
        row = dict.fromkeys(VALIDATION_COLUMNS, "")
        row.update(config_id=cid, source="pareto", simulated_ms_b1=0.5 + i, accuracy_int8=0.9)
        rows.append(row)
    write_csv(run_copy / "validation.csv", rows, VALIDATION_COLUMNS)
    (run_copy / "validation.json").write_text(json.dumps({"metrics": {}, "configs": rows}))
    again = load_run(run_copy)
    assert list(again.validation.config_id) == list(run.pareto.config_id)
    assert list(again.validation.simulated_ms_b1) == [0.5 + i for i in range(len(rows))]
    assert again.validation.measured_int8_ms_b1.isna().all()
    assert again.validation_summary["configs"][0]["config_id"] == run.pareto.config_id[0]


def test_a_run_is_a_frozen_record(runs):
    run = load_run(runs[0])
    assert isinstance(run, Run) and run.run_dir == runs[0]
    assert run.model == "synthetic-cnn" and run.hardware == "npu-bitfusion"
    with pytest.raises(AttributeError):
        run.trials = None  # type: ignore[misc]
