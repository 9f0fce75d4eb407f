"""``lowbit validate``: simulated vs measured latency and fake-quant vs INT8 accuracy of a run;
with ``--vela``, lowbit's simulated Ethos-U cycles vs Arm Vela's estimate instead."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._data_dir import add_data_dir_argument, apply_data_dir
from .models_cmd import format_table

HELP = (
    "export a run's Pareto configs to INT8 ONNX, time them on this CPU, compare with hwsim "
    "(--vela: compile them with Vela, compare the cycles)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="search run directory")
    parser.add_argument(
        "--top", type=int, metavar="K", help="at most K Pareto configs, spread along the front"
    )
    parser.add_argument(
        "--vela",
        action="store_true",
        help="export TFLite, compile with Arm Vela (the edge extra) and compare lowbit's "
        "simulated cycles on the run's Ethos-U profile with Vela's; nothing is timed",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE.toml|NAME",
        help="host profile (default: $LOWBIT_CACHE/host/host-cpu.toml, calibrated if missing) "
        "or a built-in profile to compare, e.g. cpu-x86-avx2; with --vela an Ethos-U profile "
        "to compare on instead of the run's (e.g. npu-ethos-u55)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per model and batch (default 100)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 20)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    add_data_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    apply_data_dir(args)
    if args.vela:
        if args.repeats is not None or args.warmup is not None:
            from lowbit.hwsim.errors import LowbitError

            raise LowbitError(
                "--repeats/--warmup time ONNX Runtime on this CPU; --vela times "
                "nothing (Vela estimates the cycles): drop them"
            )
        return _run_vela(args)
    args.repeats = 100 if args.repeats is None else args.repeats
    args.warmup = 20 if args.warmup is None else args.warmup
    from lowbit.hwsim.fileio import atomic_write_bytes
    from lowbit.models.hostcal.measure import BATCHES
    from lowbit.reports.validation import validation_scatter_png
    from lowbit.search.validate import validate_run

    result = validate_run(
        args.run,
        top=args.top,
        profile_path=args.profile,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    atomic_write_bytes(Path(args.run) / "validation.png", validation_scatter_png(result))
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    headers = ["config", "fake-quant", "INT8", "diff pt"]
    for b in BATCHES:
        headers += [f"b{b} ms", f"b{b} sim", f"b{b} err", f"b{b} x FP32"]
    rows = []
    for r in result["configs"]:
        row = [
            r["config_id"],
            f"{r['accuracy_fake_quant']:.2%}",
            f"{r['accuracy_int8']:.2%}",
            f"{r['accuracy_diff_points']:+.2f}",
        ]
        for b in BATCHES:
            row += [
                f"{r[f'measured_int8_ms_b{b}']:.4f}",
                f"{r[f'simulated_ms_b{b}']:.4f}",
                f"{r[f'sim_error_pct_b{b}']:+.0f}%",
                f"{r[f'int8_speedup_vs_fp32_b{b}']:.2f}",
            ]
        rows.append(row)
    lines = [format_table(headers, rows)]
    for b in BATCHES:
        m = result["metrics"][f"b{b}"]
        rep = m["repeatability"]
        itself = (
            f" | measurement vs itself (half the runs vs the other half): Spearman "
            f"{_num(rep['spearman'])}, MAPE {rep['mape_pct']:.1f}%"
            if rep
            else ""
        )
        lines.append(
            f"batch {b}: Spearman {_num(m['spearman'])}, Kendall {_num(m['kendall'])}, MAPE "
            f"{m['mape_pct']:.1f}%, within 10% {m['within_10pct']:.0%}, within 15% "
            f"{m['within_15pct']:.0%}{itself}"
        )
    acc = result["accuracy"]
    load = result["load_average"]["before"][0]
    lines.append(
        f"largest |INT8 - fake-quant| accuracy difference: {acc['max_abs_diff_points']:.2f} "
        f"points; load average {load:.2f}; wrote validation.csv, validation.json, validation.png"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _run_vela(args: argparse.Namespace) -> int:
    from lowbit.search.vela_validate import vela_validate_run

    result = vela_validate_run(args.run, top=args.top, profile=args.profile)
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    headers = [
        "config",
        "method",
        "lowbit cycles",
        "Vela cycles",
        "ratio",
        "Vela ms",
        "SRAM B",
        "flash B",
    ]
    rows = [
        [
            r["config_id"],
            r["method"],
            r["lowbit_cycles"],
            r["vela_cycles"],
            f"{r['ratio']:.2f}",
            f"{r['vela_latency_ms']:.4f}",
            r["vela_sram_bytes"],
            r["vela_flash_bytes"],
        ]
        for r in result["configs"]
    ]
    m, q, v = result["metrics"], result["ratios"], result["vela"]
    lines = [
        f"lowbit ({result['profile']}, analytic) vs Vela {v['version']} ({v['accelerator']}, "
        f"{v['system_config']}, {v['memory_mode']}), cycles per inference",
        format_table(headers, rows),
        f"totals ({m['n']} configs): Spearman {_num(m['spearman'])}, Kendall "
        f"{_num(m['kendall'])}, MAPE {m['mape_pct']:.1f}%, within 10% {m['within_10pct']:.0%}, "
        f"within 15% {m['within_15pct']:.0%}, within 20% {_pct(q['total_within_20pct'])}, "
        f"median ratio {q['total_median_ratio']:.2f}",
    ]
    kinds = [
        [
            op,
            s["layers"],
            f"{s['median_ratio']:.2f}",
            f"{s['min_ratio']:.2f}",
            f"{s['max_ratio']:.2f}",
            _pct(s["within_20pct"]),
        ]
        for op, s in q["by_op"].items()
    ]
    lines.append(
        format_table(["layer kind", "layers", "median ratio", "min", "max", "within 20%"], kinds)
    )
    lines.append(
        f"layers ({q['layers']}): Spearman {_num(q['layer_spearman'])}, within 20% "
        f"{_pct(q['layer_within_20pct'])}; ratio = lowbit / Vela; wrote vela_validation.csv, "
        "vela_validation.json"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
