"""`lowbit export`, `lowbit validate` and `lowbit calibrate-host` as a user runs them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest
from cli_testkit import error_of

from lowbit.cli import main
from lowbit.hwsim.profiles import load_profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "search"))
from test_validate import PRUNED, W8A8, make_run, write_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_cache")  # an empty LOWBIT_CACHE


@pytest.fixture(scope="module")
def host_toml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("host") / "host.toml"
    assert main(["calibrate-host", "--quick", "--out", str(path)]) == 0
    return path


def test_calibrate_host_writes_a_loadable_profile(host_toml, capsys):
    profile = load_profile(host_toml)
    assert profile.family == "cpu" and profile.name == "host-cpu"
    assert host_toml.with_suffix(".json").is_file()
    # the profile says where its clock came from: measured, or the OS's figure
    (line,) = [x for x in host_toml.read_text().splitlines() if x.startswith("clock_hz = ")]
    assert "dependent integer adds" in line or "/proc/cpuinfo" in line


def test_calibrate_host_names_the_clock_it_measured():
    from lowbit.commands.calibrate_host import _clock_note

    measured = {"clock_hz": 2.87e9, "nominal_clock_hz": 2.1e9}
    assert _clock_note(measured) == " (measured; the OS says 2.10)"
    assert _clock_note({"clock_hz": 2.1e9, "nominal_clock_hz": 2.1e9}) == ""
    assert _clock_note({"clock_hz": 2.1e9}) == ""  # a sidecar from before the measurement
    several = {**measured, "clock_readings_hz": [2.88e9, 3.35e9, 3.0e9]}
    assert _clock_note(several) == " (median of 3 readings, 2.88-3.35; the OS says 2.10)"


def test_calibrate_host_names_the_l3_share_it_measured():
    from lowbit.commands.calibrate_host import _caches_note

    caches = {"L1": 32768, "L2": 524288, "L3": 33554432}
    shared = _caches_note(caches, {"l3_weight_share_bytes": 8.0 * 2**20})
    assert shared == "L1 32 KiB, L2 512 KiB, L3 32768 KiB (this core's weights keep 8.0 MB of it)"
    assert _caches_note(caches, {}) == "L1 32 KiB, L2 512 KiB, L3 32768 KiB"  # not measured


def test_calibrate_host_says_whether_the_core_was_shared():
    from lowbit.commands.calibrate_host import _sharing_note

    assert _sharing_note({"clock_hz": 2.1e9}) == []  # no probe (not x86-64, an old sidecar)
    track = {"vector_adds_per_cycle_quiet": 3.9, "vector_adds_per_cycle_median": 3.1}
    (quiet,) = _sharing_note({"clock_track": {**track, "contended": 0}})
    assert "3.90 adds/cycle quiet, 3.10 median" in quiet and "caught the core quiet" in quiet
    for broken in ("3.9", None, float("nan"), True):  # a hand-edited sidecar: no line
        assert (
            _sharing_note(
                {"clock_track": {**track, "contended": 0, "vector_adds_per_cycle_quiet": broken}}
            )
            == []
        )
    (shared,) = _sharing_note({"clock_track": {**track, "contended": 4}})
    assert "4 measurement(s) never caught the core quiet" in shared and "budget" not in shared
    # the extra passes' time budget ran out (quiet.retry_budget): said, with what it spent
    retries = {"share": 0.1, "spent_s": 12.5, "cut": 3}
    (cut,) = _sharing_note({"clock_track": {**track, "contended": 4, "retries": retries}})
    assert "stopped at its budget (12.5 s) with 3 measurement(s) still contended" in cut
    odd = (  # hand-edited: a string, a boolean, no seconds, infinite or NaN numbers
        {**retries, "cut": "3"},
        {**retries, "cut": True},
        {"cut": 3},
        {**retries, "cut": float("inf")},
        {**retries, "spent_s": float("nan")},
        "3",
    )
    for kept in ({**retries, "cut": 0}, *odd):  # none cut, or odd
        (line,) = _sharing_note({"clock_track": {**track, "contended": 4, "retries": kept}})
        assert "budget" not in line


def test_calibrate_host_says_where_its_time_went():
    from lowbit.commands.calibrate_host import _phase_note

    (line,) = _phase_note({"layer chains": 38.04, "clock": 0.4, "conv sweep": 52.0, "total": 131.2})
    assert line == "measured in 131 s: conv sweep 52 s, layer chains 38 s, clock 0 s"
    # the fit's own seconds (calibration._calibrate_once) beside the measuring's, not a phase
    (fitted,) = _phase_note({"conv sweep": 52.0, "fit": 9.6, "total": 131.2})
    assert fitted == "measured in 131 s, fitted in 10 s: conv sweep 52 s"
    for odd in (float("nan"), float("inf"), True, "9.6"):  # a hand-edited fit: left out
        (line,) = _phase_note({"conv sweep": 52.0, "fit": odd, "total": 131.2})
        assert line == "measured in 131 s: conv sweep 52 s"
    for broken in (None, [], {"clock": 1.0}, {"total": "131"}):  # an old or hand-edited sidecar
        assert _phase_note(broken) == []
    (skips,) = _phase_note({"total": 10, "x": "7", "y": True, "z": 3})  # odd values left out
    assert skips == "measured in 10 s: z 3 s"


def test_calibrate_host_rejects_a_non_toml_path(tmp_path, capsys):
    message = error_of(capsys, "calibrate-host", "--quick", "--out", str(tmp_path / "x.yaml"))
    assert "must end in .toml" in message


@pytest.mark.slow
def test_export_a_config(tmp_path, capsys):
    config = write_config(tmp_path / "run", "joint-00002", PRUNED)
    out = tmp_path / "export"
    assert main(["export", "--config", str(config), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "argmax agreement" in text and "QLinearConv" in text
    assert {p.name for p in out.iterdir()} == {"model.int8.onnx", "model.fp32.onnx", "deploy.json"}
    onnx.checker.check_model(onnx.load(out / "model.int8.onnx"))
    padded = json.loads((out / "deploy.json").read_text())["padded_channels"]
    assert padded.get("/conv1/Conv:in") == [1, 4]  # the 1-channel stem's input
    assert (
        main(
            [
                "export",
                "--config",
                str(config),
                "--out",
                str(out),
                "--format",
                "json",
                "--no-check",
                "--no-pad-channels",
            ]
        )
        == 0
    )
    deploy = json.loads(capsys.readouterr().out)
    assert deploy["config_id"] == "joint-00002" and "check" not in deploy
    assert deploy["padded_channels"] == {}


@pytest.mark.slow
def test_validate_a_run(tmp_path, host_toml, capsys):
    run_dir = make_run(tmp_path / "run", {"joint-00001": W8A8})
    argv = [
        "validate",
        "--run",
        str(run_dir),
        "--profile",
        str(host_toml),
        "--repeats",
        "3",
        "--warmup",
        "1",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Spearman" in text and "uniform-W2A8" in text
    assert (run_dir / "validation.json").is_file() and (run_dir / "validation.csv").is_file()
    assert (run_dir / "validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    missing = error_of(capsys, "validate", "--run", str(tmp_path / "nope"))
    assert "does not exist" in missing
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"schema_version": 1,')
    assert "not valid JSON" in error_of(
        capsys, "export", "--config", str(corrupt), "--out", str(tmp_path / "o")
    )
    assert "deployment config not found" in error_of(
        capsys, "export", "--config", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")
    )


@pytest.mark.slow
def test_config_of_another_model_is_an_error(tmp_path, capsys):
    # the plan names digits-cnn's layers; the config claims digits-mlp
    plan = {
        "version": 1,
        "pin_first_last": False,
        "layers": {"conv2": {"w_bits": 4, "a_bits": 8, "keep": 0.5}},
    }
    config = write_config(tmp_path / "run", "joint-00001", plan, model="digits-mlp")
    message = error_of(capsys, "export", "--config", str(config), "--out", str(tmp_path / "o"))
    assert "conv2" in message and "no Conv/Linear/MatMulSite" in message
    run_dir = make_run(tmp_path / "run2", {"joint-00001": W8A8})
    write_config(run_dir, "joint-00001", W8A8, model="digits-vit")
    assert "model 'digits-vit'" in error_of(capsys, "validate", "--run", str(run_dir))


@pytest.mark.slow
def test_calibrate_host_check_only_prints_the_heldout_table(host_toml, capsys):
    assert main(["calibrate-host", "--check-only", "--quick", "--out", str(host_toml)]) == 0
    out = capsys.readouterr().out
    assert "held-out check on" in out and "speed-up direction right" in out
    report = json.loads(host_toml.with_suffix(".check.json").read_text())
    assert report["rows"] and {"network", "layer", "all"} <= set(report["summary"])
    assert all(row["int8_measured_s"] > 0 for row in report["rows"])


def test_calibrate_host_check_only_needs_a_profile(tmp_path, capsys):
    message = error_of(capsys, "calibrate-host", "--check-only", "--out", str(tmp_path / "no.toml"))
    assert "no.toml" in message
