"""TFLite and QONNX exports of a search run's Pareto configs, each run in its own runtime.

For every Pareto config of a run directory (default ``runs/demo``: the fashion-resnet-demo
search ``make demo`` runs) and the uniform baselines ``lowbit validate`` adds (W8A8, W4A8,
W2A8; a config with the effective settings of an earlier one is measured once and listed
under it), the config's model is built as the search built it
(:func:`lowbit.models.export.deploy.build_compressed`: its seed, QAT steps, calibration
subset) and exported in the three formats (:func:`export_compressed`, ``formats = onnx,
tflite, qonnx``, ``check=True``, the config's calibration images for the grids the TFLite
model of an attention model adds). The export's own checks run each format on the whole
test split: the INT8 ONNX model in ONNX Runtime against the fake-quant model, the TFLite
model in LiteRT against the INT8 ONNX model, the QONNX model in qonnx's own executor
(batched, :func:`lowbit.models.export.qonnx.run_qonnx`) against the fake-quant model, with
per-layer activation-code agreement. The written ``.tflite`` and QONNX files are then
loaded from disk into their runtimes and run on the test split again: "load and run" holds
when both run and give the accuracy of the export's check. The ``.tflite`` file also runs
in LiteRT's default XNNPACK delegate, for comparison (the check runs LiteRT's builtin
kernels, the arithmetic of TensorFlow Lite Micro).

Printed: per config the test accuracy of each format, TFLite's and QONNX's difference from
the INT8 ONNX model (points), TFLite's argmax agreement with the INT8 ONNX model, QONNX's
lowest per-layer code agreement with the fake-quant model, TFLite's accuracy with XNNPACK;
then the share of exports that loaded and ran and the share within ±0.5 pt of INT8 ONNX. A
format that fails to build, load or run counts as a failure (its error is recorded), not as
a crash of the benchmark; a TFLite model the exporter refuses in one line is listed as
refused. The JSON is rewritten after every config.

``--model MODEL`` measures a zoo model instead of a run: W8A8 and one mixed config
(``MIXED_PLANS`` in ``bench_export_formats_targets.py``; ``fashion-mobilenet`` and
``fashion-vit``, whose TFLite model computes the ViT's float LayerNorm, softmax, GELU and
residual stream as int16 ops, :mod:`lowbit.models.export._tflite_vit`).

The work is split by meaning: ``bench_export_formats_targets.py`` (which configs),
``bench_export_formats_measure.py`` (one config: export, checks, runs from disk),
``bench_export_formats_table.py`` (summary and table); this file is the command line.

Usage::

    .venv/bin/python benchmarks/bench_export_formats.py [--run runs/demo] [--top K]
        [--config ID ...] [--out bench-results/bench_export_formats.json]
    .venv/bin/python benchmarks/bench_export_formats.py --model fashion-mobilenet \
        --model fashion-vit --out bench-results/bench_export_formats_zoo.json
    .venv/bin/python benchmarks/bench_export_formats.py --render RESULTS.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

from bench_export_formats_measure import measure
from bench_export_formats_table import TOLERANCE_PT, render, summarize
from bench_export_formats_targets import MIXED_PLANS, aliases, zoo_targets

ROOT = Path(__file__).resolve().parent.parent


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def _parser() -> argparse.ArgumentParser:
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
    parser.add_argument(
        "--model",
        "--zoo",
        dest="model",
        action="append",
        default=None,
        metavar="MODEL",
        help="instead of a run: zoo MODEL at W8A8 and one mixed config (repeatable; e.g. "
        "fashion-mobilenet, fashion-vit)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench-results" / "bench_export_formats.json",
        help="JSON results file (default: bench-results/bench_export_formats.json)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="print the table of an earlier results file and exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        rows = saved["results"]
        sys.stdout.write(
            render(rows, summarize(rows), saved["run"] or "the zoo", saved["same_settings"])
        )
        return 0
    import torch

    from lowbit.search.validate import targets_of_run

    torch.set_num_threads(1)
    if args.model:
        targets = [t for model in args.model for t in zoo_targets(model)]
        summary, same = {"model": ", ".join(args.model)}, {}
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
        "run": None if args.model else str(args.run),
        "zoo_plans": {m: MIXED_PLANS.get(m) for m in args.model} if args.model else None,
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
    sys.stdout.write(render(rows, summarize(rows), "the zoo" if args.model else args.run, same))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
