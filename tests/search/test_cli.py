"""``lowbit search``: the dry run prints the space without starting Ray; bad input is one
line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from lowbit.cli import main
from lowbit.commands.search import format_summary
from lowbit.search.space import SearchSpace

DRY_RUN = textwrap.dedent(
    """
    import sys
    from lowbit.cli import main
    rc = main(["search", "--model", "digits-cnn", "--hardware", "npu-bitfusion", "--dry-run",
               "--pin-first-last"])
    assert "ray" not in sys.modules, "the dry run imported Ray"
    sys.exit(rc)
    """
)


def test_dry_run_prints_the_space_and_starts_no_ray():
    proc = subprocess.run(
        [sys.executable, "-c", DRY_RUN], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    space = SearchSpace.from_json(proc.stdout)
    assert space.model == "digits-cnn" and space.hardware == "npu-bitfusion"
    assert space.pinned == ("conv1", "fc2")
    assert json.loads(proc.stdout)["parameters"] == len(space.distributions())


def test_bad_arguments_are_one_line_errors(capsys):
    argv = ["search", "--model", "digits-cnn", "--hardware", "npu-bitfusion"]
    assert main([*argv, "--baselines", "uniform,magic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "magic" in err and "quant-only" in err
    assert main([*argv, "--objectives", "accuracy,latency,beauty"]) == 2
    assert "beauty" in capsys.readouterr().err


def test_summary_table_lists_every_method():
    summary = {
        "model": "m",
        "hardware": {"name": "hw"},
        "run_dir": "runs/x",
        "reference": {"fp32_val": 0.99, "fp32_test": 0.98, "w8a8_latency_ms": 0.02},
        "hypervolume": {"reference_point": [0.0, 2.0]},
        "methods": {
            "joint": {
                "completed": 5,
                "failed": 1,
                "hypervolume_val": 1.5,
                "hypervolume_test": 1.4,
                "speedup_vs_w8a8": 2.0,
                "best_within_1pt": {"latency_ms": 0.01, "accuracy_test": 0.975},
            },
            "random": {
                "completed": 5,
                "failed": 0,
                "hypervolume_val": 1.2,
                "hypervolume_test": 1.1,
                "speedup_vs_w8a8": None,
                "best_within_1pt": None,
            },
        },
    }
    text = format_summary(summary)
    joint = next(line for line in text.splitlines() if line.startswith("joint"))
    assert "2.00x" in joint and "97.50%" in joint
    random_row = next(line for line in text.splitlines() if line.startswith("random"))
    assert random_row.split()[-1] == "-"
