"""TFLite and QONNX exports of a search run's Pareto configs, each run in its own runtime.

For every Pareto config of a run directory (default ``runs/demo``: the fashion-resnet-demo
search ``make demo`` runs) and the uniform baselines ``lowbit validate`` adds (W8A8, W4A8,
W2A8; a config with the effective settings of an earlier one is measured once and listed
under it), the config's model is built as the search built it
(:func:`lowbit.models.export.deploy.build_compressed`: its seed, QAT steps, calibration
subset) and exported in the three formats (:func:`export_compressed`, ``formats = onnx,
tflite, qonnx``, ``check=True``). The export's own checks run each format on the whole test
split: the INT8 ONNX model in ONNX Runtime against the fake-quant model, the TFLite model in
LiteRT against the INT8 ONNX model, the QONNX model in qonnx's own executor (batched,
:func:`lowbit.models.export.qonnx.run_qonnx`) against the fake-quant model, with per-layer
activation-code agreement. The written ``.tflite`` and QONNX files are then loaded from disk
into their runtimes and run on the test split again: "load and run" holds when both run and
give the accuracy of the export's check. The ``.tflite`` file also runs in LiteRT's default
XNNPACK delegate, for comparison (the check runs LiteRT's builtin kernels, the arithmetic of
TensorFlow Lite Micro).

Printed: per config the test accuracy of each format, TFLite's and QONNX's difference from
the INT8 ONNX model (points), TFLite's argmax agreement with the INT8 ONNX model, QONNX's
lowest per-layer code agreement with the fake-quant model, TFLite's accuracy with XNNPACK;
then the share of exports that loaded and ran and the share within ±0.5 pt of INT8 ONNX. A
format that fails to build, load or run counts as a failure (its error is recorded), not as
a crash of the benchmark. The JSON is rewritten after every config.

``--zoo MODEL`` measures a zoo model instead of a run: W8A8 and one mixed config
(:data:`MIXED_PLANS`). A model the TFLite writer refuses (an attention model: see
:mod:`lowbit.models.export._tflite_graph`) is exported as ONNX and QONNX, its refusal
recorded as its TFLite result.

Usage::

    .venv/bin/python benchmarks/bench_export_formats.py [--run runs/demo] [--top K]
        [--config ID ...] [--out bench-results/bench_export_formats.json]
    .venv/bin/python benchmarks/bench_export_formats.py --zoo fashion-mobilenet \
        --zoo fashion-vit --out bench-results/bench_export_formats_zoo.json
    .venv/bin/python benchmarks/bench_export_formats.py --render RESULTS.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: |accuracy difference| allowed against the INT8 ONNX export (issue 14), points
TOLERANCE_PT = 0.5
#: ``--zoo MODEL``: besides W8A8, one mixed config per model (sub-8-bit weights and
#: activations, pruned channels, a low-rank layer where the model has a fitting one)
MIXED_PLANS = {
    "fashion-mobilenet": {
        "_default": {"w_bits": 4, "a_bits": 8},
        "re:blocks\\.\\d+\\.dw": {"w_bits": 8, "a_bits": 8},
        "blocks.2.expand": {"w_bits": 4, "a_bits": 8, "keep": 0.75},
        "blocks.4.project": {"w_bits": 2, "a_bits": 4},
        "fc": {"w_bits": 4, "a_bits": 8, "rank_fraction": 0.5},
    },
    "fashion-vit": {
        "_default": {"w_bits": 4, "a_bits": 8},
        "re:blocks\\.\\d+\\.mlp\\.fc1": {"w_bits": 4, "a_bits": 8, "keep": 0.75},
        "blocks.1.attn.proj": {"w_bits": 2, "a_bits": 4},
        "blocks.3.mlp.fc2": {"w_bits": 4, "a_bits": 8, "rank_fraction": 0.5},
    },
}
#: calibration subset of ``--zoo`` configs: the demo search's (summary.json ``fidelity``)
ZOO_CALIB = {"calib_samples": 512, "calib_seed": 0}


def aliases(run: Path, targets: list, summary: dict) -> dict[str, list[str]]:
    """Measured config id → the run's other Pareto configs and uniform baselines with the
    same effective per-layer settings (``targets_of_run`` measures each setting once)."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.zoo import build
    from lowbit.search.config import load_config
    from lowbit.search.validate import UNIFORM_BASELINES

    net = build(summary["model"], seed=int(summary.get("seed", 0)))
    pin = bool((summary.get("evaluator") or {}).get("pin_first_last", False))
    measured = [(t.config_id, CompressionPlan.from_dict(t.plan).effective(net)) for t in targets]
    plans = {}
    for method in (summary.get("methods") or {}).values():
        for cid in method.get("pareto", []):
            plans.setdefault(cid, load_config(run / "configs" / f"{cid}.json").plan)
    for w, a in UNIFORM_BASELINES:
        plans[f"uniform-W{w}A{a}"] = CompressionPlan.uniform(
            w_bits=w, a_bits=a, pin_first_last=pin
        ).to_dict()
    out: dict[str, list[str]] = {cid: [] for cid, _ in measured}
    for cid, plan in plans.items():
        if cid in out:
            continue
        settings = CompressionPlan.from_dict(plan).effective(net)
        for mid, known in measured:
            if known == settings:
                out[mid].append(cid)
                break
    return out


