"""reports: tables, plots and HTML pages built from search results.

:func:`build_report` writes a run directory's ``report.html``: one self-contained page
(inline images) with the Pareto frontier, hypervolume vs trials, per-layer views of selected
configurations (bits, keep ratio, rank, latency breakdown, roofline), the co-design hardware,
simulated vs measured latency when ``lowbit validate`` ran, and every Pareto configuration.
:func:`run_status` reads a run directory while its search is still running (the service's
progress view).

Example:
    >>> from lowbit.reports import build_report
    >>> build_report("runs/digits-cnn-npu-bitfusion-s0")  # doctest: +SKIP
    PosixPath('runs/digits-cnn-npu-bitfusion-s0/report.html')
"""

from .report import REPORT_FILE, build_report, render_report, select_configs
from .rundata import ReportError, RunData, load_run
from .status import run_status

__all__ = [
    "REPORT_FILE",
    "ReportError",
    "RunData",
    "build_report",
    "load_run",
    "render_report",
    "run_status",
    "select_configs",
]
