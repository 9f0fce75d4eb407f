"""Hostile inputs to every command: one line naming the file or flag, exit code 2, before
any long work (issue 15's reproductions)."""

from __future__ import annotations

import pytest
from cli_testkit import error_of
from fuzz_corpus import minimal_config

from lowbit.cli import main

SIM = ("--hardware", "npu-bitfusion", "--workload", "resnet18")


@pytest.fixture
def nasty(tmp_path):
    """A binary file and a deeply nested JSON file."""
    (tmp_path / "binary.json").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return tmp_path


@pytest.mark.parametrize("name", ["binary.json", "deep.json"])
@pytest.mark.parametrize(
    "argv",
    [
        ("simulate", *SIM),
        ("sweep", *SIM, "--vary", "compute.rows=16,32"),
        ("evaluate", "--model", "digits-cnn"),
    ],
)
def test_unreadable_plans_name_the_file(nasty, capsys, argv, name):
    message = error_of(capsys, *argv, "--plan", str(nasty / name))
    assert f"{nasty / name}: " in message
    assert "not a UTF-8 text file" in message or "nested too deeply" in message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ("simulate", *SIM, "--set", "memory.0.bandwidth_bytes_per_cycle=1e-308"),
            "memory[0].bandwidth_bytes_per_cycle: must be >= 0.001, got 1e-308",
        ),
        (("simulate", *SIM, "--set", "clock_hz=1e-308"), "clock_hz: must be >= 1000"),
        (
            ("sweep", *SIM, "--vary", "memory.0.bandwidth_bytes_per_cycle=1e-308,1"),
            "bandwidth_bytes_per_cycle: must be >= 0.001",
        ),
        (
            (
                "sweep",
                "--hardware",
                "npu-bitfusion",
                "--workloads",
                "resnet18,mobilenetv2",
                "--vary",
                "clock_hz=1e-308,5e8",
            ),
            "clock_hz: must be >= 1000",
        ),
        (("sweep", *SIM, "--vary", "compute.rows=,,"), "--vary compute.rows: no values"),
        (("simulate", *SIM, "--bits", ""), "--bits: expected WxAy like W4A8, got ''"),
        (("simulate", *SIM, "--bits", "W\u0664A\u0668"), "--bits: expected WxAy"),
        (("simulate", *SIM, "--bits", "W04A08"), "--bits: expected WxAy"),
        (("evaluate", "--model", "digits-cnn", "--bits", ""), "bits: expected a string like"),
    ],
)
def test_bad_numbers_and_bit_widths_are_one_line(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)  # sweep would write here
    assert expected in error_of(capsys, *argv)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv",
    [
        ("train", "--model", "digits-cnn", "--seed", str(2**63)),
        ("models", "--seed", "-1"),
        ("evaluate", "--model", "digits-cnn", "--bits", "W8A8", "--seed", str(2**64)),
        (
            "search",
            "--model",
            "digits-cnn",
            "--hardware",
            "npu-bitfusion",
            "--finetune-steps",
            str(10**20),
        ),
        ("search", "--model", "digits-cnn", "--hardware", "npu-bitfusion", "--trials", "0"),
    ],
)
def test_out_of_range_integers_are_argparse_errors(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    flag = [a for a in argv if a.startswith("--")][-1]  # the out-of-range one comes last
    assert f"argument {flag}: must be from" in err


def test_search_checks_its_outputs_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dir.journal").mkdir()
    search = ("search", "--model", "digits-cnn", "--hardware", "npu-bitfusion", "--trials", "2")
    cases = {
        ("--study", "../../x"): "--study: '../../x' must start with a letter",
        ("--out", "afile"): "--out afile: is a file, not a directory",
        ("--out", ""): "--out: empty path",
        ("--storage", "sqlite:///nowhere/x.db"): "directory",
        ("--storage", "dir.journal"): "storage file dir.journal: is a directory",
    }
    for extra, expected in cases.items():
        assert expected in error_of(capsys, *search, *extra), extra
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dir.journal"]


def _config(path) -> None:
    minimal_config().write(path)


def test_export_calibrate_and_serve_check_outputs_first(tmp_path, capsys):
    config = tmp_path / "run" / "configs" / "joint-00001.json"
    _config(config)
    (tmp_path / "afile").write_text("x")
    export = ("export", "--config", str(config), "--out")
    assert "is a file, not a directory" in error_of(capsys, *export, str(tmp_path / "afile"))
    assert "--out: empty path" in error_of(capsys, *export, "")
    into_run = error_of(capsys, *export, str(config.parent))
    assert "holds other files and no deploy.json" in into_run
    assert [p.name for p in config.parent.iterdir()] == ["joint-00001.json"]
    (tmp_path / "dir.toml").mkdir()
    message = error_of(capsys, "calibrate-host", "--quick", "--out", str(tmp_path / "dir.toml"))
    assert "dir.toml: is a directory, not a file" in message
    for flags in (("--quick",), ("--check-only",)):  # never the default profile silently
        assert "--out: empty path" in error_of(capsys, "calibrate-host", *flags, "--out", "")
    message = error_of(capsys, "serve", "--state-dir", str(tmp_path / "afile"))
    assert "--state-dir" in message and "is a file, not a directory" in message
