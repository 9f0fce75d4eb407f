"""The summary and the printed table of ``bench_export_formats.py``'s results."""

from __future__ import annotations

#: |accuracy difference| allowed against the INT8 ONNX export (issue 14), points
TOLERANCE_PT = 0.5


def summarize(rows: list[dict]) -> dict:
    """Per format: exports that loaded and ran, and those within ±0.5 pt of INT8 ONNX."""
    out = {"configs": len(rows)}
    for fmt in ("tflite", "qonnx"):
        ran = [r for r in rows if (r.get("loaded_and_ran") or {}).get(fmt)]
        within = [r for r in ran if abs(r[f"{fmt}_diff_pt"]) <= TOLERANCE_PT + 1e-9]
        refused = [r for r in rows if refused_format(r, fmt)]
        out[fmt] = {
            "ran": len(ran),
            "ran_share": len(ran) / len(rows) if rows else None,
            "refused": len(refused),
            "within_tolerance": len(within),
            "within_share": len(within) / len(rows) if rows else None,
            "max_abs_diff_pt": max((abs(r[f"{fmt}_diff_pt"]) for r in ran), default=None),
        }
    return out


def refused_format(row: dict, fmt: str) -> bool:
    """The exporter refused ``fmt`` for this config in one line."""
    return str(row["errors"].get(fmt, "")).startswith("refused:")


def _ran(row: dict) -> bool:
    """Every format the exporter did not refuse loaded from its file and ran."""
    ok = row.get("loaded_and_ran") or {}
    return bool(ok) and all(v for fmt, v in ok.items() if not refused_format(row, fmt))


def _pct(row: dict, key: str) -> str:
    if key in row:
        return f"{row[key]:.2%}"
    return "refused" if refused_format(row, "tflite") and "tflite" in key else "failed"


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
            lines.append(f"  {fmt} {'' if refused_format(r, fmt) else 'failed: '}{error}")
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
