"""Simulator results as DataFrames: a hardware sweep (:func:`sweep_frame`, and
:func:`load_sweep` for the directory ``lowbit sweep`` wrote) and one simulation's layers
(:func:`simulation_frame`, what ``lowbit simulate --format parquet`` writes).

sweep.csv keeps its original columns (``latency_s``, ``energy_j``); the DataFrames follow
the one convention of ``docs/results.md`` (``latency_ms``, ``energy_mj``), and sweep.parquet
holds the DataFrame.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._tables import Column, frame, read_table, values_column
from .errors import ResultsError

if TYPE_CHECKING:
    from lowbit.hwsim.result import SimResult
    from lowbit.hwsim.sweep import Sweep

__all__ = [
    "SIMULATION_COLUMNS",
    "SWEEP_CSV",
    "SWEEP_PARQUET",
    "load_sweep",
    "simulation_frame",
    "sweep_frame",
]

SWEEP_CSV = "sweep.csv"
SWEEP_PARQUET = "sweep.parquet"
#: sweep.csv's columns after the varied keys (area only when every point has one)
_SWEEP_TAIL = ("total_cycles", "latency_s", "energy_j", "speedup", "area_mm2")
#: the sweep table's columns around the varied keys (which sit after ``workload``)
_SWEEP_KINDS = {
    "workload": "text",
    "total_cycles": "int",
    "latency_ms": "float",
    "energy_mj": "float",
    "speedup": "float",
    "area_mm2": "float",
}

#: one simulation's per-layer table: column -> kind
SIMULATION_COLUMNS: dict[str, str] = {
    "hardware": "text",
    "workload": "text",
    "engine": "text",
    "layer": "text",
    "op": "text",
    "w_bits": "int",
    "a_bits": "int",
    "macs": "int",
    "effective_macs": "int",
    "compute_cycles": "int",
    "stall_cycles": "int",
    "overhead_cycles": "int",
    "total_cycles": "int",
    "dma_cycles": "int",
    "latency_ms": "float",
    "energy_mj": "float",
    "dram_read_bytes": "int",
    "dram_write_bytes": "int",
    "dram_read_weights_bytes": "int",
    "dram_read_inputs_bytes": "int",
    "peak_macs_per_cycle": "float",
    "dram_bytes_per_cycle": "float",
    "utilization": "float",
    "bound": "text",
    "input_on_chip": "bool",
    "output_on_chip": "bool",
}


def _sweep_table(workloads: list[str], keys: dict[str, list[Any]], tail: dict) -> pd.DataFrame:
    columns = {"workload": workloads, **{k: [] for k in keys}, **tail}
    out = frame({k: v for k, v in columns.items() if k not in keys}, _SWEEP_KINDS)
    for i, (key, values) in enumerate(keys.items()):
        out.insert(1 + i, key, values_column(values))
    return out


def sweep_frame(sweep: Sweep) -> pd.DataFrame:
    """One row per (grid point, workload) of ``sweep``: ``workload``, the varied keys (one
    column each, named by their key path), ``total_cycles``, ``latency_ms``, ``energy_mj``,
    ``speedup`` (vs the profile as given) and ``area_mm2`` (NaN without an area model)."""
    points = sweep.points
    keys = {key: [p.values[i] for p in points] for i, key in enumerate(sweep.keys)}
    tail = {
        "total_cycles": [p.total_cycles for p in points],
        "latency_ms": [p.latency_s * 1e3 for p in points],
        "energy_mj": [p.energy_j * 1e3 for p in points],
        "speedup": [p.speedup for p in points],
        "area_mm2": [math.nan if p.area_mm2 is None else p.area_mm2 for p in points],
    }
    return _sweep_table([p.workload for p in points], keys, tail)


def _guess(text: str) -> Any:
    """A sweep.csv cell of a varied key as the value it was (int, float, bool or text)."""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text if text != "" else None


def load_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """The sweep ``lowbit sweep --out DIR`` wrote, as :func:`sweep_frame` gives it: from
    sweep.parquet when there is one, else from sweep.csv.

    Raises:
        ResultsError: no such directory, no sweep file in it, or a damaged one (named).
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ResultsError(f"{sweep_dir}: no such sweep directory (give the --out of lowbit sweep)")
    parquet = sweep_dir / SWEEP_PARQUET
    if parquet.is_file():
        from .io import read_parquet

        return read_parquet(parquet, what="sweep table")
    path = sweep_dir / SWEEP_CSV
    if not path.is_file():
        raise ResultsError(f"{sweep_dir}: no {SWEEP_CSV} or {SWEEP_PARQUET}: not a sweep directory")
    schema = [Column("workload", "text", True)]
    schema += [Column(c, "float", c != "area_mm2") for c in _SWEEP_TAIL]
    table = read_table(path, schema, what="sweep table", others="text")
    keys = [c for c in table.columns if c not in _SWEEP_TAIL and c != "workload"]
    cycles = table["total_cycles"]
    if not cycles.dropna().map(float.is_integer).all():
        raise ResultsError(f"{path}: total_cycles must be whole numbers")
    values = {k: [None if v is pd.NA else _guess(v) for v in table[k]] for k in keys}
    return _sweep_table(
        list(table["workload"]),
        values,
        {
            "total_cycles": [None if math.isnan(c) else int(c) for c in cycles],
            "latency_ms": list(table["latency_s"] * 1e3),
            "energy_mj": list(table["energy_j"] * 1e3),
            "speedup": list(table["speedup"]),
            "area_mm2": list(table["area_mm2"]),
        },
    )


def simulation_frame(result: SimResult) -> pd.DataFrame:
    """One row per layer of the simulation ``result`` (:data:`SIMULATION_COLUMNS`): its
    settings, cycles split into compute/stall/overhead, latency, energy, DRAM traffic
    (reads also by operand), roofline numbers and bound."""
    rows = []
    for r in result.layers:
        by_operand = dict(r.dram_read_bytes_by_operand)
        rows.append(
            {
                "hardware": result.hardware,
                "workload": result.workload,
                "engine": result.engine,
                "layer": r.name,
                "op": r.op,
                "w_bits": r.w_bits,
                "a_bits": r.a_bits,
                "macs": r.macs,
                "effective_macs": r.effective_macs,
                "compute_cycles": r.compute_cycles,
                "stall_cycles": r.stall_cycles,
                "overhead_cycles": r.overhead_cycles,
                "total_cycles": r.total_cycles,
                "dma_cycles": r.dma_cycles,
                "latency_ms": r.total_cycles / result.clock_hz * 1e3,
                "energy_mj": r.energy_j * 1e3,
                "dram_read_bytes": r.dram_read_bytes,
                "dram_write_bytes": r.dram_write_bytes,
                "dram_read_weights_bytes": by_operand.get("weights", 0),
                "dram_read_inputs_bytes": by_operand.get("inputs", 0),
                "peak_macs_per_cycle": r.peak_macs_per_cycle,
                "dram_bytes_per_cycle": r.dram_bytes_per_cycle,
                "utilization": r.utilization,
                "bound": r.bound,
                "input_on_chip": r.input_on_chip,
                "output_on_chip": r.output_on_chip,
            }
        )
    columns = {name: [row[name] for row in rows] for name in SIMULATION_COLUMNS}
    return frame(columns, SIMULATION_COLUMNS)
