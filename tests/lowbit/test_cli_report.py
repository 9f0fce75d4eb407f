"""``lowbit report`` as a user runs it: after ``lowbit search``, and on bad input."""

from __future__ import annotations

import pytest

from lowbit.cli import main


@pytest.fixture(scope="module")
def searched(zoo_cache, tmp_path_factory):
    """A tiny search run through the CLI (digits-mlp, 4 trials, uniform baseline)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = [
        "search",
        "--model",
        "digits-mlp",
        "--hardware",
        "npu-systolic-32",
        "--trials",
        "4",
        "--workers",
        "1",
        "--baselines",
        "uniform",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_report_after_search(searched, capsys, tmp_path):
    capsys.readouterr()
    assert main(["report", "--run", str(searched)]) == 0
    page = searched / "report.html"
    assert f"wrote {page}" in capsys.readouterr().out
    text = page.read_text(encoding="utf-8")
    assert "digits-mlp on npu-systolic-32" in text and text.count("<img ") >= 5
    first = sorted(p.stem for p in (searched / "configs").glob("*.json"))[0]
    out = tmp_path / "one.html"
    assert main(["report", "--run", str(searched), "--out", str(out), "--configs", first]) == 0
    assert f'id="cfg-{first}"' in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--run", "/nonexistent/run"], "no such run directory"),
        (["--run", "."], "no summary.json"),
    ],
)
def test_bad_run_directories_are_one_line_errors(capsys, args, expected):
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lowbit: error:") and "\n" not in err and expected in err


def test_unknown_config_id_is_a_one_line_error(searched, capsys):
    assert main(["report", "--run", str(searched), "--configs", "joint-99999"]) == 2
    err = capsys.readouterr().err.strip()
    assert "joint-99999" in err and "\n" not in err
