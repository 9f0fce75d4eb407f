"""TFLite and QONNX exports of a search run's Pareto configs, each run in its own runtime.

For every Pareto config of a run directory (default ``runs/demo``: the fashion-resnet-demo
search ``make demo`` runs), the config's model is built as the search built it
(:func:`lowbit.models.export.deploy.build_compressed`: its seed, QAT steps, calibration
subset) and exported in the three formats (:func:`export_compressed`, ``formats = onnx,
tflite, qonnx``). Each artifact is then loaded and run on the whole test split: the INT8
ONNX model in ONNX Runtime and the TFLite model in LiteRT (:func:`check_tflite`, which runs
both), the QONNX model in qonnx's executor (:func:`check_qonnx`). Printed: per config the
test accuracy of each format, TFLite's and QONNX's difference from the INT8 ONNX model (in
points) and their argmax agreement (TFLite with the INT8 ONNX model, QONNX with the
fake-quant model); then the share of exports that loaded and ran and the share within
±0.5 pt of INT8 ONNX. A format that fails to build, load or run counts as a failure (its
error is recorded), not as a crash of the benchmark.

Usage::

    .venv/bin/python benchmarks/bench_export_formats.py [--run runs/demo] [--top K]
        [--out bench-results/bench_export_formats.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: |accuracy difference| allowed against the INT8 ONNX export (issue 14), points
TOLERANCE_PT = 0.5


def measure(target, *, finetune: int, work: Path) -> dict:
    """Export ``target`` (a :class:`lowbit.search.latency.ConfigTarget`) in all three formats
    and run each artifact on the test split."""
    import onnx

    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.data import load_split
    from lowbit.models.export.deploy import build_compressed, export_compressed
    from lowbit.models.export.qonnx import check_qonnx

    steps = finetune if target.qat_steps is None else target.qat_steps
    row: dict = {"config_id": target.config_id, "method": target.method, "errors": {}}
    _, compressed = build_compressed(
        target.model, CompressionPlan.from_dict(target.plan), seed=target.seed,
        finetune_steps=steps, qat_seed=target.qat_seed, calib_samples=target.calib_samples,
        calib_seed=target.calib_seed,
    )  # fmt: skip
    out_dir = work / target.config_id
    try:
        result = export_compressed(
            compressed, out_dir=out_dir, check=True, formats=("onnx", "tflite", "qonnx")
        )
    except Exception as exc:  # noqa: BLE001 - a failed export is a row, not a crash
        row["errors"]["export"] = f"{type(exc).__name__}: {exc}"
        return row
    deploy = result.deploy
    row["accuracy_onnx_int8"] = deploy["check"]["accuracy_int8"]
    tfl = (deploy.get("tflite") or {}).get("check")
    if tfl:
        row.update({"accuracy_tflite": tfl["accuracy_tflite"],
                    "tflite_argmax_vs_onnx": tfl["argmax_agreement"]})  # fmt: skip
    else:
        row["errors"]["tflite"] = "no LiteRT check in deploy.json"
    try:
        qonnx_file = out_dir / deploy["files"]["qonnx"]
        samples = len(load_split(compressed.dataset, "test")[1])
        q = check_qonnx(compressed=compressed, model=onnx.load(qonnx_file), samples=samples)
        row.update({"accuracy_qonnx": q["accuracy_qonnx"],
                    "qonnx_argmax_vs_fake_quant": q["argmax_agreement"]})  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        row["errors"]["qonnx"] = f"{type(exc).__name__}: {exc}"
    for fmt in ("tflite", "qonnx"):
        if f"accuracy_{fmt}" in row:
            row[f"{fmt}_diff_pt"] = 100 * (row[f"accuracy_{fmt}"] - row["accuracy_onnx_int8"])
    return row


def summarize(rows: list[dict]) -> dict:
    """Per format: exports that loaded and ran, and those within ±0.5 pt of INT8 ONNX."""
    out = {"configs": len(rows)}
    for fmt in ("tflite", "qonnx"):
        ran = [r for r in rows if f"accuracy_{fmt}" in r]
        within = [r for r in ran if abs(r[f"{fmt}_diff_pt"]) <= TOLERANCE_PT + 1e-9]
        out[fmt] = {
            "ran": len(ran), "ran_share": len(ran) / len(rows) if rows else None,
            "within_tolerance": len(within),
            "within_share": len(within) / len(rows) if rows else None,
            "max_abs_diff_pt": max((abs(r[f"{fmt}_diff_pt"]) for r in ran), default=None),
        }  # fmt: skip
    return out


def _pct(row: dict, key: str) -> str:
    return f"{row[key]:.2%}" if key in row else "failed"


def _pt(row: dict, key: str) -> str:
    return f"{row[key]:+.2f}" if key in row else "-"


def render(rows: list[dict], summary: dict, run: Path) -> str:
    lines = [
        f"exports of the Pareto configs of {run} (test split; diff = format - INT8 ONNX, pt)",
        f"{'config':<18} {'ONNX INT8':>9} {'TFLite':>8} {'diff':>6} {'argmax':>7} "
        f"{'QONNX':>8} {'diff':>6} {'argmax':>7}",
    ]
    for r in rows:
        lines.append(
            f"{r['config_id']:<18} {_pct(r, 'accuracy_onnx_int8'):>9} "
            f"{_pct(r, 'accuracy_tflite'):>8} {_pt(r, 'tflite_diff_pt'):>6} "
            f"{_pct(r, 'tflite_argmax_vs_onnx'):>7} {_pct(r, 'accuracy_qonnx'):>8} "
            f"{_pt(r, 'qonnx_diff_pt'):>6} {_pct(r, 'qonnx_argmax_vs_fake_quant'):>7}"
        )
        for fmt, error in r["errors"].items():
            lines.append(f"  {fmt} failed: {error}")
    lines.append("(argmax: TFLite vs INT8 ONNX; QONNX vs the fake-quant model)")
    for fmt in ("tflite", "qonnx"):
        s = summary[fmt]
        lines.append(
            f"{fmt}: loaded and ran {s['ran']}/{summary['configs']}, within ±{TOLERANCE_PT} pt "
            f"of INT8 ONNX {s['within_tolerance']}/{summary['configs']}"
            + (f" (max |diff| {s['max_abs_diff_pt']:.2f} pt)" if s["ran"] else "")
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo", help="run directory")
    parser.add_argument("--top", type=int, default=None, help="at most K Pareto configs")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench-results" / "bench_export_formats.json",
        help="JSON results file (default: bench-results/bench_export_formats.json)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    import torch

    from lowbit.search.validate import targets_of_run

    torch.set_num_threads(1)
    targets, summary = targets_of_run(args.run, top=args.top)
    targets = [t for t in targets if t.source == "pareto"]
    finetune = int((summary.get("evaluator") or {}).get("finetune_steps", 0) or 0)
    with tempfile.TemporaryDirectory(prefix="lowbit-export-formats-") as tmp:
        rows = [measure(t, finetune=finetune, work=Path(tmp)) for t in targets]
    result = summarize(rows)
    sys.stdout.write(render(rows, result, args.run))
    from importlib.metadata import version

    payload = {
        "benchmark": "bench_export_formats",
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("ai-edge-litert", "qonnx", "onnxruntime")},
        "run": str(args.run),
        "model": summary["model"],
        "hardware": (summary.get("hardware") or {}).get("name"),
        "tolerance_pt": TOLERANCE_PT,
        "summary": result,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(payload, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
