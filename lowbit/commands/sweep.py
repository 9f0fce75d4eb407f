"""``lowbit sweep``: simulate workloads over a grid of profile-key values.

With ``--workloads a,b,c`` every grid point (a hypothetical accelerator) runs the whole
suite; the table and the plot then add the suite's geometric-mean speed-up per point, and
the silicon area of each point when the profile has an ``[area]`` model (hwsim.area).

The directory gets ``sweep.csv`` and ``sweep.png``; with ``--format parquet`` also
``sweep.parquet``, the table of :func:`lowbit.results.sweep_frame` (``lowbit.results.load_sweep``
reads either). The printed table is that DataFrame.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.fileio import atomic_write_bytes, atomic_write_text
from lowbit.models.workloads import resolve_workload

from ._resolve import (
    add_compression_arguments,
    add_engine_argument,
    add_hardware_argument,
    add_set_argument,
    apply_compression,
    resolve_profile,
)

HELP = "simulate over a grid of hardware parameters (--vary key=v1,v2,...); writes CSV + plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_hardware_argument(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--workload",
        metavar="NAME|FILE.csv",
        help="built-in workload name (resnet18, bert-base, ...) or a SCALE-Sim topology CSV",
    )
    which.add_argument(
        "--workloads",
        metavar="A,B,...",
        help="several workloads (a suite): every grid point runs all of them",
    )
    add_compression_arguments(parser)
    add_set_argument(parser)
    parser.add_argument(
        "--vary",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="profile key and the values to try, e.g. compute.rows=16,32,64 (repeatable: "
        "the full grid is simulated)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="directory for sweep.csv and sweep.png (default ./sweep-<hardware>-<workload(s)>)",
    )
    parser.add_argument(
        "--format",
        choices=("csv", "parquet"),
        default="csv",
        help="parquet: also write sweep.parquet next to sweep.csv (default: csv only)",
    )
    add_engine_argument(parser)


def run(args: argparse.Namespace) -> int:
    from lowbit.hwsim.profiles import parse_set
    from lowbit.hwsim.sweep import format_value, run_sweep
    from lowbit.reports.sweep import sweep_png
    from lowbit.results import sweep_frame, write_table
    from lowbit.results.sweep import SWEEP_PARQUET

    from .simulate import render_table

    axes = parse_vary(args.vary, parse_set)
    names = _workload_names(args)
    overrides = parse_set(list(args.sets)) if args.sets else None
    resolve_profile(args.hardware, overrides=overrides)  # a bad profile fails before workloads
    workloads = [
        apply_compression(resolve_workload(name), bits=args.bits, plan=args.plan) for name in names
    ]
    result = run_sweep(
        hardware=args.hardware,
        workloads=workloads,
        axes=axes,
        overrides=overrides,
        engine=args.engine,
    )
    suite, with_area = result.is_suite, result.with_area
    points = sweep_frame(result)
    headers = (
        *(("workload",) if suite else ()),
        *result.keys,
        "total cycles",
        "latency ms",
        "energy mJ",
        "speed-up",
        *(("area mm2",) if with_area else ()),
    )
    rows = [
        (
            *((p["workload"],) if suite else ()),
            *(format_value(p[key]) for key in result.keys),
            f"{p['total_cycles']:,}",
            f"{p['latency_ms']:.4g}",
            f"{p['energy_mj']:.4g}",
            f"{p['speedup']:.3g}x",
            *((f"{p['area_mm2']:.3g}",) if with_area else ()),
        )
        for p in points.to_dict("records")
    ]
    label = "+".join(_slug(n) for n in names)
    out = args.out or Path(f"sweep-{_slug(args.hardware)}-{label[:80]}")
    title = f"{label if suite else result.workloads[0]} on {result.profile}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "sweep.csv", result.csv_text())
        atomic_write_bytes(out / "sweep.png", sweep_png(result, title=title))
        if args.format == "parquet":
            write_table(points, out / SWEEP_PARQUET, format="parquet")
    except OSError as exc:
        raise LowbitError(f"--out {out}: cannot write results: {exc.strerror or exc}") from None

    given = ", ".join(f"{b.workload} {b.latency_s * 1e3:.4g} ms" for b in result.baselines)
    print(
        f"{title} ({args.engine} engine): {len(result.points)} points; "
        f"speed-up vs the profile as given ({given})"
    )
    print()
    print(render_table(headers, rows, right=range(1 if suite else 0, len(headers))))
    if suite:
        print()
        print(f"suite ({len(workloads)} workloads): geometric-mean speed-up per grid point")
        print()
        suite_headers = (*result.keys, "geomean speed-up", "total latency ms")
        suite_headers += ("area mm2",) if with_area else ()
        table = [
            (
                *(format_value(v) for v in s.values),
                f"{s.geomean_speedup:.3g}x",
                f"{s.total_latency_s * 1e3:.4g}",
                *((f"{s.area_mm2:.3g}",) if with_area else ()),
            )
            for s in result.suite()
        ]
        print(render_table(suite_headers, table, right=range(len(suite_headers))))
    print()
    written = [out / "sweep.csv", out / "sweep.png"]
    written += [out / SWEEP_PARQUET] if args.format == "parquet" else []
    print("wrote " + ", ".join(map(str, written[:-1])) + f" and {written[-1]}")
    return 0


def _workload_names(args: argparse.Namespace) -> list[str]:
    if args.workload:
        return [args.workload]
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    if not names:
        raise LowbitError("--workloads: give one or more names separated by commas")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LowbitError(f"--workloads: {', '.join(repeated)} given twice")
    return names


def parse_vary(items: list[str], parse_set) -> list[tuple[str, list[object]]]:
    """``["compute.rows=16,32"]`` -> ``[("compute.rows", [16, 32])]``; each value is parsed
    like a ``--set`` value (TOML scalar)."""
    axes: list[tuple[str, list[object]]] = []
    seen: set[str] = set()
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise LowbitError(f"--vary: expected KEY=V1,V2,... got {item!r}")
        if key in seen:
            raise LowbitError(f"--vary: key {key!r} given twice")
        seen.add(key)
        values = [parse_set([f"{key}={v.strip()}"])[key] for v in raw.split(",") if v.strip()]
        if not values:
            raise LowbitError(f"--vary {key}: no values (give V1,V2,... after '=')")
        axes.append((key, values))
    return axes


def _slug(spec: str) -> str:
    """A profile/workload name or path as a directory-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec).stem if "/" in spec else spec)
