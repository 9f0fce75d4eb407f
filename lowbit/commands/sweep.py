"""``lowbit sweep``: simulate workloads over a grid of profile-key values.

With ``--workloads a,b,c`` every grid point (a hypothetical accelerator) runs the whole
suite; the table and the plot then add the suite's geometric-mean speed-up per point, and
the silicon area of each point when the profile has an ``[area]`` model (hwsim.area).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import re
from pathlib import Path

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.fileio import atomic_write_bytes, atomic_write_text
from lowbit.models.workloads import resolve_workload

from ._resolve import (
    add_compression_arguments,
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
        "--engine", choices=("analytic", "event"), default="analytic", help="default: analytic"
    )


def run(args: argparse.Namespace) -> int:
    from lowbit.hwsim.profiles import parse_set
    from lowbit.models.workloads import simulate

    from .simulate import render_table

    axes = parse_vary(args.vary, parse_set)
    names = _workload_names(args)
    base_profile = resolve_profile(args.hardware, sets=args.sets)
    workloads = [
        apply_compression(resolve_workload(name), bits=args.bits, plan=args.plan) for name in names
    ]
    bases = {w.name: simulate(w, base_profile, engine=args.engine) for w in workloads}

    keys = [key for key, _ in axes]
    records = []
    for combo in itertools.product(*(values for _, values in axes)):
        overrides = dict(zip(keys, combo, strict=True))
        profile = resolve_profile(args.hardware, sets=args.sets, overrides=overrides)
        area = _area(profile)
        for workload in workloads:
            result = simulate(workload, profile, engine=args.engine)
            records.append(
                {
                    "workload": workload.name,
                    **overrides,
                    "total_cycles": result.total_cycles,
                    "latency_s": result.latency_s,
                    "energy_j": result.energy_j,
                    "speedup": bases[workload.name].latency_s / result.latency_s,
                    "area_mm2": area,
                }
            )
    with_area = all(r["area_mm2"] is not None for r in records)
    suite = len(workloads) > 1
    headers = (
        *(("workload",) if suite else ()),
        *keys,
        "total cycles",
        "latency ms",
        "energy mJ",
        "speed-up",
        *(("area mm2",) if with_area else ()),
    )
    rows = [
        (
            *((r["workload"],) if suite else ()),
            *(_fmt(r[k]) for k in keys),
            f"{r['total_cycles']:,}",
            f"{r['latency_s'] * 1e3:.4g}",
            f"{r['energy_j'] * 1e3:.4g}",
            f"{r['speedup']:.3g}x",
            *((f"{r['area_mm2']:.3g}",) if with_area else ()),
        )
        for r in records
    ]
    label = "+".join(_slug(n) for n in names)
    out = args.out or Path(f"sweep-{_slug(args.hardware)}-{label[:80]}")
    title = f"{label if suite else workloads[0].name} on {base_profile.name}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_csv(out / "sweep.csv", keys, records, with_area=with_area)
        if suite:
            _write_suite_plot(out / "sweep.png", keys, records, title=title)
        else:
            _write_plot(out / "sweep.png", keys, records, title=title)
    except OSError as exc:
        raise LowbitError(f"--out {out}: cannot write results: {exc.strerror or exc}") from None

    given = ", ".join(f"{b.workload} {b.latency_s * 1e3:.4g} ms" for b in bases.values())
    print(
        f"{title} ({args.engine} engine): {len(records)} points; "
        f"speed-up vs the profile as given ({given})"
    )
    print()
    print(render_table(headers, rows, right=range(1 if suite else 0, len(headers))))
    if suite:
        print()
        print(f"suite ({len(workloads)} workloads): geometric-mean speed-up per grid point")
        print()
        summary = _suite_rows(keys, records)
        suite_headers = (*keys, "geomean speed-up", "total latency ms")
        suite_headers += ("area mm2",) if with_area else ()
        table = [
            (
                *(_fmt(v) for v in point),
                f"{gm:.3g}x",
                f"{total * 1e3:.4g}",
                *((f"{area:.3g}",) if with_area else ()),
            )
            for point, gm, total, area in summary
        ]
        print(render_table(suite_headers, table, right=range(len(suite_headers))))
    print()
    print(f"wrote {out / 'sweep.csv'} and {out / 'sweep.png'}")
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


def _area(profile) -> float | None:
    """The profile's silicon area (mm2) if it has an [area] model."""
    if profile.area is None:
        return None
    from lowbit.hwsim.area import area_mm2

    return area_mm2(profile)


