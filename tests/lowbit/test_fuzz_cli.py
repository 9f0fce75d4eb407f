"""Fuzzing the CLI's file inputs (issue 15): a corpus of nasty files the tests write (binary,
non-UTF-8, empty, deeply nested, huge numbers, NaN/Infinity, wrong types, truncated,
directories, sparse giants) and Hypothesis-made documents, fed to every command that reads a
file and to the loaders behind them. Every outcome is exit code 2 with exactly one line on
stderr naming the file (never a traceback), or success with finite numbers.

In-process (``lowbit.cli.main``), no model is trained and Ray is not started: every input
here is refused before the long work, or is simulated (milliseconds). Hypothesis runs
derandomized with a bounded number of examples (:mod:`fuzzkit`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from fuzz_corpus import (
    CFG_CONTENTS,
    CONFIG_CONTENTS,
    CONTENTS,
    CSV_CONTENTS,
    PLAN,
    SUMMARY_CONTENTS,
    TOML_CONTENTS,
    config_dict,
    corpus,
    run_dir,
)
from hypothesis import event, given
from hypothesis import strategies as st

from lowbit.cli import main
from lowbit.hwsim.errors import LowbitError
from lowbit.search.config import load_config

sys.path.insert(0, str(Path(__file__).parents[1] / "hwsim"))
from fuzzkit import VALUES, fuzz_settings  # noqa: E402

SIM = ("--hardware", "npu-bitfusion", "--workload", "resnet18")
#: every input tried, per command (the closing note's table counts these)
TRIED: dict[str, int] = {}
#: the inputs that raised something else than a LowbitError, per command
TRACEBACKS: dict[str, int] = {}


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def outcome(capsys, command: str, argv: list[str], *, names: Path | None) -> str:
    """Run the CLI on ``argv``: exit 2 with one stderr line naming ``names`` (if given), or
    success; any other exception (a traceback) fails the test. ``"refused"`` or ``"ok"``."""
    TRIED[command] = TRIED.get(command, 0) + 1
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    if code == 0:
        if out.lstrip().startswith("{"):
            assert _finite(json.loads(out)), out
        assert "Infinity" not in out and "NaN" not in out and " inf " not in out, out
        return "ok"
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (argv, code, err)
    assert lines[0].startswith("lowbit: error: "), err
    if names is not None:
        # a config is also named by its id
        named = (str(names), names.name, f"{names.stem}: ", "config joint-00001: ")
        assert any(n in lines[0] for n in named), (argv, lines[0])
    return "refused"


class Failures:
    """Runs many inputs, keeps going after one fails, and reports them all at the end."""

    def __init__(self, capsys) -> None:
        self.capsys, self.found = capsys, []

    def run(self, command: str, argv: list[str], *, names: Path | None) -> None:
        try:
            outcome(self.capsys, command, argv, names=names)
        except Exception as exc:  # noqa: BLE001 - collected, reported by check()
            self.capsys.readouterr()
            if not isinstance(exc, AssertionError):  # a traceback, not a wrong message
                TRACEBACKS[command] = TRACEBACKS.get(command, 0) + 1
            self.found.append(f"{' '.join(argv)}: {type(exc).__name__}: {exc}"[:400])

    def check(self) -> None:
        assert not self.found, "\n".join(self.found)


# --- the corpus, command by command -------------------------------------------------------


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> list[Path]:
    return corpus(tmp_path_factory.mktemp("plans"), CONTENTS)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> list[Path]:
    return corpus(tmp_path_factory.mktemp("configs") / "run" / "configs", CONFIG_CONTENTS)


def _valid_plan(path: Path) -> bool:
    from lowbit.models.workloads import read_plan

    try:
        read_plan(path)
    except LowbitError:
        return False
    return True


def test_simulate_and_sweep_plans(plans, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failures = Failures(capsys)
    for path in plans:
        names = None if _valid_plan(path) else path  # a valid plan may not fit the target
        failures.run(
            "simulate --plan",
            ["simulate", *SIM, "--plan", str(path), "--format", "json"],
            names=names,
        )
        failures.run(
            "sweep --plan",
            [
                "sweep",
                *SIM,
                "--vary",
                "compute.rows=16,32",
                "--plan",
                str(path),
                "--out",
                str(tmp_path / "sw"),
            ],
            names=names,
        )
    failures.check()


def test_evaluate_plans_are_refused_before_training(plans, capsys, monkeypatch):
    """Every corpus plan that is not a whole, valid plan is refused before training."""
    import lowbit.models as models

    def no_training(*args, **kwargs):
        raise LowbitError("TRAINING (the plan was accepted)")

    monkeypatch.setattr(models, "load_trained", no_training)
    failures = Failures(capsys)
    for path in plans:
        failures.run(
            "evaluate --plan",
            ["evaluate", "--model", "digits-cnn", "--plan", str(path)],
            names=None,
        )
    failures.check()


def test_export_configs(configs, capsys, tmp_path, monkeypatch):
    """Every corpus config is refused before the model is built, but two: an unknown model
    (refused by the export itself, in one line) and a hardware name that names no built-in
    profile (exported without firmware.json, which it says)."""
    from lowbit.models.export import deploy

    accepted = []

    def no_export(model, plan, **kwargs):
        accepted.append(kwargs["config_id"])
        raise LowbitError("EXPORT (the config was accepted)")

    monkeypatch.setattr(deploy, "export_plan", no_export)
    failures = Failures(capsys)
    for path in configs:
        before = len(accepted)
        failures.run(
            "export --config",
            ["export", "--config", str(path), "--out", str(tmp_path / "export")],
            names=None,
        )
        if len(accepted) == before:  # refused: the message names the file
            failures.run(
                "export --config",
                ["export", "--config", str(path), "--out", str(tmp_path / "export")],
                names=path,
            )
        else:
            accepted[-1] = path.stem
    failures.check()
    assert not (tmp_path / "export").exists()
    assert sorted(accepted) == ["cfg-bad-hw", "cfg-unknown-model"]


def test_loaders_directly(plans, configs):
    from lowbit.models.workloads import read_plan

    found = []
    for load, paths in ((read_plan, plans), (load_config, configs)):
        for path in paths:
            TRIED[load.__name__] = TRIED.get(load.__name__, 0) + 1
            try:
                load(path)
            except LowbitError as exc:
                if "\n" in str(exc) or path.name not in str(exc):
                    found.append(f"{path.name}: {exc}")
            except Exception as exc:  # noqa: BLE001 - a traceback: reported below
                TRACEBACKS[load.__name__] = TRACEBACKS.get(load.__name__, 0) + 1
                found.append(f"{load.__name__}({path.name}): {type(exc).__name__}: {exc}")
    assert not found, "\n".join(found)


def test_a_damaged_calibration_sidecar_is_as_good_as_none(configs):
    """``validate --profile HOST.toml`` reads the profile's JSON sidecar for its calibration
    version: any corpus file there reads as a version or as no sidecar."""
    from lowbit.models.hostcal.calibration import calibration_version_of

    for path in configs:
        TRIED["calibration sidecar"] = TRIED.get("calibration sidecar", 0) + 1
        version = calibration_version_of(path.with_suffix(".toml"))
        assert version is None or type(version) is int, path


def test_profiles_and_simulate_on_nasty_profiles(capsys, tmp_path):
    failures = Failures(capsys)
    for path in corpus(tmp_path / "profiles", TOML_CONTENTS, suffix=".toml"):
        failures.run("profiles show", ["profiles", "show", str(path)], names=path)
        failures.run(
            "simulate --hardware",
            ["simulate", "--hardware", str(path), "--workload", "resnet18"],
            names=path,
        )
    failures.check()


def test_simulate_on_nasty_topologies(capsys, tmp_path):
    failures = Failures(capsys)
    for path in corpus(tmp_path / "topologies", CSV_CONTENTS, suffix=".csv"):
        failures.run(
            "simulate --workload CSV",
            ["simulate", "--hardware", "npu-bitfusion", "--workload", str(path)],
            names=path,
        )
    failures.check()


def test_profiles_show_on_nasty_scalesim_configs(capsys, tmp_path):
    failures = Failures(capsys)
    for path in corpus(tmp_path / "cfgs", CFG_CONTENTS, suffix=".cfg"):
        failures.run("profiles show (.cfg)", ["profiles", "show", str(path)], names=path)
    failures.check()


def test_calibrate_host_outputs_are_checked_first(capsys, tmp_path, monkeypatch):
    """A directory, a path under a file, a file that cannot be written:
    refused before a benchmark runs."""
    from lowbit.models.hostcal import calibration

    def no_benchmark(*args, **kwargs):
        raise AssertionError("calibrate-host benchmarked before checking --out")

    monkeypatch.setattr(calibration, "calibrate", no_benchmark, raising=False)
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "file").write_text("x")
    failures = Failures(capsys)
    for out in (tmp_path / "dir.toml", tmp_path / "file" / "x.toml", "/proc/version"):
        argv = ["calibrate-host", "--quick", "--out", str(out)]
        failures.run("calibrate-host --out", argv, names=None)
    failures.check()


# --- damaged run directories: validate and report ------------------------------------------


@pytest.mark.parametrize("command", ["validate", "report"])
def test_damaged_run_directories(capsys, tmp_path, command):
    run = run_dir(tmp_path)
    summary, config = run / "summary.json", run / "configs" / "joint-00001.json"
    failures = Failures(capsys)
    good_summary, good_config = summary.read_bytes(), config.read_bytes()
    for data in SUMMARY_CONTENTS.values():
        summary.write_bytes(data)
        failures.run(f"{command} (summary.json)", [command, "--run", str(run)], names=None)
    summary.write_bytes(good_summary)
    for data in CONFIG_CONTENTS.values():
        config.write_bytes(data)
        failures.run(f"{command} (configs)", [command, "--run", str(run)], names=None)
    config.write_bytes(good_config)
    for path in (summary, config, run / "configs"):
        moved = path.with_name(path.name + ".away")
        path.rename(moved)
        failures.run(f"{command} (missing file)", [command, "--run", str(run)], names=None)
        path.mkdir(exist_ok=True)
        failures.run(f"{command} (directory)", [command, "--run", str(run)], names=None)
        path.rmdir()
        moved.rename(path)
    failures.check()


# --- property-based ------------------------------------------------------------------------


def _simulate_plan_file(capsys, path: Path) -> None:
    """``simulate --plan path``: success with finite numbers if the plan is valid, else one
    line naming the file (recorded as a Hypothesis event)."""
    names = None if _valid_plan(path) else path
    event(
        outcome(
            capsys,
            "simulate --plan (hypothesis)",
            ["simulate", *SIM, "--plan", str(path), "--format", "json"],
            names=names,
        )
    )


@fuzz_settings(40)
@given(
    doc=st.one_of(
        VALUES,
        st.fixed_dictionaries({"version": VALUES, "layers": VALUES}),
        st.fixed_dictionaries(
            {
                "version": st.just(1),
                "layers": st.dictionaries(
                    st.sampled_from(["_default", "conv1", "re:.*", "re:[", "fc"]),
                    st.dictionaries(
                        st.sampled_from(["w_bits", "a_bits", "keep", "rank_fraction", "nm"]), VALUES
                    ),
                ),
            }
        ),
    )
)
def test_simulate_any_plan_document(capsys, tmp_path_factory, doc):
    path = tmp_path_factory.getbasetemp() / "hyp-plan.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    _simulate_plan_file(capsys, path)


@fuzz_settings(40)
@given(data=st.binary(max_size=64), at=st.floats(0, 1))
def test_simulate_any_bytes_in_a_plan(capsys, tmp_path_factory, data, at):
    raw = json.dumps(PLAN).encode()
    pos = int(at * len(raw))
    path = tmp_path_factory.getbasetemp() / "hyp-bytes.json"
    path.write_bytes(raw[:pos] + data + raw[pos:])
    _simulate_plan_file(capsys, path)


@fuzz_settings(40)
@given(key=st.sampled_from(sorted(config_dict())), value=VALUES)
def test_load_config_any_field(tmp_path_factory, key, value):
    data = config_dict()
    data[key] = value
    path = tmp_path_factory.getbasetemp() / "hyp-config.json"
    path.write_text(json.dumps(data, allow_nan=True))
    TRIED["load_config (hypothesis)"] = TRIED.get("load_config (hypothesis)", 0) + 1
    try:
        cfg = load_config(path)
    except LowbitError as exc:
        assert "\n" not in str(exc) and path.name in str(exc), str(exc)
        event("refused")
        return
    event("loaded")
    for field in ("accuracy_val", "accuracy_test", "latency_ms", "energy_mj", "size_kib"):
        assert math.isfinite(getattr(cfg, field)), (field, getattr(cfg, field))


def test_zz_report_counts():
    """Prints the inputs tried and the tracebacks met per command, for the issue's closing
    note (shown with ``pytest -s``; this test runs last in the module)."""
    print("\nfuzz inputs per command:", json.dumps(TRIED, indent=1))
    print("tracebacks per command:", json.dumps(TRACEBACKS, indent=1))