def zoo_targets(model: str) -> list:
    """W8A8 and :data:`MIXED_PLANS`' mixed config of zoo ``model`` (seed 0, no QAT)."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.search.latency import ConfigTarget

    plans = {"W8A8": CompressionPlan.uniform(w_bits=8, a_bits=8, pin_first_last=False).to_dict()}
    if model in MIXED_PLANS:
        plans["mixed"] = {"version": 1, "pin_first_last": False, "layers": MIXED_PLANS[model]}
    return [
        ConfigTarget(f"{model}:{label}", "zoo", label, model, 0, plan, qat_steps=0, **ZOO_CALIB)
        for label, plan in plans.items()
    ]


def _tflite_refusal(compressed) -> str | None:
    """The TFLite writer's one-line refusal of ``compressed`` (None: it converts)."""
    from lowbit.models.export._qdq_grids import ExportError
    from lowbit.models.export._tflite_graph import convert
    from lowbit.models.export.deploy import deploy_copy, to_onnx
    from lowbit.models.export.onnx_quant import quantize_graph

    plain, quants, _ = deploy_copy(compressed)
    qdq, _ = quantize_graph(to_onnx(plain, input_shape=tuple(compressed.input_shape)), quants)
    try:
        convert(qdq, input_shape=tuple(compressed.input_shape), logits_grid=(1.0, 0, "int16"))
    except ExportError as exc:
        return str(exc)
    return None


