"""Simulator results as DataFrames: sweeps (in memory, from sweep.csv, from sweep.parquet)
and one simulation's layers, and the CLI writing parquet next to CSV."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from lowbit.cli import main
from lowbit.hwsim import simulate
from lowbit.hwsim.profiles import load_profile
from lowbit.hwsim.sweep import run_sweep
from lowbit.hwsim.workloads import builtin_workload
from lowbit.results import (
    SIMULATION_COLUMNS,
    ResultsError,
    load_sweep,
    read_parquet,
    simulation_frame,
    sweep_frame,
    write_table,
)


@pytest.fixture(scope="module")
def sweep():
    workloads = [builtin_workload("resnet18"), builtin_workload("bert-base")]
    axes = [("compute.rows", [16, 32]), ("compute.dataflow", ["os", "ws"])]
    return run_sweep(hardware="npu-systolic-32", workloads=workloads, axes=axes)


def test_sweep_frame_is_the_sweep_in_the_units_convention(sweep):
    table = sweep_frame(sweep)
    assert list(table.columns) == [
        "workload",
        "compute.rows",
        "compute.dataflow",
        "total_cycles",
        "latency_ms",
        "energy_mj",
        "speedup",
        "area_mm2",
    ]
    assert [str(t) for t in table.dtypes] == [
        "string",
        "Int64",
        "string",
        "Int64",
        "float64",
        "float64",
        "float64",
        "float64",
    ]
    assert len(table) == len(sweep.points) == 2 * 2 * 2
    for row, p in zip(table.to_dict("records"), sweep.points, strict=True):
        given = (row["workload"], row["compute.rows"], row["compute.dataflow"])
        assert given == (p.workload, *p.values)
        assert row["total_cycles"] == p.total_cycles
        assert row["latency_ms"] == p.latency_s * 1e3 and row["energy_mj"] == p.energy_j * 1e3
        assert row["speedup"] == p.speedup and row["area_mm2"] == p.area_mm2


def test_load_sweep_reads_csv_and_parquet_alike(sweep, tmp_path):
    from lowbit.hwsim.fileio import atomic_write_text

    table = sweep_frame(sweep)
    atomic_write_text(tmp_path / "sweep.csv", sweep.csv_text())
    pd.testing.assert_frame_equal(load_sweep(tmp_path), table)
    write_table(table, tmp_path / "sweep.parquet", format="parquet")
    pd.testing.assert_frame_equal(load_sweep(tmp_path), table)
    (tmp_path / "sweep.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ResultsError, match=r"sweep.parquet: not a readable parquet file"):
        load_sweep(tmp_path)
    (tmp_path / "sweep.parquet").unlink()
    text = (tmp_path / "sweep.csv").read_text()
    (tmp_path / "sweep.csv").write_text(text[: len(text) // 2])
    with pytest.raises(ResultsError, match=r"sweep.csv: row \d+: .*truncated"):
        load_sweep(tmp_path)
    with pytest.raises(ResultsError, match="no such sweep directory"):
        load_sweep(tmp_path / "nowhere")


def test_simulation_frame_splits_every_layers_cycles():
    result = simulate(builtin_workload("mobilenetv2"), load_profile("cpu-x86-avx2"))
    table = simulation_frame(result)
    assert list(table.columns) == list(SIMULATION_COLUMNS)
    assert len(table) == len(result.layers)
    parts = table.compute_cycles + table.stall_cycles + table.overhead_cycles
    assert (parts == table.total_cycles).all()
    assert table.total_cycles.sum() + result.run_cycles == result.total_cycles
    assert table.latency_ms.sum() == pytest.approx(
        (result.total_cycles - result.run_cycles) / result.clock_hz * 1e3
    )
    assert table.energy_mj.sum() == pytest.approx(result.energy_j * 1e3)
    reads = table.dram_read_weights_bytes + table.dram_read_inputs_bytes
    assert (reads == table.dram_read_bytes).all()
    assert set(table.bound) <= {"compute", "memory", "overhead"}


def test_cli_simulate_writes_parquet(tmp_path, capsys):
    out = tmp_path / "layers.parquet"
    argv = ["simulate", "--hardware", "npu-bitfusion", "--workload", "resnet18"]
    assert main([*argv, "--bits", "W4A4", "--format", "parquet", "--out", str(out)]) == 0
    table = read_parquet(out, what="layer table")
    result = simulate(builtin_workload("resnet18"), load_profile("npu-bitfusion"))
    assert len(table) == len(result.layers)
    assert set(table.w_bits[table.macs > 0]) == {4}
    assert str(table.input_on_chip.dtype) == "boolean" and str(table.layer.dtype) == "string"
    assert main([*argv, "--format", "parquet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "lowbit: error: --format parquet: give --out FILE.parquet (parquet is binary)"
    # text formats go to --out too
    assert main([*argv, "--format", "csv", "--out", str(tmp_path / "layers.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "layers.csv").open()))
    assert [r["name"] for r in rows] == list(table.layer)


def test_cli_sweep_writes_parquet_next_to_csv(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--hardware", "npu-systolic-32", "--workload", "bert-base"]
    argv += ["--vary", "compute.rows=16,32", "--out", str(out), "--format", "parquet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (out / "sweep.csv").is_file() and (out / "sweep.png").is_file()
    from_parquet = load_sweep(out)
    (out / "sweep.parquet").unlink()
    pd.testing.assert_frame_equal(from_parquet, load_sweep(out))
    for row in from_parquet.to_dict("records"):  # the printed table is the DataFrame
        assert f"{row['latency_ms']:.4g}" in printed and f"{row['total_cycles']:,}" in printed
