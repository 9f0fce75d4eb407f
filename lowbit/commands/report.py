"""``lowbit report``: write a search run's self-contained HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write report.html for a search run (Pareto front, hypervolume, per-layer views)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, metavar="DIR", help="run directory")
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="where to write the page (default DIR/report.html)"
    )
    parser.add_argument(
        "--configs",
        metavar="ID,ID",
        help="Pareto config ids for the per-layer view (default: the best within 1 point of "
        "FP32, the fastest within 5 points, the most accurate)",
    )


def run(args: argparse.Namespace) -> int:
    from lowbit.reports import build_report

    configs = [c.strip() for c in args.configs.split(",") if c.strip()] if args.configs else None
    path = build_report(args.run, out=args.out, configs=configs)
    print(f"wrote {path}")
    return 0
