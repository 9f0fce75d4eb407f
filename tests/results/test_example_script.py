"""examples/compare_two_runs.py on two small runs: the figure, the pick and the table."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "compare_two_runs.py"


def _example():
    spec = importlib.util.spec_from_file_location("example_compare_two_runs", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _expected(run_dirs):
    """The fastest Pareto config within 1 point of FP32 (val) over both runs, from the
    files themselves."""
    candidates = []
    for run_dir in run_dirs:
        fp32 = json.loads((run_dir / "summary.json").read_text())["reference"]["fp32_val"]
        with (run_dir / "pareto.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                if float(row["accuracy_val"]) >= fp32 - 0.01:
                    key = (float(row["latency_ms"]), -float(row["accuracy_val"]))
                    candidates.append((key, run_dir, row["config_id"]))
    return min(candidates, key=lambda c: c[0])[1:]


def test_the_example_compares_two_runs(runs, tmp_path, capsys):
    out = tmp_path / "fronts.png"
    assert _example().main([str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    run_dir, config_id = _expected(runs)
    assert f"fastest within 1 point of FP32: {config_id} of {run_dir.name} " in printed
    config = json.loads((run_dir / "configs" / f"{config_id}.json").read_text())
    table = printed[printed.index("layer ") :].splitlines()
    assert table[0].split()[:4] == ["layer", "op", "w_bits", "a_bits"]
    layers = config["simulation"]["layers"]
    assert len(table) == 1 + len(layers)
    for line, layer in zip(table[1:], layers, strict=True):
        cells = line.split()
        assert cells[:4] == [layer["name"], layer["op"], str(layer["w_bits"]), str(layer["a_bits"])]
        assert str(layer["total_cycles"]) in cells
    assert re.search(r"\d\.\d{3}x W8A8", printed)


def test_front_keeps_only_non_dominated_points():
    import pandas as pd

    front = _example().front
    pareto = pd.DataFrame(
        {"latency_ms": [1.0, 2.0, 3.0, 2.5], "accuracy_val": [0.5, 0.7, 0.9, 0.6]}
    )
    assert list(front(pareto).latency_ms) == [1.0, 2.0, 3.0]
