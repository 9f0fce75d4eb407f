"""``lowbit validate --vela``: lowbit's Ethos-U cycles vs Vela's on a tiny hand-made run of
digits-cnn, the statistics, and the one-line errors (wrong profile, missing edge extra)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from test_validate import MODEL, PRUNED, W8A8  # noqa: E402  (the same plans)

from lowbit.cli import main
from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profiles import load_profile
from lowbit.search.results import write_json
from lowbit.search.testing import example_config
from lowbit.search.validate import latency_metrics
from lowbit.search.vela_validate import VELA_COLUMNS, vela_validate_run


def make_run(run_dir: Path, configs: dict[str, dict], *, hardware: str) -> Path:
    """A run directory as a search on ``hardware`` writes it (no accuracies needed)."""
    digest = load_profile(hardware).content_hash()
    for i, (cid, plan) in enumerate(configs.items()):
        example_config(
            id=cid,
            model=MODEL,
            hardware=hardware,
            hardware_hash=digest,
            trial_number=i,
            plan=plan,
            latency_ms=0.05 - 0.01 * i,
        ).write(run_dir / "configs" / f"{cid}.json")
    write_json(
        run_dir / "summary.json",
        {
            "schema_version": 1,
            "model": MODEL,
            "seed": 0,
            "hardware": {"name": hardware, "content_hash": digest},
            "evaluator": {"pin_first_last": False, "finetune_steps": 0},
            "methods": {"joint": {"pareto": list(configs)}},
        },
    )
    return run_dir


@pytest.fixture(scope="module")
def validated(tmp_path_factory, zoo_cache):
    run_dir = make_run(
        tmp_path_factory.mktemp("run"),
        {"joint-00001": W8A8, "joint-00002": PRUNED},
        hardware="npu-ethos-u55",
    )
    return run_dir, vela_validate_run(run_dir)


def test_one_row_per_config_with_vela_cycles(validated):
    run_dir, result = validated
    rows = result["configs"]
    # joint-00001 is uniform W8A8 (measured once); the W4A8 and W2A8 baselines are added
    assert [r["config_id"] for r in rows] == [
        "joint-00001",
        "joint-00002",
        "uniform-W4A8",
        "uniform-W2A8",
    ]
    assert result["profile"] == "npu-ethos-u55" == result["run_profile"]
    assert result["vela"]["accelerator"] == "ethos-u55-256"
    for r in rows:
        assert r["vela_cycles"] > 0 and r["lowbit_cycles"] > 0
        assert r["ratio"] == pytest.approx(r["lowbit_cycles"] / r["vela_cycles"])
        assert r["cpu_operators"] == 0 and r["npu_operators"] > 0
        # the per-layer pairs add up to the totals (every Vela operator maps to a layer)
        assert sum(x["vela"] for x in r["layers"]) == r["vela_cycles"]
        assert sum(x["lowbit"] for x in r["layers"]) == r["lowbit_cycles"]
        export = run_dir / r["export_dir"]
        deploy = json.loads((export / "deploy.json").read_text())
        assert deploy["vela"]["cycles"] == r["vela_cycles"]
        assert (export / deploy["files"]["tflite"]).is_file()
    # pruned and low-rank: fewer cycles in both models
    by_id = {r["config_id"]: r for r in rows}
    for key in ("lowbit_cycles", "vela_cycles"):
        assert by_id["joint-00002"][key] < by_id["joint-00001"][key]


def test_statistics_consistent_with_rows(validated):
    _, result = validated
    rows = result["configs"]
    lowbit = [r["lowbit_cycles"] for r in rows]
    vela = [r["vela_cycles"] for r in rows]
    metrics = result["metrics"]
    assert metrics == latency_metrics(lowbit, vela)
    assert set(metrics) >= {"n", "spearman", "kendall", "mape_pct", "within_10pct", "within_15pct"}
    assert metrics["n"] == len(rows)
    errors = [abs(r["ratio"] - 1) for r in rows]
    assert metrics["mape_pct"] == pytest.approx(100 * sum(errors) / len(errors))
    assert metrics["within_10pct"] == sum(e <= 0.10 for e in errors) / len(errors)
    ratios = result["ratios"]
    assert ratios["configs"] == len(rows)
    assert ratios["total_within_20pct"] == sum(e <= 0.2 for e in errors) / len(errors)
    assert ratios["layers"] == sum(len(r["layers"]) for r in rows)
    assert sum(s["layers"] for s in ratios["by_op"].values()) == ratios["layers"]
    assert {"conv2d", "linear"} <= set(ratios["by_op"])
    for s in ratios["by_op"].values():
        assert s["min_ratio"] <= s["median_ratio"] <= s["max_ratio"]
        assert 0.0 <= s["within_20pct"] <= 1.0


def test_files_written(validated):
    run_dir, result = validated
    written = json.loads((run_dir / "vela_validation.json").read_text())
    assert written == json.loads(json.dumps(result))
    with open(run_dir / "vela_validation.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == VELA_COLUMNS
    assert [int(r["vela_cycles"]) for r in rows] == [r["vela_cycles"] for r in result["configs"]]


def test_wrong_profile_is_one_line(tmp_path, zoo_cache, capsys):
    run_dir = make_run(tmp_path / "run", {"joint-00001": W8A8}, hardware="cpu-x86-avx2")
    with pytest.raises(LowbitError, match="'cpu-x86-avx2'.*--profile npu-ethos-u55"):
        vela_validate_run(run_dir)
    with pytest.raises(LowbitError, match="--profile must name an Ethos-U profile"):
        vela_validate_run(run_dir, profile="npu-bitfusion")
    assert main(["validate", "--run", str(run_dir), "--vela"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cpu-x86-avx2" in err[0]
    assert not (run_dir / "vela_validation").exists()
    # --vela times nothing: the CPU timing flags are refused, not silently ignored
    assert main(["validate", "--run", str(run_dir), "--vela", "--repeats", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--repeats/--warmup" in err[0]


@pytest.mark.parametrize("module", ["ethosu.vela", "ai_edge_litert.schema_py_generated"])
def test_missing_extra_is_one_line(tmp_path, zoo_cache, monkeypatch, capsys, module):
    run_dir = make_run(tmp_path / "run", {"joint-00001": W8A8}, hardware="npu-ethos-u55")
    monkeypatch.setitem(sys.modules, module, None)
    assert main(["validate", "--run", str(run_dir), "--vela"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'lowbit[edge]'" in err[0]
    assert not (run_dir / "vela_validation").exists()