def _suite_rows(keys: list[str], records: list[dict]) -> list[tuple]:
    """Per grid point: (values, geometric-mean speed-up, total latency s, area)."""
    points: dict[tuple, list[dict]] = {}
    for r in records:
        points.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for point, rs in points.items():
        gm = math.exp(sum(math.log(r["speedup"]) for r in rs) / len(rs))
        out.append((point, gm, sum(r["latency_s"] for r in rs), rs[0]["area_mm2"]))
    return out


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


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _slug(spec: str) -> str:
    """A profile/workload name or path as a directory-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec).stem if "/" in spec else spec)


def _write_csv(path: Path, keys: list[str], records: list[dict], *, with_area: bool) -> None:
    buffer = io.StringIO()
    fields = ["workload", *keys, "total_cycles", "latency_s", "energy_j", "speedup"]
    fields += ["area_mm2"] if with_area else []
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, buffer.getvalue())


def _write_plot(path: Path, keys: list[str], records: list[dict], *, title: str) -> None:
    """Latency against the first varied key; one line per combination of the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, rest = keys[0], keys[1:]
    lines: dict[tuple, list[dict]] = {}
    for record in records:
        lines.setdefault(tuple(record[k] for k in rest), []).append(record)
    numeric = all(isinstance(r[first], (int, float)) for r in records)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    try:
        for label, points in lines.items():
            xs = [p[first] if numeric else str(p[first]) for p in points]
            ys = [p["latency_s"] * 1e3 for p in points]
            name = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(rest, label, strict=True))
            ax.plot(xs, ys, marker="o", label=name or None)
        _log2_axis(ax, [r[first] for r in records], numeric=numeric)
        ax.set_xlabel(first)
        ax.set_ylabel("latency (ms)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if rest:
            ax.legend(fontsize="small")
        png = _png(fig)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, png)


def _write_suite_plot(path: Path, keys: list[str], records: list[dict], *, title: str) -> None:
    """Speed-up vs the first varied key: one line per workload and the suite's geometric
    mean (bold) when one key varies; the geometric mean per combination of the others else."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, rest = keys[0], keys[1:]
    numeric = all(isinstance(r[first], (int, float)) for r in records)
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    try:
        if not rest:
            for name in dict.fromkeys(r["workload"] for r in records):
                pts = [r for r in records if r["workload"] == name]
                xs = [p[first] if numeric else str(p[first]) for p in pts]
                ax.plot(xs, [p["speedup"] for p in pts], marker="o", alpha=0.6, label=name)
        for point_rest in dict.fromkeys(tuple(r[k] for k in rest) for r in records):
            chosen = [r for r in records if tuple(r[k] for k in rest) == point_rest]
            summary = _suite_rows([first], chosen)
            xs = [p[0][0] if numeric else str(p[0][0]) for p in summary]
            name = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(rest, point_rest, strict=True))
            ax.plot(xs, [p[1] for p in summary], marker="s", linewidth=2.4, color=None if rest
                    else "black", label=f"geomean {name}".strip())  # fmt: skip
        _log2_axis(ax, [r[first] for r in records], numeric=numeric)
        ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle=":")
        ax.set_xlabel(first)
        ax.set_ylabel("speed-up vs the profile as given (x)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        png = _png(fig)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, png)


def _log2_axis(ax, values: list, *, numeric: bool) -> None:
    """A log2 x axis ticked at ``values`` when they are positive numbers spanning 4x or more
    (sizes are usually varied in powers of two)."""
    if numeric and min(values) > 0 and max(values) >= 4 * min(values):
        ax.set_xscale("log", base=2)
        ticks = sorted(set(values))
        ax.set_xticks(ticks, [_fmt(t) for t in ticks])
        ax.minorticks_off()


def _png(fig) -> bytes:
    """``fig`` laid out and rendered as a 100-dpi PNG."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
