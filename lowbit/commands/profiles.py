"""``lowbit profiles``: list the built-in hardware profiles, or show one in full."""

from __future__ import annotations

import argparse
import json
import sys

from ._resolve import add_set_argument

HELP = "list the built-in hardware profiles, or show one (compute, precisions, memory)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = sub.add_parser("list", help="one line per built-in profile (the default)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    show = sub.add_parser(
        "show",
        help="a readable dump of one profile",
        description="Show a built-in profile or a profile file: compute, precision modes, "
        "memory levels, sparsity, overheads, source file and content hash.",
    )
    show.add_argument("profile", metavar="NAME|FILE", help="built-in name, .toml or .cfg file")
    add_set_argument(show)
    show.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    from lowbit.hwsim.profiles import builtin_profile_names, load_profile, parse_set

    if args.action == "show":
        overrides = parse_set(args.sets) if args.sets else None
        profile = load_profile(args.profile, overrides=overrides)
        if args.format == "json":
            json.dump(profile_json(profile), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(render_profile(profile))
        return 0
    profiles = [load_profile(name) for name in builtin_profile_names()]
    if getattr(args, "format", "table") == "json":
        rows = [
            {
                "name": p.name,
                "family": p.family,
                "clock_hz": p.clock_hz,
                "peak_int8_macs_per_cycle": _int8_peak(p),
                "description": p.description,
            }
            for p in profiles
        ]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_list(profiles))
    return 0


def _int8_peak(profile) -> float | None:
    from lowbit.hwsim.profile import UnsupportedPrecision

    try:
        return profile.compute.peak_macs_per_cycle(8, 8)
    except UnsupportedPrecision:
        return None


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def _plain(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _clock(hz: float) -> str:
    return f"{hz / 1e9:g} GHz" if hz >= 1e9 else f"{hz / 1e6:g} MHz"


def _size(size_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size_bytes >= scale:
            value = size_bytes / scale
            return f"{value:g} {unit}" if value.is_integer() else f"{value:.1f} {unit}"
    return f"{size_bytes} B"


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = indent + "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*row).rstrip() for row in [header, *rows]]


def render_list(profiles) -> str:
    rows = []
    for p in profiles:
        peak = _int8_peak(p)
        peak_text = "-" if peak is None else _num(peak)
        rows.append([p.name, p.family, _clock(p.clock_hz), peak_text, p.description])
    lines = _table(["NAME", "FAMILY", "CLOCK", "INT8 MACs/cycle", "DESCRIPTION"], rows, indent="")
    return "\n".join(lines) + "\n"


def profile_json(profile) -> dict:
    """The built profile as JSON data, with its content hash and peak per precision."""
    data = profile.to_dict()
    data["content_hash"] = profile.content_hash()
    data["peak_macs_per_cycle"] = {
        f"W{p.w_bits}A{p.a_bits}": profile.compute.pes * p.macs_per_pe_per_cycle
        for p in profile.compute.precisions
    }
    return data


def render_profile(profile) -> str:
    """A readable dump of every part of a profile."""
    c = profile.compute
    out = [
        f"{profile.name}: {profile.description}",
        f"  family {profile.family}, clock {_clock(profile.clock_hz)}, "
        f"schema_version {profile.schema_version}",
        f"  source        {profile.source}",
        f"  content hash  sha256:{profile.content_hash()}",
        "",
        f"compute: {c.kind}, {c.rows} x {c.cols} x {c.cores} = {c.pes:,} PEs; "
        f"dataflow {c.dataflow} (supported: {', '.join(c.dataflows)})",
    ]
    gops = profile.clock_hz / 1e9
    out += _table(
        ["mode", "MACs/PE/cycle", "peak MACs/cycle", "peak GMAC/s", "pJ/MAC"],
        [
            [
                "FP32" if p.w_bits == 32 else f"W{p.w_bits}A{p.a_bits}",
                f"{p.macs_per_pe_per_cycle:.4g}",
                _num(c.pes * p.macs_per_pe_per_cycle),
                _rate(c.pes * p.macs_per_pe_per_cycle * gops),
                f"{p.energy_pj_per_mac:.4g}",
            ]
            for p in c.precisions
        ],
    )
    out += [
        f"  other bits are promoted to the cheapest mode that covers them; weight storage: "
        f"{profile.weight_storage}",
        "",
        "memory (outermost first):",
    ]
    rows = []
    for m in profile.memory:
        flags = ", ".join(
            f for f, on in (("off-chip", m.off_chip), ("double-buffered", m.double_buffered)) if on
        )
        gbps = m.bandwidth_bytes_per_cycle * profile.clock_hz / 1e9
        rows.append(
            [
                m.name,
                _size(m.size_bytes),
                f"{m.bandwidth_bytes_per_cycle:g} ({gbps:.4g} GB/s)",
                f"{m.energy_pj_per_byte:g}",
                ", ".join(m.holds),
                flags or "on-chip",
            ]
        )
    out += _table(["level", "size", "bytes/cycle", "pJ/byte", "holds", ""], rows)
    s = profile.sparsity
    patterns = ", ".join(f"{n}:{m}" for n, m in s.nm_patterns) or "none"
    out += [
        "",
        f"sparsity: N:M patterns {patterns}; zero skipping {'yes' if s.zero_skipping else 'no'}"
        f"; {s.index_bits_per_nonzero:g} index bits per non-zero",
        f"overheads: {profile.overheads.layer_cycles:,} cycles per layer "
        f"({profile.overheads.layer_cycles / profile.clock_hz * 1e6:.3g} us)",
        f"static power: {profile.static_power_w:g} W",
    ]
    if profile.tunables:
        out.append("tunables:")
        out += [f"  {t.key}: {', '.join(_plain(v) for v in t.values)}" for t in profile.tunables]
    if profile.area is not None:
        a = profile.area
        out.append(
            f"area: {a.mm2_per_pe:g} mm2/PE, {a.mm2_per_kib_sram:g} mm2/KiB SRAM, "
            f"{a.mm2_per_gbps_dram:g} mm2 per GB/s DRAM, base {a.base_mm2:g} mm2"
            + (f" ({a.source})" if a.source else "")
        )
    return "\n".join(out) + "\n"
