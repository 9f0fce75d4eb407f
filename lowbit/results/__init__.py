"""results: search runs, sweeps and simulations as pandas DataFrames.

:func:`load_run` reads a search run directory into a :class:`Run` (``.trials``,
``.pareto``, ``.layers``, ``.validation``, ``.summary``); :func:`load_sweep` reads the
directory of ``lowbit sweep``; :func:`compare_runs` lines several runs up in one long
table (hypervolume and speed-up per method). Every table follows one naming convention:
units are in column names (``latency_ms``, ``total_cycles``, ``energy_mj``, ``size_kib``,
``area_mm2``, ``duration_s``), accuracies are fractions in [0, 1] and timestamps are UTC
(``docs/results.md`` lists every column with its dtype and unit).

Example::

    from lowbit.results import load_run
    run = load_run("runs/demo")
    run.pareto.sort_values("latency_ms")[["config_id", "accuracy_test", "latency_ms"]]

This package sits above ``search`` (it reads the files ``lowbit.search.results`` writes,
with its readers) and below ``reports``; it never draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lowbit.hwsim._lazy import lazy_attributes

from .errors import ResultsError

if TYPE_CHECKING:  # lazy re-exports, see __getattr__
    from .compare import COMPARE_COLUMNS, compare_runs
    from .io import read_parquet, write_table
    from .layers import LAYER_COLUMNS
    from .run import Run, load_run
    from .sweep import SIMULATION_COLUMNS, load_sweep, simulation_frame, sweep_frame

__all__ = [
    "COMPARE_COLUMNS",
    "LAYER_COLUMNS",
    "SIMULATION_COLUMNS",
    "ResultsError",
    "Run",
    "compare_runs",
    "load_run",
    "load_sweep",
    "read_parquet",
    "simulation_frame",
    "sweep_frame",
    "write_table",
]

#: public name -> submodule holding it (``import lowbit.results`` stays light)
_LAZY = {
    "COMPARE_COLUMNS": "compare",
    "LAYER_COLUMNS": "layers",
    "SIMULATION_COLUMNS": "sweep",
    "Run": "run",
    "compare_runs": "compare",
    "load_run": "run",
    "load_sweep": "sweep",
    "read_parquet": "io",
    "simulation_frame": "sweep",
    "sweep_frame": "sweep",
    "write_table": "io",
}

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
