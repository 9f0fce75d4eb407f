"""``lowbit sweep``: simulate a workload over a grid of profile-key values."""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import re
import tempfile
from pathlib import Path

from hwsim.errors import LowbitError

from ._resolve import add_target_arguments

HELP = "simulate over a grid of hardware parameters (--vary key=v1,v2,...); writes CSV + plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
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
        help="directory for sweep.csv and sweep.png (default ./sweep-<hardware>-<workload>)",
    )
    parser.add_argument(
        "--engine", choices=("analytic", "event"), default="analytic", help="default: analytic"
    )


def run(args: argparse.Namespace) -> int:
    from hwsim.profiles import parse_set

    from ._resolve import resolve_profile, resolve_target
    from .simulate import render_table, simulate

    axes = parse_vary(args.vary, parse_set)
    base_profile, workload = resolve_target(args)
    base = simulate(workload, base_profile, engine=args.engine)

    keys = [key for key, _ in axes]
    records = []
    for combo in itertools.product(*(values for _, values in axes)):
        overrides = dict(zip(keys, combo, strict=True))
        profile = resolve_profile(args.hardware, sets=args.sets, overrides=overrides)
        result = simulate(workload, profile, engine=args.engine)
        records.append(
            {
                **overrides,
                "total_cycles": result.total_cycles,
                "latency_s": result.latency_s,
                "energy_j": result.energy_j,
                "speedup": base.latency_s / result.latency_s,
            }
        )

    headers = (*keys, "total cycles", "latency ms", "energy mJ", "speed-up")
    rows = [
        (
            *(_fmt(r[k]) for k in keys),
            f"{r['total_cycles']:,}",
            f"{r['latency_s'] * 1e3:.4g}",
            f"{r['energy_j'] * 1e3:.4g}",
            f"{r['speedup']:.3g}x",
        )
        for r in records
    ]
    out = args.out or Path(f"sweep-{_slug(args.hardware)}-{_slug(args.workload)}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_csv(out / "sweep.csv", keys, records)
        _write_plot(out / "sweep.png", keys, records, title=f"{workload.name} on {base.hardware}")
    except OSError as exc:
        raise LowbitError(f"--out {out}: cannot write results: {exc.strerror or exc}") from None

    print(
        f"{workload.name} on {base.hardware} ({args.engine} engine): {len(records)} points; "
        f"speed-up vs the profile as given ({base.latency_s * 1e3:.4g} ms)"
    )
    print()
    print(render_table(headers, rows, right=range(len(headers))))
    print()
    print(f"wrote {out / 'sweep.csv'} and {out / 'sweep.png'}")
    return 0


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
        axes.append((key, values))
    return axes


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _slug(spec: str) -> str:
    """A profile/workload name or path as a directory-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec).stem if "/" in spec else spec)


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_csv(path: Path, keys: list[str], records: list[dict]) -> None:
    buffer = io.StringIO()
    fields = [*keys, "total_cycles", "latency_s", "energy_j", "speedup"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    _replace_atomically(path, buffer.getvalue().encode())


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
        values = [r[first] for r in records]
        if numeric and min(values) > 0 and max(values) >= 4 * min(values):
            ax.set_xscale("log", base=2)  # sizes are usually varied in powers of two
            ticks = sorted(set(values))
            ax.set_xticks(ticks, [_fmt(t) for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(first)
        ax.set_ylabel("latency (ms)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if rest:
            ax.legend(fontsize="small")
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    _replace_atomically(path, buffer.getvalue())
