"""`lowbit train`, `lowbit models` and `lowbit evaluate` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_testkit import error_of

from lowbit.cli import main
from lowbit.models.bridge import to_workload
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.zoo import build, zoo_names

pytestmark = pytest.mark.usefixtures("fresh_cache")  # an empty LOWBIT_CACHE


def run_json(capsys, *argv: str):
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_caches_the_checkpoint(capsys, fresh_cache):
    first = run_json(capsys, "train", "--model", "digits-cnn")
    assert first["cached"] is False and first["model"] == "digits-cnn" and first["seed"] == 0
    path = Path(first["checkpoint"])
    assert path.is_file() and path.is_relative_to(fresh_cache)
    mtime = path.stat().st_mtime_ns
    second = run_json(capsys, "train", "--model", "digits-cnn")
    assert second["cached"] is True and path.stat().st_mtime_ns == mtime
    assert second["test_accuracy"] == first["test_accuracy"] >= 0.95


def test_models_lists_the_zoo(capsys):
    assert main(["train", "--model", "digits-cnn"]) == 0  # cached after the test above
    capsys.readouterr()
    rows = run_json(capsys, "models", "--no-train")
    assert [row["name"] for row in rows] == zoo_names()
    for row in rows:
        model = build(row["name"])
        assert row["params"] == sum(p.numel() for p in model.parameters())
        assert row["macs"] == to_workload(model).macs  # per sample
        assert row["dataset"] == model.dataset
    accuracy = {row["name"]: row["fp32_test_accuracy"] for row in rows}
    assert accuracy["digits-cnn"] >= 0.95  # trained; --no-train leaves the others untrained
    assert all(accuracy[name] is None for name in zoo_names() if name != "digits-cnn")
    assert main(["models", "--no-train"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in zoo_names()) and "460,416" in table  # digits-cnn MACs


def test_evaluate_with_bits(capsys):
    result = run_json(capsys, "evaluate", "--model", "digits-cnn", "--bits", "W8A8")
    assert {"model", "split", "n", "accuracy", "fp32_accuracy", "plan"} <= set(result)
    assert result["split"] == "test" and result["n"] == 360
    assert result["plan"] == CompressionPlan.from_bits_string("W8A8").to_dict()
    assert 0.0 <= result["accuracy"] <= 1.0
    assert abs(result["accuracy"] - result["fp32_accuracy"]) <= 0.02  # W8A8 is near lossless
    assert main(["evaluate", "--model", "digits-cnn", "--bits", "W4A8", "--split", "val"]) == 0
    assert "compressed accuracy" in capsys.readouterr().out


def test_evaluate_with_a_plan_file(capsys, tmp_path):
    plan = {
        "version": 1,
        "pin_first_last": True,
        "layers": {"conv2": {"w_bits": 4, "a_bits": 8, "keep": 0.5}, "_default": {"w_bits": 8}},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    result = run_json(capsys, "evaluate", "--model", "digits-cnn", "--plan", str(path))
    assert result["plan"] == CompressionPlan.from_json(path.read_text()).to_dict()
    assert result["plan"]["layers"]["conv2"]["keep"] == 0.5
    assert 0.5 <= result["accuracy"] <= 1.0


def test_user_errors_are_one_line(capsys, tmp_path):
    assert "valid names: digits-cnn" in error_of(
        capsys, "evaluate", "--model", "x", "--bits", "W8A8"
    )
    assert "valid names: digits-cnn" in error_of(capsys, "train", "--model", "resnet18")
    assert "W4A8" in error_of(capsys, "evaluate", "--model", "digits-cnn", "--bits", "8bit")
    missing = str(tmp_path / "missing.json")
    assert "compression plan not found" in error_of(
        capsys, "evaluate", "--model", "digits-cnn", "--plan", missing
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"layers": {"conv9": {"w_bits": 4}}}))
    message = error_of(capsys, "evaluate", "--model", "digits-cnn", "--plan", str(bad))
    assert 'layers["conv9"]' in message