def _from_disk(out_dir: Path, deploy: dict, compressed) -> tuple[dict, dict]:
    """(accuracy on the test split, error) per format of the written TFLite and QONNX files,
    each loaded from disk into its runtime: LiteRT's builtin kernels (what the export's check
    runs) and, for comparison, LiteRT's default XNNPACK delegate; qonnx's executor."""
    import onnx

    from lowbit.models.accuracy import as_model_input
    from lowbit.models.data import load_split
    from lowbit.models.export.qonnx import run_qonnx
    from lowbit.models.export.tflite import TFLiteModel, run_tflite

    x, y = load_split(compressed.dataset, "test")
    xn, labels = as_model_input(compressed, x).numpy(), y.numpy()

    def tflite_logits():
        entry = deploy["tflite"]
        model = TFLiteModel(
            content=(out_dir / deploy["files"]["tflite"]).read_bytes(), io=entry["io"],
            input=entry["input"], output=entry["output"], logits_grid=(), operators={},
            probes={},
        )  # fmt: skip
        return run_tflite(model, xn)[0]

    def xnnpack_logits():  # LiteRT's default CPU path: the XNNPACK delegate
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        entry = deploy["tflite"]
        interp = Interpreter(model_path=str(out_dir / deploy["files"]["tflite"]), num_threads=1)
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        xs = xn.transpose(0, 2, 3, 1) if xn.ndim == 4 else xn
        if entry["io"] == "int8":
            s, z = entry["input"]["scale"], entry["input"]["zero_point"]
            xs = np.clip(np.round(xs / np.float32(s)) + z, -128, 127).astype(np.int8)
        logits = []
        for start in range(0, len(xs), 250):
            chunk = np.ascontiguousarray(xs[start : start + 250])
            interp.resize_tensor_input(inp["index"], list(chunk.shape))
            interp.allocate_tensors()
            interp.set_tensor(inp["index"], chunk)
            interp.invoke()
            y = interp.get_tensor(out["index"]).astype(np.float32)
            if entry["io"] == "int8":
                y = (y - entry["output"]["zero_point"]) * entry["output"]["scale"]
            logits.append(y.reshape(len(chunk), -1))
        return np.concatenate(logits)

    def qonnx_logits():
        model = onnx.load(out_dir / deploy["files"]["qonnx"])
        onnx.checker.check_model(model)
        return run_qonnx(model, xn)[0]

    found, errors = {}, {}
    runs = (("tflite", tflite_logits), ("tflite_xnnpack", xnnpack_logits),
            ("qonnx", qonnx_logits))  # fmt: skip
    for fmt, run in runs:
        if fmt.split("_")[0] not in deploy["files"]:
            continue
        try:
            found[fmt] = float((run().argmax(1) == labels).mean())
        except Exception as exc:  # noqa: BLE001 - a file that does not run is a result
            errors[f"{fmt} from file"] = f"{type(exc).__name__}: {exc}"
    return found, errors


