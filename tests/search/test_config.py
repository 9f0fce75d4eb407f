"""Deployment configs (and the run directory's atomic writes): round trip, schema checks."""

from __future__ import annotations

import json

import pytest

from lowbit.search.config import (
    CONFIG_SCHEMA_VERSION,
    ConfigError,
    DeploymentConfig,
    load_config,
)
from lowbit.search.evaluator import LayerCost
from lowbit.search.results import atomic_write_text


def _config() -> DeploymentConfig:
    from lowbit.models.compression.plan import CompressionPlan, LayerSpec

    plan = CompressionPlan(
        layers={"conv1": LayerSpec(w_bits=4, a_bits=8, keep=0.5), "_default": LayerSpec(8, 8)},
        pin_first_last=False,
    )
    return DeploymentConfig(
        id="joint-00007",
        model="digits-cnn",
        dataset="digits",
        seed=0,
        hardware="npu-bitfusion",
        hardware_hash="ab" * 32,
        method="joint",
        study="digits-cnn-npu-bitfusion-s0",
        trial_number=7,
        plan=plan.to_dict(),
        accuracy_val=0.97,
        accuracy_test=0.965,
        fp32_val=0.98,
        fp32_test=0.975,
        engine="analytic",
        latency_ms=0.0123,
        energy_mj=0.0004,
        total_cycles=6150,
        size_kib=12.5,
        layers=(LayerCost("conv1", "conv2d", 4, 8, 9216, 1200, 0.0024, 0.0001),),
        lowbit_version="0.1.0",
        rung=1,
        val_samples=359,
        test_samples=360,
        accuracy_cheap=0.96,
        cheap_val_samples=150,
        qat_steps=20,
        qat_seed=0,
        calib_samples=100,
        calib_seed=0,
        calib_sha256="cd" * 32,
        threads=1,
    )


def test_config_round_trip(tmp_path):
    cfg = _config()
    path = cfg.write(tmp_path / "configs" / "joint-00007.json")
    loaded = load_config(path)
    assert loaded == cfg
    data = json.loads(path.read_text())
    assert data["schema_version"] == CONFIG_SCHEMA_VERSION == 2
    assert data["hardware"] == {"name": "npu-bitfusion", "content_hash": "ab" * 32}
    assert data["qat"] == {"steps": 20, "seed": 0}
    assert data["calibration"]["samples"] == 100 and data["calibration"]["seed"] == 0
    assert data["accuracy"]["rung"] == 1 and data["accuracy"]["val_samples"] == 359
    assert loaded.build_kwargs() == {
        "seed": 0,
        "finetune_steps": 20,
        "qat_seed": 0,
        "calib_samples": 100,
        "calib_seed": 0,
    }
    # the plan in the file is a CompressionPlan the models package accepts as is
    from lowbit.models.compression.plan import CompressionPlan

    assert CompressionPlan.from_dict(data["plan"]).resolve("conv1").keep == 0.5


def test_schema_problems_are_listed_with_their_paths(tmp_path):
    data = _config().to_dict()
    data["schema_version"] = 99
    del data["accuracy"]["test"]
    del data["qat"]["steps"]
    data["accuracy"]["rung"] = 3
    data["simulation"]["latency_ms"] = "fast"
    data["plan"]["layers"]["conv1"]["w_bits"] = 9
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    for needle in (
        str(path),
        "schema_version: unsupported 99",
        "accuracy.test: missing",
        "simulation.latency_ms: must be number",
        'plan.layers["conv1"].w_bits',
    ):
        assert needle in text


def test_out_of_range_values_are_listed_with_their_paths(tmp_path):
    data = _config().to_dict()
    data["accuracy"]["val"] = 1.5
    data["simulation"]["total_cycles"] = -3
    data["seed"] = 2**63  # torch and numpy generators take signed 64-bit seeds
    data["qat"]["steps"] = 10**20
    data["simulation"]["layers"][0]["total_cycles"] = -1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    for needle in (
        "accuracy.val: must be a fraction in [0, 1], got 1.5",
        "simulation.total_cycles: must be a finite number >= 0, got -3",
        f"seed: must be an integer from 0 to {2**63 - 1}",
        "qat.steps: must be an integer from 0 to",
        "simulation.layers[0]: total_cycles must be finite numbers >= 0",
    ):
        assert needle in text
    # NaN is not JSON: refused where the file is read, naming it
    path.write_text(json.dumps(_config().to_dict()).replace("0.97", "NaN"))
    with pytest.raises(ConfigError, match="bad.json: not valid JSON .*NaN"):
        load_config(path)


def test_not_json_and_missing_file(tmp_path):
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "x.json")
    with pytest.raises(ConfigError, match="missing.json: deployment config not found"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="binary.json: not a UTF-8 text file"):
        load_config(tmp_path / "binary.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="deep.json: JSON nested too deeply"):
        load_config(tmp_path / "deep.json")


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def as_schema_1(data: dict) -> dict:
    """A config's dict as written before rungs (schema 1): no QAT or calibration record,
    no rung fields in its accuracy."""
    data["schema_version"] = 1
    for key in ("qat", "calibration"):
        del data[key]
    for key in (
        "rung",
        "rung_name",
        "val_samples",
        "test_samples",
        "cheap_val",
        "cheap_val_samples",
        "torch_threads",
    ):
        del data["accuracy"][key]
    return data


def test_schema_1_configs_still_load_with_their_meaning(tmp_path):
    """A config written before rungs: whole-val calibration, QAT steps not in the file."""
    data = as_schema_1(_config().to_dict())
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    cfg = load_config(path)
    assert cfg.schema_version == 1 and cfg.rung == 1
    assert cfg.qat_steps is None and cfg.calib_samples is None
    kwargs = cfg.build_kwargs(qat_steps=7)  # the steps from the run's summary.json
    assert kwargs["finetune_steps"] == 7 and kwargs["calib_samples"] is None


def test_a_user_model_config_cannot_be_rebuilt():
    from dataclasses import replace

    cfg = replace(_config(), calib_split="user", calib_seed=None, calib_sha256=None)
    with pytest.raises(ConfigError, match="only zoo-model configs"):
        cfg.build_kwargs()
