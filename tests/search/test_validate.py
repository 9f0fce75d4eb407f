"""``validate_run`` on a tiny hand-made run directory, its metrics, and its input errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lowbit.hwsim.errors import LowbitError
from lowbit.search.config import ConfigError
from lowbit.search.results import write_json
from lowbit.search.testing import example_config
from lowbit.search.validate import VALIDATION_COLUMNS, latency_metrics, targets_of_run, validate_run

MODEL = "digits-cnn"
PRUNED = {
    "version": 1,
    "pin_first_last": False,
    "layers": {
        "_default": {"w_bits": 4, "a_bits": 8},
        "conv2": {"w_bits": 4, "a_bits": 8, "keep": 0.5},
        "fc1": {"w_bits": 4, "a_bits": 8, "rank": 16},
    },
}
W8A8 = {"version": 1, "pin_first_last": False, "layers": {"_default": {"w_bits": 8, "a_bits": 8}}}


def write_config(run_dir: Path, cid: str, plan: dict, *, model: str = MODEL) -> Path:
    """A deployment config as the search writes it, with its fake-quant test accuracy."""
    from lowbit import models
    from lowbit.models.accuracy import accuracy
    from lowbit.models.compression.plan import CompressionPlan

    base = models.load_trained(MODEL)
    x_val, _ = models.load_split("digits", "val")
    x, y = models.load_split("digits", "test")
    small = models.compress(base, CompressionPlan.from_dict(plan), calib=x_val)
    cfg = example_config(
        id=cid,
        model=model,
        hardware="cpu-x86-avx2",
        trial_number=0,
        plan=plan,
        accuracy_test=accuracy(small, x, y),
        latency_ms=0.02 if cid.endswith("1") else 0.01,
    )
    return cfg.write(run_dir / "configs" / f"{cid}.json")


def make_run(run_dir: Path, configs: dict[str, dict]) -> Path:
    for cid, plan in configs.items():
        write_config(run_dir, cid, plan)
    write_json(
        run_dir / "summary.json",
        {
            "schema_version": 1,
            "model": MODEL,
            "seed": 0,
            "evaluator": {"pin_first_last": False, "finetune_steps": 0},
            "methods": {"joint": {"pareto": list(configs)}},
        },
    )
    return run_dir


@pytest.fixture(scope="module")
def host_profile(tmp_path_factory, zoo_cache) -> Path:
    from lowbit.models.hostcal import calibration as hostcal

    return hostcal.write(hostcal.calibrate(quick=True), tmp_path_factory.mktemp("host") / "h.toml")


@pytest.fixture(scope="module")
def validated(tmp_path_factory, host_profile):
    run_dir = make_run(tmp_path_factory.mktemp("run"), {"joint-00001": W8A8, "joint-00002": PRUNED})
    result = validate_run(run_dir, profile_path=host_profile, repeats=5, warmup=1)
    return run_dir, result


@pytest.mark.slow
def test_validate_writes_the_files(validated):
    run_dir, result = validated
    assert not (run_dir / "validation.png").exists()  # drawn by `lowbit validate` (reports)
    assert json.loads((run_dir / "validation.json").read_text()) == json.loads(json.dumps(result))
    with open(run_dir / "validation.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == VALIDATION_COLUMNS
    # joint-00001 is uniform W8A8: measured once; W4A8 and W2A8 baselines are added
    ids = [r["config_id"] for r in rows]
    assert ids == ["joint-00001", "joint-00002", "uniform-W4A8", "uniform-W2A8"]
    for cid in ids:
        export = run_dir / "validation" / cid
        assert {p.name for p in export.iterdir()} >= {
            "model.int8.onnx",
            "model.fp32.onnx",
            "deploy.json",
        }


@pytest.mark.slow
def test_validation_fields(validated, host_profile):
    _, result = validated
    assert result["settings"]["repeats"] == 5
    assert result["settings"]["intra_op_threads"] == 1
    # on the host profile the timings are at its clock (where the add chain runs: x86-64)
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.hostcal.clock import add_chain

    at, span = result["settings"]["timings_at_clock_hz"], result["settings"]["core_clock_range_hz"]
    if add_chain() is None:
        assert at is None and span is None
    else:
        assert at == load_profile(host_profile).clock_hz and 0 < span[0] <= span[1]
    assert len(result["load_average"]["before"]) == 3
    assert result["host"]["profile_hash"] and result["host"]["cpu"]["flags"]
    for batch in (1, 64):
        metrics = result["metrics"][f"b{batch}"]
        assert set(metrics) >= {
            "n",
            "spearman",
            "kendall",
            "mape_pct",
            "within_10pct",
            "within_15pct",
            "repeatability",
            "int8_speedup_vs_fp32",
        }
        assert metrics["repeatability"]["n"] == 4
        assert metrics["repeatability"]["mape_pct"] >= 0
        assert metrics["n"] == 4
        assert 0.0 <= metrics["within_10pct"] <= metrics["within_15pct"] <= 1.0
    for row in result["configs"]:
        for batch in (1, 64):
            measured = row[f"measured_int8_ms_b{batch}"]
            assert measured > 0 and row[f"iqr_int8_ms_b{batch}"] >= 0
            assert row[f"int8_speedup_vs_fp32_b{batch}"] == pytest.approx(
                row[f"measured_fp32_ms_b{batch}"] / measured
            )
            assert row[f"sim_error_pct_b{batch}"] == pytest.approx(
                (row[f"simulated_ms_b{batch}"] / measured - 1) * 100
            )
        assert row["accuracy_diff_points"] == pytest.approx(
            (row["accuracy_int8"] - row["accuracy_fake_quant"]) * 100
        )
        assert row["argmax_agreement"] >= 0.99
    diffs = [abs(r["accuracy_diff_points"]) for r in result["configs"]]
    assert result["accuracy"]["max_abs_diff_points"] == max(diffs)
    # more channels and more work: the pruned config is never simulated slower at batch 64
    sims = {r["config_id"]: r["simulated_ms_b64"] for r in result["configs"]}
    assert sims["joint-00002"] < sims["joint-00001"]


def test_latency_metrics_golden_values():
    # measured = simulated: perfect ranks, no error
    m = latency_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert m["spearman"] == pytest.approx(1.0) and m["kendall"] == pytest.approx(1.0)
    assert m["mape_pct"] == 0.0 and m["within_10pct"] == 1.0
    # errors +5%, -12%, +20%, reversed ranks: |e| mean = 37/3 %, 1 of 3 within 10%
    m = latency_metrics([1.05, 0.88, 0.6], [1.0, 1.0 + 1e-9, 0.5])
    assert m["mape_pct"] == pytest.approx((5 + 12 + 20) / 3, rel=1e-6)
    assert m["within_10pct"] == pytest.approx(1 / 3) and m["within_15pct"] == pytest.approx(2 / 3)
    assert latency_metrics([1.0, 2.0], [2.0, 1.0])["spearman"] is None  # too few points


def test_bad_run_directories(tmp_path, zoo_cache):
    with pytest.raises(LowbitError, match="does not exist"):
        targets_of_run(tmp_path / "missing")
    with pytest.raises(LowbitError, match="no summary.json"):
        targets_of_run(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(LowbitError, match=r"summary.json: not valid JSON \(run summary\)"):
        targets_of_run(tmp_path)
    (tmp_path / "summary.json").write_bytes(bytes(range(256)))
    with pytest.raises(LowbitError, match="summary.json: not a UTF-8 text file"):
        targets_of_run(tmp_path)
    # wrong types were an AttributeError / TypeError traceback
    (tmp_path / "summary.json").write_text('{"model": "digits-cnn", "methods": 5}')
    with pytest.raises(LowbitError, match="methods: must be an object, got 5"):
        targets_of_run(tmp_path)
    (tmp_path / "summary.json").write_text('{"model": "m", "methods": {"joint": {"pareto": 3}}}')
    with pytest.raises(LowbitError, match="methods.joint.pareto: must be an array of config"):
        targets_of_run(tmp_path)


@pytest.mark.slow
def test_bad_configs(tmp_path, zoo_cache):
    run_dir = make_run(tmp_path, {"joint-00001": W8A8})
    bad = run_dir / "configs" / "joint-00001.json"
    bad.write_text('{"schema_version": 1, "kind"')
    with pytest.raises(ConfigError, match="not valid JSON"):
        targets_of_run(run_dir)
    write_config(run_dir, "joint-00001", W8A8, model="digits-vit")
    with pytest.raises(ConfigError, match="model 'digits-vit'"):
        targets_of_run(run_dir)
    with pytest.raises(LowbitError, match="--top"):
        write_config(run_dir, "joint-00001", W8A8)
        targets_of_run(run_dir, top=0)
