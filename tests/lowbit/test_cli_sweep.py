"""``lowbit sweep --workloads``: hypothetical accelerators compared across a suite."""

from __future__ import annotations

import csv
import math

import pytest

from lowbit.cli import main
from lowbit.hwsim.area import area_mm2
from lowbit.hwsim.profiles import load_profile


def test_sweep_a_suite(capsys, tmp_path):
    out = tmp_path / "suite"
    argv = [
        "sweep",
        "--hardware",
        "npu-systolic-32",
        "--workloads",
        "resnet18,bert-base",
        "--vary",
        "compute.rows=16,32,64",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 2 * 3
    assert {r["workload"] for r in rows} == {"resnet18", "bert-base"}
    for r in rows:
        variant = load_profile(
            "npu-systolic-32", overrides={"compute.rows": int(r["compute.rows"])}
        )
        assert float(r["area_mm2"]) == pytest.approx(area_mm2(variant))
        if r["compute.rows"] == "32":  # the profile as given
            assert float(r["speedup"]) == pytest.approx(1.0)
    # the suite line: geometric mean of the two workloads' speed-ups at each grid point
    at64 = [float(r["speedup"]) for r in rows if r["compute.rows"] == "64"]
    geomean = math.sqrt(at64[0] * at64[1])
    assert "geometric-mean speed-up" in printed and f"{geomean:.3g}x" in printed
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--workloads", "resnet18,resnet18"], "given twice"),
        (["--workloads", "resnet18,nope"], "nope"),
        (["--workloads", " , "], "one or more names"),
    ],
)
def test_suite_errors(capsys, tmp_path, extra, expected):
    argv = ["sweep", "--hardware", "npu-systolic-32", "--vary", "compute.rows=16"]
    assert main([*argv, "--out", str(tmp_path), *extra]) == 2
    assert expected in capsys.readouterr().err


def test_workload_and_workloads_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "sweep",
                "--hardware",
                "npu-systolic-32",
                "--workload",
                "resnet18",
                "--workloads",
                "bert-base",
                "--vary",
                "compute.rows=16",
            ]
        )
    assert "not allowed with" in capsys.readouterr().err
