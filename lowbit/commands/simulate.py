"""``lowbit simulate``: simulate one workload on one hardware target.

``--format`` picks the output: a text table (default), the result as JSON, one CSV row per
layer (every ``LayerResult`` field), or the per-layer table of
:func:`lowbit.results.simulation_frame` as parquet (binary: it needs ``--out``). ``--out
FILE`` writes any of them to a file instead of standard output.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ._resolve import add_engine_argument, add_target_arguments

HELP = "simulate a workload on a hardware profile (per-layer cycles, latency, energy)"

_FORMATS = ("table", "json", "csv", "parquet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    add_engine_argument(parser)
    parser.add_argument(
        "--format",
        choices=_FORMATS,
        default="table",
        help="default: table; parquet: the per-layer table (units in column names), needs --out",
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="write to FILE instead of standard output"
    )


def run(args: argparse.Namespace) -> int:
    from lowbit.hwsim.errors import LowbitError
    from lowbit.hwsim.fileio import atomic_write_text, check_output_file
    from lowbit.models.workloads import simulate

    from ._resolve import resolve_target

    if args.format == "parquet" and args.out is None:
        raise LowbitError("--format parquet: give --out FILE.parquet (parquet is binary)")
    if args.out is not None:
        check_output_file(args.out, flag="--out")
    profile, workload = resolve_target(args)
    result = simulate(workload, profile, engine=args.engine)
    if args.format == "parquet":
        from lowbit.results import simulation_frame, write_table

        write_table(simulation_frame(result), args.out, format="parquet")
        print(f"wrote {args.out} ({len(result.layers)} layers)")
        return 0
    text = io.StringIO()
    if args.format == "json":
        json.dump(result.to_dict(), text, indent=2)
        text.write("\n")
    elif args.format == "csv":
        write_csv(result, text)
    else:
        text.write(render_result(result))
    if args.out is None:
        sys.stdout.write(text.getvalue())
    else:
        atomic_write_text(args.out, text.getvalue())
        print(f"wrote {args.out}")
    return 0


def write_csv(result, stream) -> None:
    """One row per layer: every LayerResult field."""
    rows = [layer.to_dict() for layer in result.layers]
    writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def overall_bound(result) -> str:
    """The bound that accounts for the most cycles across layers."""
    cycles: dict[str, int] = {}
    for layer in result.layers:
        cycles[layer.bound] = cycles.get(layer.bound, 0) + layer.total_cycles
    return max(cycles, key=cycles.__getitem__)


def render_result(result) -> str:
    """The human-readable report: per-layer rows, totals, latency, energy, bound.

    An "overhead" column (fixed per-layer cycles) appears when the target has any, so
    that compute + stall + overhead = total on every row.
    """
    with_overhead = any(layer.overhead_cycles for layer in result.layers)

    def total(attr: str) -> int:
        return sum(getattr(x, attr) for x in result.layers)

    def row(name, op, macs, bits, compute, stall, overhead, cycles, dram, util, bound):
        cells = [name, op, macs, bits, compute, stall, overhead, cycles, dram, util, bound]
        return tuple(cells if with_overhead else cells[:6] + cells[7:])

    headers = row(
        "layer",
        "op",
        "MACs",
        "bits",
        "compute",
        "stall",
        "overhead",
        "total",
        "DRAM",
        "util",
        "bound",
    )
    rows = [
        row(
            layer.name,
            layer.op,
            si(layer.macs) if layer.macs else "-",
            f"W{layer.w_bits}A{layer.a_bits}" if layer.macs else "-",
            f"{layer.compute_cycles:,}",
            f"{layer.stall_cycles:,}",
            f"{layer.overhead_cycles:,}",
            f"{layer.total_cycles:,}",
            size(layer.dram_read_bytes + layer.dram_write_bytes),
            f"{100 * layer.utilization:.1f}%" if layer.macs else "-",
            layer.bound,
        )
        for layer in result.layers
    ]
    rows.append(
        row(
            f"TOTAL ({len(result.layers)} layers)",
            "",
            si(total("macs")),
            "",
            f"{total('compute_cycles'):,}",
            f"{total('stall_cycles'):,}",
            f"{total('overhead_cycles'):,}",
            f"{result.total_cycles:,}",
            size(total("dram_read_bytes") + total("dram_write_bytes")),
            "",
            "",
        )
    )
    lines = [
        f"{result.workload} on {result.hardware} ({result.engine} engine, "
        f"{result.clock_hz / 1e6:g} MHz)",
        "",
        render_table(headers, rows, right=range(2, len(headers) - 1), rule_before_last=True),
        "",
        f"latency  {result.latency_s * 1e3:.4g} ms  ({result.total_cycles:,} cycles)",
        f"energy   {result.energy_j * 1e3:.4g} mJ",
        f"bound    {overall_bound(result)}",
    ]
    return "\n".join(lines) + "\n"


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[int] = (),
    rule_before_last: bool = False,
) -> str:
    """A plain-text table: columns padded to their widest cell; ``right`` right-aligns."""
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers))]
    right = set(right)

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(headers), rule]
    body = [line(r) for r in rows]
    if rule_before_last and body:
        body.insert(len(body) - 1, rule)
    return "\n".join(out + body)


def si(value: float) -> str:
    """1234567 -> '1.23M' (k, M, G, T)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:g}"


def size(nbytes: float) -> str:
    """Bytes with binary units: 1536 -> '1.5 KiB'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:g} B"
