"""One config of ``bench_export_formats.py``: exported in the three formats (each checked in
its runtime on the test split by the export itself), then the written TFLite and QONNX files
loaded from disk and run again (LiteRT's builtin kernels, LiteRT's default XNNPACK delegate
for comparison, qonnx's executor)."""

from __future__ import annotations

import time
from pathlib import Path

#: LiteRT batch for the XNNPACK run
_BATCH = 250


def _xnnpack_logits(path: Path, entry: dict, xn):
    """Logits of the ``.tflite`` file at ``path`` in LiteRT's default CPU path (XNNPACK)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    xs = xn.transpose(0, 2, 3, 1) if xn.ndim == 4 else xn
    if entry["io"] == "int8":
        s, z = entry["input"]["scale"], entry["input"]["zero_point"]
        xs = np.clip(np.round(xs / np.float32(s)) + z, -128, 127).astype(np.int8)
    logits = []
    for start in range(0, len(xs), _BATCH):
        chunk = np.ascontiguousarray(xs[start : start + _BATCH])
        interp.resize_tensor_input(inp["index"], list(chunk.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)
        if entry["io"] == "int8":
            y = (y - entry["output"]["zero_point"]) * entry["output"]["scale"]
        logits.append(y.reshape(len(chunk), -1))
    return np.concatenate(logits)


def from_disk(out_dir: Path, deploy: dict, compressed) -> tuple[dict, dict]:
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
            content=(out_dir / deploy["files"]["tflite"]).read_bytes(),
            io=entry["io"],
            input=entry["input"],
            output=entry["output"],
            logits_grid=(),
            operators={},
            probes={},
        )
        return run_tflite(model, xn)[0]

    def xnnpack_logits():
        return _xnnpack_logits(out_dir / deploy["files"]["tflite"], deploy["tflite"], xn)

    def qonnx_logits():
        model = onnx.load(out_dir / deploy["files"]["qonnx"])
        onnx.checker.check_model(model)
        return run_qonnx(model, xn)[0]

    found, errors = {}, {}
    runs = (("tflite", tflite_logits), ("tflite_xnnpack", xnnpack_logits), ("qonnx", qonnx_logits))
    for fmt, run in runs:
        if fmt.split("_")[0] not in deploy["files"]:
            continue
        try:
            found[fmt] = float((run().argmax(1) == labels).mean())
        except Exception as exc:  # noqa: BLE001 - a file that does not run is a result
            errors[f"{fmt} from file"] = f"{type(exc).__name__}: {exc}"
    return found, errors


def _export(compressed, out_dir: Path, calib, row: dict):
    """Export in the three formats; a TFLite model the exporter refuses (one line starting
    ``TFLite export:``) is recorded as refused and the other formats exported without it."""
    from lowbit.models.export.deploy import export_compressed
    from lowbit.models.export.onnx_quant import ExportError

    formats = ("onnx", "tflite", "qonnx")
    try:
        return export_compressed(
            compressed, out_dir=out_dir, check=True, formats=formats, calib=calib
        )
    except ExportError as exc:
        if not str(exc).startswith("TFLite export:"):
            raise
        row["errors"]["tflite"] = f"refused: {exc}"
    return export_compressed(compressed, out_dir=out_dir, check=True, formats=("onnx", "qonnx"))


def measure(target, *, finetune: int, work: Path) -> dict:
    """Export ``target`` (a :class:`lowbit.models.hostcal.measure.ConfigTarget`) in all
    three formats (each checked in its runtime on the test split), then load and run the
    written files."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.export.calib_subset import calibration_inputs
    from lowbit.models.export.deploy import build_compressed

    started = time.perf_counter()
    steps = finetune if target.qat_steps is None else target.qat_steps
    row: dict = {
        "config_id": target.config_id,
        "source": target.source,
        "method": target.method,
        "errors": {},
    }
    base, compressed = build_compressed(
        target.model,
        CompressionPlan.from_dict(target.plan),
        seed=target.seed,
        finetune_steps=steps,
        qat_seed=target.qat_seed,
        calib_samples=target.calib_samples,
        calib_seed=target.calib_seed,
    )
    calib = calibration_inputs(base, samples=target.calib_samples, seed=target.calib_seed)
    out_dir = work / target.config_id.replace(":", "-")
    try:
        result = _export(compressed, out_dir, calib, row)
    except Exception as exc:  # noqa: BLE001 - a failed export is a row, not a crash
        row["errors"]["export"] = f"{type(exc).__name__}: {exc}"
        return row
    deploy = result.deploy
    onnx_check = deploy["check"]
    row.update(
        {
            "accuracy_onnx_int8": onnx_check["accuracy_int8"],
            "accuracy_fake_quant": onnx_check["accuracy_fake_quant"],
            "onnx_argmax_vs_fake_quant": onnx_check["argmax_agreement"],
        }
    )
    if "tflite" in deploy:
        tfl = deploy["tflite"]["check"]
        row.update(
            {
                "accuracy_tflite": tfl["accuracy_tflite"],
                "tflite_argmax_vs_onnx": tfl["argmax_agreement"],
                "tflite_min_code_agreement_vs_onnx": tfl["min_code_agreement"],
                "tflite_operators": deploy["tflite"]["operators"],
            }
        )
    q = deploy["qonnx"]["check"]
    row.update(
        {
            "accuracy_qonnx": q["accuracy_qonnx"],
            "qonnx_argmax_vs_fake_quant": q["argmax_agreement"],
            "qonnx_min_code_agreement_vs_fake_quant": q["min_code_agreement"],
            "qonnx_code_agreement": q["code_agreement"],
            "samples": q["samples"],
        }
    )
    for fmt in ("tflite", "qonnx"):
        if f"accuracy_{fmt}" in row:
            row[f"{fmt}_diff_pt"] = 100 * (row[f"accuracy_{fmt}"] - row["accuracy_onnx_int8"])
    disk, errors = from_disk(out_dir, deploy, compressed)
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
