"""``lowbit profiles``: the list, ``show`` (text and JSON), and one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from lowbit import cli
from lowbit.hwsim.profiles import PROFILE_DIR, builtin_profile_names, load_profile


@pytest.fixture
def run(monkeypatch, capsys):
    """Run ``lowbit ARGS`` through the real entry point; returns (code, stdout, stderr).

    Only the ``profiles`` subcommand is registered: the other subcommands are separate
    modules with their own tests, and this keeps these tests about this command.
    """
    monkeypatch.setattr(cli, "COMMANDS", {"profiles": "profiles"})

    def invoke(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def test_list_has_one_line_per_builtin(run):
    code, out, err = run("profiles")
    assert code == 0 and not err
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["NAME", "FAMILY", "CLOCK"]
    assert [line.split()[0] for line in lines[1:]] == builtin_profile_names()
    zcu = next(line for line in lines if line.startswith("fpga-zcu102-dsp "))
    assert "5,040" in zcu and "300 MHz" in zcu and "fpga" in zcu  # 2520 DSPs x 2 (WP486)
    assert run("profiles", "list")[1] == out


def test_list_json(run):
    code, out, _ = run("profiles", "list", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == builtin_profile_names()
    peaks = {r["name"]: r["peak_int8_macs_per_cycle"] for r in rows}
    assert peaks["npu-systolic-32"] == 1024 and peaks["npu-ethos-u55"] == 256


def test_show_text_dumps_every_part(run):
    code, out, err = run("profiles", "show", "npu-bitfusion")
    profile = load_profile("npu-bitfusion")
    assert code == 0 and not err
    assert f"sha256:{profile.content_hash()}" in out
    assert str(PROFILE_DIR / "npu-bitfusion.toml") in out
    for text in (
        "16 x 32 x 1 = 512 PEs",
        "W2A2",
        "8,192",
        "wbuf",
        "ibuf",
        "obuf",
        "dram",
        "sparsity:",
        "overheads: 256 cycles",
        "tunables:",
        "area:",
    ):
        assert text in out, text


def test_show_json_round_trips_the_profile(run):
    code, out, _ = run("profiles", "show", "fpga-zcu102-dsp", "--format", "json")
    data = json.loads(out)
    profile = load_profile("fpga-zcu102-dsp")
    assert code == 0
    assert data["content_hash"] == profile.content_hash()
    assert data["peak_macs_per_cycle"]["W8A8"] == 5040
    assert data["compute"]["rows"] * data["compute"]["cols"] == 2520
    assert [m["name"] for m in data["memory"]] == [m.name for m in profile.memory]


def test_show_a_file_with_overrides(run, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((PROFILE_DIR / "npu-systolic-32.toml").read_text())
    code, out, _ = run(
        "profiles", "show", str(path), "--set", "compute.rows=64", "--format", "json"
    )
    data = json.loads(out)
    assert code == 0 and data["peak_macs_per_cycle"]["W8A8"] == 2048
    assert data["source"].startswith(str(path))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("profiles", "show", "npu-systolic-99"), "unknown built-in profile"),
        (("profiles", "show", "npu-systolic-32", "--set", "compute.rowz=3"), "--set compute.rowz"),
        (("profiles", "show", "npu-systolic-32", "--set", "compute.rows"), "expected key.path"),
        (("profiles", "show", "npu-systolic-32", "--set", "clock_hz=-1"), "clock_hz: must be >= 1"),
    ],
)
def test_errors_print_one_line_and_exit_2(run, args, expected):
    code, out, err = run(*args)
    assert code == 2 and not out
    assert err.count("\n") == 1 and err.startswith("lowbit: error: ")
    assert expected in err


def test_a_broken_file_names_the_file_and_every_problem(run, tmp_path):
    path = tmp_path / "broken.toml"
    text = (PROFILE_DIR / "npu-systolic-32.toml").read_text()
    text = text.replace("rows = 32", 'rows = "32"').replace('dataflow = "os"', 'dataflow = "xs"')
    path.write_text(text.replace("clock_hz = 1.0e9\n", ""))
    code, _, err = run("profiles", "show", str(path))
    assert code == 2 and err.count("\n") == 1 and str(path) in err
    for problem in (
        "clock_hz: missing",
        'compute.rows: must be an integer, got "32"',
        "compute.dataflow: unknown 'xs' (valid: os, ws, is)",
    ):
        assert problem in err
