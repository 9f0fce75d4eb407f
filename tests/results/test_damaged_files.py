"""A truncated, garbled or incomplete run directory is one ResultsError line naming the
file (and the row); the CLI prints it as one line with exit code 2."""

from __future__ import annotations

import json
import re

import pytest

from lowbit.hwsim.errors import LowbitError
from lowbit.results import ResultsError, load_run


def _error(run_dir) -> str:
    with pytest.raises(ResultsError) as err:
        load_run(run_dir)
    text = str(err.value)
    assert "\n" not in text and isinstance(err.value, LowbitError)
    return text


def test_a_truncated_trials_table(run_copy):
    path = run_copy / "trials.csv"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    # cut inside the last row's timestamps: the row has fewer cells than the header
    cut = text[: len(text) - len(lines[-1])] + lines[-1][: lines[-1].rindex(",")]
    path.write_text(cut)
    message = _error(run_copy)
    assert message.startswith(f"{path}: ")
    assert f"row {len(lines)}: 20 cells, the header has 21" in message
    assert message.endswith("the file ends mid-line (truncated?)")


def test_a_trials_table_cut_inside_a_quoted_cell(run_copy):
    path = run_copy / "trials.csv"
    text = path.read_text()
    path.write_text(text[: text.rindex('""conv1.keep""')])
    message = _error(run_copy)
    assert re.fullmatch(
        re.escape(f"{path}: not a valid CSV file (unexpected end of data); the file ends ")
        + r"mid-line \(truncated\?\)",
        message,
    )


def test_garbled_cells_are_listed_with_their_rows(run_copy):
    path = run_copy / "trials.csv"
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].strip().split(",")
    cells = lines[1].split(",")
    cells[header.index("latency_ms")] = "fast"
    cells[header.index("number")] = "1.5"
    lines[1] = ",".join(cells)
    lines[2] = lines[2].replace(",True,", ",yes,", 1)
    path.write_text("".join(lines))
    message = _error(run_copy)
    assert message.startswith(f"{path}: row 2: number '1.5' is not an integer; ")
    assert "row 2: latency_ms 'fast' is not a number" in message
    assert "row 3: feasible 'yes' is not True or False" in message


def test_bad_params_json_and_binary_files(run_copy):
    path = run_copy / "pareto.csv"
    text = path.read_text()
    path.write_text(text.replace('"{""conv1.a_bits', '"{""conv1.a_bits"" 8, ""x', 1))
    assert 'row 2: params \'{"conv1.a_bits" 8' in _error(run_copy)
    assert "is not a JSON object" in _error(run_copy)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert _error(run_copy) == f"{path}: not a UTF-8 text file (not a Pareto table)"
    path.write_text("")
    assert _error(run_copy) == f"{path}: empty file, not a Pareto table (no header row)"
    path.write_text("method,number\njoint,1\n")
    message = _error(run_copy)
    assert message.startswith(f"{path}: column 'config_id' missing (not a Pareto table?)")


def test_missing_files(run_copy):
    config = next((run_copy / "configs").glob("*.json"))
    config.unlink()
    assert _error(run_copy) == f"{config}: missing (a deployment config)"
    (run_copy / "trials.csv").unlink()
    assert _error(run_copy) == f"{run_copy / 'trials.csv'}: trials table not found"
    (run_copy / "summary.json").unlink()
    assert "no summary.json: the search has not finished yet" in _error(run_copy)
    (run_copy / "study.journal").unlink()
    assert "no summary.json: not a search run directory" in _error(run_copy)
    assert "no such run directory" in _error(run_copy / "nowhere")


def test_a_damaged_config_names_its_key(run_copy):
    config = next((run_copy / "configs").glob("*.json"))
    data = json.loads(config.read_text())
    data["simulation"]["layers"][0]["total_cycles"] = -5
    config.write_text(json.dumps(data))
    message = _error(run_copy)
    assert message.startswith(f"{config}: ")
    assert "simulation.layers[0]: total_cycles must be finite numbers >= 0" in message


def test_the_cli_prints_one_line_naming_the_file(run_copy, capsys):
    from lowbit.cli import main

    path = run_copy / "trials.csv"
    path.write_text(path.read_text()[:-40])
    assert main(["report", "--run", str(run_copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lowbit: error: {path}: row ")
