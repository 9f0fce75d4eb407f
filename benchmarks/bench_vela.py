"""lowbit's simulated Ethos-U55 cycles vs Arm Vela's estimate, over zoo models and configs.

Each zoo model (trained, seed 0: the CNNs/MLPs and the ViTs) is compressed by each plan
(calibrated on 500 val images), exported as a fully-integer TFLite model
(:mod:`lowbit.models.export.tflite`), compiled by Vela for ``ethos-u55-256`` on the system
the ``npu-ethos-u55`` profile models (:mod:`lowbit.models.export.vela`), and simulated by
lowbit on that profile (analytic engine). Vela's operators map to lowbit's layers by name
(:func:`~lowbit.models.export.vela.assign_layers`: a sub-8-bit clamp, a low-rank factor,
the steps of a decomposed LayerNorm or softmax count to their layer).

Vela estimates the NPU only: an operator it places on the CPU (the ViT export's int16
attention scores and int16 GELU) counts 0 cycles. Compared, on both sides, are the layers
Vela runs wholly on the NPU (``lowbit_cycles``, ``vela_cycles``); the totals with every
layer are kept beside them (``*_all``).

Printed: per config the compared cycles and their ratio (lowbit / Vela); per layer kind the
median ratio and spread; Spearman rank correlation and the share within ±20 % for totals
and for layers, for the CNNs/MLPs and for the ViTs apart. ``--check`` also runs each TFLite
model in LiteRT on the test split and reports its accuracy beside the INT8 ONNX model's.

Usage::

    .venv/bin/python benchmarks/bench_vela.py [--models a,b] [--check] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from lowbit import hwsim
from lowbit.hwsim.profiles import load_profile
from lowbit.models.bridge import to_workload
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export._onnx_layout import flatten_channels_last
from lowbit.models.export._onnx_pad import pad_conv_channels
from lowbit.models.export.deploy import build_compressed, deploy_copy, to_onnx
from lowbit.models.export.onnx_quant import quantize_graph
from lowbit.models.export.tflite import build_tflite, check_tflite
from lowbit.models.export.vela import (
    layer_pairs,
    ratio_summary,
    run_vela,
    vela_estimate,
    vela_target,
)

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "npu-ethos-u55"
MODELS = (
    "digits-cnn",
    "digits-mlp",
    "mnist1d-cnn",
    "mnist1d-mlp",
    "fashion-resnet",
    "fashion-mobilenet",
    "fashion-vit",
    "digits-vit",
)
#: the summaries printed apart (a model with attention matmuls is a ViT)
FAMILIES = ("cnn/mlp", "vit")
PLANS = {
    "W8A8": {"_default": {"w_bits": 8, "a_bits": 8}},
    "W4A8": {"_default": {"w_bits": 4, "a_bits": 8}},
    "W8A8 keep 0.5": {"_default": {"w_bits": 8, "a_bits": 8, "keep": 0.5}},
    "W8A8 rank 0.5": {"_default": {"w_bits": 8, "a_bits": 8, "rank_fraction": 0.5}},
}


def _plan(layers: dict) -> CompressionPlan:
    return CompressionPlan.from_dict({"version": 1, "pin_first_last": True, "layers": layers})


def measure(model: str, plan_name: str, *, check: bool) -> dict:
    """Vela's estimate and lowbit's simulation of ``model`` under plan ``plan_name``."""
    plan = _plan(PLANS[plan_name])
    profile = load_profile(PROFILE)
    base, small = build_compressed(model, plan, calib_samples=500)
    plain, quants, _ = deploy_copy(small)
    qdq, _ = quantize_graph(to_onnx(plain, input_shape=tuple(small.input_shape)), quants)
    tfl = build_tflite(compressed=small, qdq=qdq)
    result = run_vela(tfl.content, target=vela_target(profile), name=model)
    sim = hwsim.simulate(to_workload(base, plan, name=model), profile)
    est = vela_estimate(result, files={}, sim=sim)
    ops = {r.name: r.op for r in sim.layers}
    layers = layer_pairs(est, ops=ops)
    family = "vit" if any(r.op == "matmul" for r in sim.layers) else "cnn/mlp"
    row = {
        "model": model,
        "plan": plan_name,
        "family": family,
        "lowbit_cycles": est["lowbit"]["cycles_npu_layers"],
        "vela_cycles": est["cycles_npu_layers"],
        "lowbit_cycles_all": est["lowbit"]["cycles"],
        "vela_cycles_all": est["cycles"],
        "cpu_layers": est["cpu_layers"],
        "vela_npu_cycles": est["cycles_npu"],
        "vela_flash_cycles": est["cycles_off_chip_flash_access"],
        "vela_sram_bytes": est["sram_bytes"],
        "vela_flash_bytes": est["flash_bytes"],
        "vela_encoded_weight_bytes": est["weights_bytes_encoded"],
        "cpu_operators": est["cpu_operators"],
        "tflite_operators": tfl.operators,
        "unmatched_vela_layers": sorted(set(est["cycles_by_layer"]) - set(ops)),
        "layers": layers,
    }
    row["ratio"] = row["lowbit_cycles"] / row["vela_cycles"]
    if check:
        int8 = flatten_channels_last(pad_conv_channels(qdq)[0])
        c = check_tflite(compressed=small, model=tfl, int8=int8, qdq=qdq)
        row.update(
            {
                k: c[k]
                for k in (
                    "accuracy_tflite",
                    "accuracy_onnx_int8",
                    "accuracy_diff_pt",
                    "argmax_agreement",
                )
            }
        )
    return row


def summarize(rows: list[dict]) -> dict:
    """Spearman and share within ±20 % of totals and of layers, per layer kind the ratios
    (:func:`~lowbit.models.export.vela.ratio_summary`): over every row and per family."""
    out = {"all": ratio_summary(rows)}
    for family in FAMILIES:
        if part := [r for r in rows if r["family"] == family]:
            out[family] = ratio_summary(part)
    return out


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _summary_lines(summary: dict) -> list[str]:
    lines = []
    for op, s in summary["by_op"].items():
        lines.append(
            f"{op:<12} {s['layers']:>6} {s['median_ratio']:>7.2f} {s['min_ratio']:>6.2f} "
            f"{s['max_ratio']:>6.2f} {s['within_20pct']:>10.0%}"
        )
    lines.append(
        f"totals ({summary['configs']} configs): Spearman "
        f"{_num(summary['total_spearman'], '.3f')}, median ratio "
        f"{summary['total_median_ratio']:.2f}, within ±20 % "
        f"{summary['total_within_20pct']:.0%}; layers ({summary['layers']}): Spearman "
        f"{_num(summary['layer_spearman'], '.3f')}, within ±20 % "
        f"{_num(summary['layer_within_20pct'], '.0%')}"
    )
    return lines


def render(rows: list[dict], summary: dict) -> str:
    check = "accuracy_tflite" in rows[0]
    head = (
        f"{'model':<18} {'plan':<14} {'lowbit cyc':>10} {'Vela cyc':>9} {'ratio':>6} "
        f"{'Vela NPU':>9} {'flash cyc':>9} {'flash B':>8} {'SRAM B':>7}"
    )
    if check:
        head += f" {'acc TFLite':>10} {'acc ONNX':>9} {'argmax':>7}"
    lines = [
        f"lowbit ({PROFILE}, analytic) vs Vela (ethos-u55-256, High_End_Embedded, "
        "Shared_Sram), cycles per inference of the layers Vela runs on the NPU",
        head,
    ]
    for r in rows:
        line = (
            f"{r['model']:<18} {r['plan']:<14} {r['lowbit_cycles']:>10} {r['vela_cycles']:>9} "
            f"{r['ratio']:>6.2f} {r['vela_npu_cycles']:>9} {r['vela_flash_cycles']:>9} "
            f"{r['vela_flash_bytes']:>8} {r['vela_sram_bytes']:>7}"
        )
        if check:
            line += (
                f" {r['accuracy_tflite']:>10.2%} {r['accuracy_onnx_int8']:>9.2%} "
                f"{r['argmax_agreement']:>7.2%}"
            )
        lines.append(line)
    for family, part in summary.items():
        if family == "all" and len(summary) == 2:  # one family: its summary is the whole
            continue
        lines += [
            "",
            f"[{family}]",
            f"{'layer kind':<12} {'layers':>6} {'median':>7} {'min':>6} "
            f"{'max':>6} {'within 20%':>10}   (ratio lowbit / Vela)",
        ]
        lines += _summary_lines(part)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench-results" / "bench_vela.json",
        help="JSON results file (default: bench-results/bench_vela.json)",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names")
    parser.add_argument("--plans", default=",".join(PLANS), help="comma-separated plan names")
    parser.add_argument("--check", action="store_true", help="also LiteRT accuracy on test")
    args = parser.parse_args(argv)
    plans = args.plans.split(",")
    unknown = [p for p in plans if p not in PLANS]
    if unknown:
        parser.error(f"unknown plan {unknown[0]!r} (valid: {', '.join(PLANS)})")
    torch.set_num_threads(1)
    rows = [measure(m, p, check=args.check) for m in args.models.split(",") for p in plans]
    summary = summarize(rows)
    sys.stdout.write(render(rows, summary))
    from importlib.metadata import version

    payload = {
        "benchmark": "bench_vela",
        "python": platform.python_version(),
        "vela": version("ethos-u-vela"),
        "ai_edge_litert": version("ai-edge-litert"),
        "profile": PROFILE,
        "plans": {name: PLANS[name] for name in plans},
        "summary": summary,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
