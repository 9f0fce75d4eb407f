"""A real two-rung search through the CLI (digits-cnn, 2 Ray workers, a few QAT steps):
the flags reach summary.json, every config is complete, and a config copied out of its run
directory rebuilds the measured model: ``lowbit evaluate --config`` gives its recorded val
and test accuracy exactly."""

from __future__ import annotations

import json
import shutil

import pytest

from lowbit.cli import main
from lowbit.search import load_config

FLAGS = [
    "--fidelity",
    "multi",
    "--cheap-val",
    "150",
    "--calib-samples",
    "100",
    "--promote-margin",
    "1.5",
    "--finetune-steps",
    "3",
]


@pytest.fixture(scope="module")
def cli_run(ray_session, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    argv = [
        "search",
        "--model",
        "digits-cnn",
        "--hardware",
        "npu-bitfusion",
        "--trials",
        "8",
        "--workers",
        "2",
        "--baselines",
        "uniform",
        "--out",
        str(run),
        "--quiet",
        *FLAGS,
    ]
    assert main(argv) == 0
    return run


def _json_of(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_flags_round_trip_into_the_summary(cli_run):
    summary = json.loads((cli_run / "summary.json").read_text())
    fidelity = summary["fidelity"]
    assert fidelity["mode"] == "multi" and fidelity["rungs"] == ["cheap", "full"]
    assert fidelity["cheap_val"] == 150 and fidelity["calib_samples"] == 100
    assert fidelity["promote_margin_se"] == 1.5 and fidelity["val_samples"] == 359
    measured = fidelity["measurement"]
    assert measured["calib_samples"] == 100 and measured["cheap_val_samples"] == 150
    assert measured["qat_steps"] == 3 and measured["val_samples"] == 359
    assert summary["evaluator"]["finetune_steps"] == 3
    assert summary["evaluator"]["fidelity"]["cheap_val"] == 150
    assert "payload" not in summary["evaluator"]
    for m in summary["methods"].values():
        assert m["rungs"]["cheap_only"] + m["rungs"]["full"] == m["completed"]


@pytest.mark.slow
def test_configs_are_complete_and_reproduce_anywhere(cli_run, tmp_path, capsys):
    from lowbit.models.data import load_split
    from lowbit.models.export.calib_subset import stratified_subset, subset_sha256

    paths = sorted((cli_run / "configs").glob("*.json"))
    assert paths
    _, labels = load_split("digits", "val")
    expected_sha = subset_sha256(stratified_subset(labels.numpy(), samples=100, seed=0))
    for path in paths:
        cfg = load_config(path)
        assert cfg.rung == 1 and cfg.val_samples == 359 and cfg.test_samples == 360
        assert (cfg.qat_steps, cfg.qat_seed, cfg.threads) == (3, 0, 1)
        assert (cfg.calib_samples, cfg.calib_seed) == (100, 0)
        assert cfg.calib_sha256 == expected_sha
        assert cfg.accuracy_cheap is not None and cfg.cheap_val_samples == 150
    # a config moved out of its run directory (no summary.json next to it) is all it needs
    moved = tmp_path / "elsewhere" / "chosen.json"
    moved.parent.mkdir()
    shutil.copy(paths[0], moved)
    cfg = load_config(moved)
    val = _json_of(
        capsys, ["evaluate", "--config", str(moved), "--split", "val", "--format", "json"]
    )
    assert val["accuracy"] == cfg.accuracy_val and val["reproduces"] is True
    assert val["n"] == cfg.val_samples and val["qat_steps"] == 3 and val["calib_samples"] == 100
    test = _json_of(capsys, ["evaluate", "--config", str(moved), "--format", "json"])
    assert test["split"] == "test" and test["accuracy"] == cfg.accuracy_test


@pytest.mark.slow
def test_evaluate_flags_match_the_config(cli_run, capsys):
    """--seed/--qat-steps/--calib-samples with --plan rebuild what the config describes."""
    path = sorted((cli_run / "configs").glob("*.json"))[0]
    cfg = load_config(path)
    plan = path.parent / "plan.json"
    plan.write_text(json.dumps(cfg.plan))
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the worker's
    try:
        out = _json_of(
            capsys,
            [
                "evaluate",
                "--model",
                "digits-cnn",
                "--plan",
                str(plan),
                "--qat-steps",
                "3",
                "--calib-samples",
                "100",
                "--seed",
                "0",
                "--split",
                "val",
                "--format",
                "json",
            ],
        )
    finally:
        torch.set_num_threads(threads)
    assert out["accuracy"] == cfg.accuracy_val


def test_config_and_flag_errors_are_one_line(tmp_path, capsys, zoo_cache):
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    assert main(["evaluate", "--config", str(cfg), "--qat-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--config fixes --qat-steps" in err and "\n" not in err
    assert main(["evaluate", "--bits", "W8A8"]) == 2
    assert "--model is required" in capsys.readouterr().err
    argv = [
        "search",
        "--model",
        "digits-cnn",
        "--hardware",
        "npu-bitfusion",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*argv, "--fidelity", "multi", "--cheap-val", "400"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cheap_val" in err and "359" in err and "\n" not in err
    assert main([*argv, "--calib-samples", "0"]) == 2
    assert "calib_samples: must be a positive integer" in capsys.readouterr().err
