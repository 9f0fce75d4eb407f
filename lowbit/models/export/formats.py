"""The export formats: what ``lowbit export --format`` can write and what consumes each.

``onnx`` (``model.int8.onnx`` + ``model.fp32.onnx``) is always written: it is the reference
the other formats are checked against. The others are built in memory from the same integer
model, checked in their own runtime and only then written (:func:`build_artifacts`):

- ``tflite``: :mod:`lowbit.models.export.tflite` (LiteRT, TensorFlow Lite Micro), plus Vela's
  Ethos-U compilation when the target is an Ethos-U NPU (:mod:`lowbit.models.export.vela`);
- ``qonnx``: :mod:`lowbit.models.export.qonnx` (QONNX ``Quant`` nodes at each layer's bits,
  for FINN / hls4ml).

Both need the optional ``edge`` extra (``pip install 'lowbit[edge]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lowbit.models.export._qdq_grids import ExportError

__all__ = [
    "FORMATS",
    "Artifacts",
    "ExportFormat",
    "build_artifacts",
    "check_extras",
    "parse_formats",
]


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """One export format: its files, who consumes it, the optional extra it needs."""

    name: str
    files: tuple[str, ...]
    consumer: str
    extra: str | None = None


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "onnx",
            ("model.int8.onnx", "model.fp32.onnx"),
            "ONNX Runtime (QDQ INT8, fused into integer kernels)",
        ),
        ExportFormat(
            "tflite",
            ("model.int8.tflite",),
            "LiteRT / TensorFlow Lite Micro; Vela compiles it for Ethos-U",
            "edge",
        ),
        ExportFormat(
            "qonnx",
            ("model.qonnx.onnx",),
            "QONNX executor, FINN and hls4ml (FPGA dataflow)",
            "edge",
        ),
    )
}


def parse_formats(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` validated and deduplicated, in the registry's order, ``onnx`` first."""
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format {unknown[0]!r} (valid: {', '.join(FORMATS)})")
    return tuple(n for n in FORMATS if n == "onnx" or n in names)


def check_extras(formats: Sequence[str], *, check: bool, vela: bool = False) -> None:
    """Fail early, in one line, when ``formats`` (their checks, Vela) need a missing extra."""
    from lowbit.models.export._extras import litert_schema, require_extra

    if "tflite" in formats:
        litert_schema()
        if check:
            require_extra(
                "ai_edge_litert.interpreter",
                package="ai-edge-litert",
                what="checking the TFLite model",
            )
        if vela:
            require_extra("ethosu.vela", package="ethos-u-vela", what="compiling for Ethos-U")
    if "qonnx" in formats and check:
        require_extra("qonnx.core.onnx_exec", package="qonnx", what="checking a QONNX model")


@dataclass(frozen=True, slots=True)
class Artifacts:
    """Files to write (path relative to the export directory → bytes) and deploy.json
    entries (``files`` names and one section per format)."""

    files: dict[str, bytes] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def build_artifacts(
    formats: Sequence[str],
    *,
    compressed: Any,
    qdq: Any,
    int8: Any,
    fp32: Any,
    quants: Sequence[Any],
    check: bool,
    tflite_io: str = "int8",
    vela: Any | None = None,
    sim: Any | None = None,
    calib: Any | None = None,
) -> Artifacts:
    """The non-ONNX artifacts of ``formats`` for ``compressed`` (its QDQ graph ``qdq``,
    deployed INT8 ONNX model ``int8``, plain float ONNX ``fp32`` and its layers' grids
    ``quants``), each checked in its runtime when ``check``.

    ``vela`` (a :class:`lowbit.models.export.vela.VelaTarget`) also compiles the TFLite model
    for Ethos-U; ``sim`` is lowbit's simulation of the plan on that profile (deploy.json
    shows both); ``calib`` (model inputs) calibrates the int16 grids a TFLite attention model
    adds (:func:`lowbit.models.export.tflite.build_tflite`)."""
    out = Artifacts()
    if "tflite" in formats:
        from lowbit.models.export.tflite import build_tflite, check_tflite

        model = build_tflite(compressed=compressed, qdq=qdq, io=tflite_io, calib=calib)
        name = FORMATS["tflite"].files[0]
        out.files[name] = model.content
        out.names["tflite"] = name
        entry: dict[str, Any] = {
            "io": model.io,
            "input": model.input,
            "output": model.output,
            "operators": model.operators,
            "weights": "int8 per channel",
            "activations": model.activations,
            "logits": "int16 (16x8 classifier)",
        }
        if check:
            entry["check"] = check_tflite(compressed=compressed, model=model, int8=int8, qdq=qdq)
        out.info["tflite"] = entry
        if vela is not None:
            from lowbit.models.export.vela import run_vela, vela_estimate

            result = run_vela(model.content, target=vela, name="model.int8")
            kept = {}
            for file, data in result.files.items():
                kind = (
                    "per_layer"
                    if file.endswith("per-layer.csv")
                    else ("summary" if "_summary_" in file else "tflite")
                )
                out.files[f"vela/{file}"] = data
                kept[kind] = f"vela/{file}"
            out.names["vela"] = kept["tflite"]
            out.info["vela"] = vela_estimate(result, files=kept, sim=sim)
    if "qonnx" in formats:
        from lowbit.models.export.qonnx import build_qonnx, check_qonnx

        model_q = build_qonnx(fp32=fp32, quants=quants)
        name = FORMATS["qonnx"].files[0]
        out.files[name] = model_q.SerializeToString()
        out.names["qonnx"] = name
        entry = {"operators": _census(model_q)}
        if check:
            entry["check"] = check_qonnx(compressed=compressed, model=model_q)
        out.info["qonnx"] = entry
    return out


def _census(model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