def measure(target, *, finetune: int, work: Path) -> dict:
    """Export ``target`` (a :class:`lowbit.search.latency.ConfigTarget`) in all three formats
    (each checked in its runtime on the test split), then load and run the written files."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.export.deploy import build_compressed, export_compressed

    started = time.perf_counter()
    steps = finetune if target.qat_steps is None else target.qat_steps
    row: dict = {"config_id": target.config_id, "source": target.source,
                 "method": target.method, "errors": {}}  # fmt: skip
    _, compressed = build_compressed(
        target.model, CompressionPlan.from_dict(target.plan), seed=target.seed,
        finetune_steps=steps, qat_seed=target.qat_seed, calib_samples=target.calib_samples,
        calib_seed=target.calib_seed,
    )  # fmt: skip
    out_dir = work / target.config_id.replace(":", "-")
    refusal = _tflite_refusal(compressed)
    formats = ("onnx", "qonnx") if refusal else ("onnx", "tflite", "qonnx")
    if refusal:
        row["errors"]["tflite"] = f"refused: {refusal}"
    try:
        result = export_compressed(compressed, out_dir=out_dir, check=True, formats=formats)
    except Exception as exc:  # noqa: BLE001 - a failed export is a row, not a crash
        row["errors"]["export"] = f"{type(exc).__name__}: {exc}"
        return row
    deploy = result.deploy
    onnx_check = deploy["check"]
    row.update({"accuracy_onnx_int8": onnx_check["accuracy_int8"],
                "accuracy_fake_quant": onnx_check["accuracy_fake_quant"],
                "onnx_argmax_vs_fake_quant": onnx_check["argmax_agreement"]})  # fmt: skip
    if "tflite" in deploy:
        tfl = deploy["tflite"]["check"]
        row.update({"accuracy_tflite": tfl["accuracy_tflite"],
                    "tflite_argmax_vs_onnx": tfl["argmax_agreement"],
                    "tflite_min_code_agreement_vs_onnx": tfl["min_code_agreement"]})  # fmt: skip
    q = deploy["qonnx"]["check"]
    row.update({
        "accuracy_qonnx": q["accuracy_qonnx"],
        "qonnx_argmax_vs_fake_quant": q["argmax_agreement"],
        "qonnx_min_code_agreement_vs_fake_quant": q["min_code_agreement"],
        "qonnx_code_agreement": q["code_agreement"],
        "samples": q["samples"],
    })  # fmt: skip
    for fmt in ("tflite", "qonnx"):
        if f"accuracy_{fmt}" in row:
            row[f"{fmt}_diff_pt"] = 100 * (row[f"accuracy_{fmt}"] - row["accuracy_onnx_int8"])
    disk, errors = _from_disk(out_dir, deploy, compressed)
    row["errors"].update(errors)
    row["accuracy_from_file"] = disk
    if "tflite_xnnpack" in disk:
        row["accuracy_tflite_xnnpack"] = disk["tflite_xnnpack"]
        row["tflite_xnnpack_diff_pt"] = 100 * (disk["tflite_xnnpack"] - row["accuracy_onnx_int8"])
    row["loaded_and_ran"] = {
        fmt: fmt in disk and disk[fmt] == row.get(f"accuracy_{fmt}") for fmt in ("tflite", "qonnx")
    }
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def summarize(rows: list[dict]) -> dict:
    """Per format: exports that loaded and ran, and those within ±0.5 pt of INT8 ONNX."""
    out = {"configs": len(rows)}
    for fmt in ("tflite", "qonnx"):
        ran = [r for r in rows if (r.get("loaded_and_ran") or {}).get(fmt)]
        within = [r for r in ran if abs(r[f"{fmt}_diff_pt"]) <= TOLERANCE_PT + 1e-9]
        refused = [r for r in rows if _refused(r, fmt)]
        out[fmt] = {
            "ran": len(ran), "ran_share": len(ran) / len(rows) if rows else None,
            "refused": len(refused),
            "within_tolerance": len(within),
            "within_share": len(within) / len(rows) if rows else None,
            "max_abs_diff_pt": max((abs(r[f"{fmt}_diff_pt"]) for r in ran), default=None),
        }  # fmt: skip
    return out


def _refused(row: dict, fmt: str) -> bool:
    """The exporter refused ``fmt`` for this model in one line (a ViT's TFLite model)."""
    return str(row["errors"].get(fmt, "")).startswith("refused:")


def _ran(row: dict) -> bool:
    """Every format the exporter did not refuse loaded from its file and ran."""
    ok = row.get("loaded_and_ran") or {}
    return bool(ok) and all(v for fmt, v in ok.items() if not _refused(row, fmt))


def _pct(row: dict, key: str) -> str:
    if key in row:
        return f"{row[key]:.2%}"
    return "refused" if _refused(row, "tflite") and "tflite" in key else "failed"


def _pt(row: dict, key: str) -> str:
    return f"{row[key]:+.2f}" if key in row else "-"


def render(rows: list[dict], summary: dict, run, same: dict[str, list[str]]) -> str:
    lines = [
        f"exports of the configs of {run} (test split; diff = format - INT8 ONNX, pt)",
        f"{'config':<24} {'ONNX INT8':>9} {'TFLite':>8} {'diff':>6} {'argmax':>7} "
        f"{'QONNX':>8} {'diff':>6} {'codes':>7} {'ran':>4} {'XNNPACK':>8} {'diff':>6}",
    ]
    for r in rows:
        lines.append(
            f"{r['config_id']:<24} {_pct(r, 'accuracy_onnx_int8'):>9} "
            f"{_pct(r, 'accuracy_tflite'):>8} {_pt(r, 'tflite_diff_pt'):>6} "
            f"{_pct(r, 'tflite_argmax_vs_onnx'):>7} {_pct(r, 'accuracy_qonnx'):>8} "
            f"{_pt(r, 'qonnx_diff_pt'):>6} "
            f"{_pct(r, 'qonnx_min_code_agreement_vs_fake_quant'):>7} "
            f"{'yes' if _ran(r) else 'NO':>4} "
            f"{_pct(r, 'accuracy_tflite_xnnpack'):>8} {_pt(r, 'tflite_xnnpack_diff_pt'):>6}"
        )
        if same.get(r["config_id"]):
            lines.append(f"  same settings: {', '.join(same[r['config_id']])}")
        for fmt, error in r["errors"].items():
            lines.append(f"  {fmt} {'' if _refused(r, fmt) else 'failed: '}{error}")
    lines.append(
        "(argmax: TFLite vs INT8 ONNX; codes: QONNX vs the fake-quant model, lowest per-layer "
        "share of equal activation codes; ran: every file not refused loaded from disk and ran; "
        "XNNPACK: the TFLite file in LiteRT's default XNNPACK delegate, for comparison)"
    )
    for fmt in ("tflite", "qonnx"):
        s = summary[fmt]
        lines.append(
            f"{fmt}: loaded and ran {s['ran']}/{summary['configs']}, within ±{TOLERANCE_PT} pt "
            f"of INT8 ONNX {s['within_tolerance']}/{summary['configs']}"
            + (f" (max |diff| {s['max_abs_diff_pt']:.2f} pt)" if s["ran"] else "")
            + (f", refused {s['refused']}" if s.get("refused") else "")
        )
    return "\n".join(lines) + "\n"


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo", help="run directory")
    parser.add_argument("--top", type=int, default=None, help="at most K Pareto configs")
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        metavar="ID",
        help="only this config id (repeatable)",
    )
    parser.add_argument("--zoo", action="append", default=None, metavar="MODEL",
                        help="instead of a run: zoo MODEL at W8A8 and one mixed config "
                             "(repeatable)")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench-results" / "bench_export_formats.json",
        help="JSON results file (default: bench-results/bench_export_formats.json)",
    )  # fmt: skip
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="print the table of an earlier results file and exit")  # fmt: skip
    args = parser.parse_args(argv)
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        run = saved["run"] or "the zoo"
        rows = saved["results"]
        sys.stdout.write(render(rows, summarize(rows), run, saved["same_settings"]))
        return 0
    import torch

    from lowbit.search.validate import targets_of_run

    torch.set_num_threads(1)
    if args.zoo:
        targets = [t for model in args.zoo for t in zoo_targets(model)]
        summary, same = {"model": ", ".join(args.zoo)}, {}
    else:
        targets, summary = targets_of_run(args.run, top=args.top)
        same = aliases(args.run, targets, summary)
    if args.config:
        unknown = sorted(set(args.config) - {t.config_id for t in targets})
        if unknown:
            raise SystemExit(f"--config {unknown[0]}: not a measured config of {args.run}")
        targets = [t for t in targets if t.config_id in args.config]
    finetune = int((summary.get("evaluator") or {}).get("finetune_steps", 0) or 0)
    from importlib.metadata import version

    payload = {
        "benchmark": "bench_export_formats",
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("ai-edge-litert", "qonnx", "onnxruntime")},
        "run": None if args.zoo else str(args.run),
        "zoo_plans": {m: MIXED_PLANS.get(m) for m in args.zoo} if args.zoo else None,
        "model": summary["model"],
        "hardware": (summary.get("hardware") or {}).get("name"),
        "tolerance_pt": TOLERANCE_PT,
        "same_settings": same,
    }
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lowbit-export-formats-") as tmp:
        for target in targets:
            rows.append(measure(target, finetune=finetune, work=Path(tmp)))
            print(f"{target.config_id}: done in {rows[-1].get('seconds', '-')} s", flush=True)
            _write(args.out, {**payload, "summary": summarize(rows), "results": rows})
    result = summarize(rows)
    sys.stdout.write(render(rows, result, "the zoo" if args.zoo else args.run, same))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
