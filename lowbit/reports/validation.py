"""The report's validation section, from ``validation.json`` (``lowbit validate``).

``lowbit validate`` (search/validate.py) writes per batch size (``metrics["b1"]``, ...) the
rank correlations and percentage errors of simulated vs measured INT8 latency, and one row
per configuration (``configs``: ``simulated_ms_b1``, ``measured_int8_ms_b1``, accuracies).
The section shows the metrics, a scatter of simulated vs measured latency and the rows.
Keys it does not find are shown as "-", so an older or newer file still renders.
"""

from __future__ import annotations

import math
from typing import Any

from .html import Raw, esc, img, section, table
from .plots import validation_png

__all__ = ["validation_section", "validation_scatter_png"]


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if _finite(value) else "-"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pct(value: Any) -> str:
    """A fraction (0-1) or a percentage as ``"97.2%"``."""
    if _finite(value):
        return f"{100 * value:.2f}%" if abs(value) <= 1.0 else f"{value:.2f}%"
    return "-"


def _batches(validation: dict[str, Any]) -> list[str]:
    metrics = validation.get("metrics")
    return [k for k in metrics if k.startswith("b")] if isinstance(metrics, dict) else []


def _latency_series(
    validation: dict[str, Any], *, with_spearman: bool = False
) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """Per batch size: its name and the (config id, simulated ms, measured ms) points that
    have both latencies; with ``with_spearman`` the name carries the batch's Spearman."""
    rows = [r for r in validation.get("configs", []) if isinstance(r, dict)]
    series = []
    for b in _batches(validation):
        points = [
            (r.get("config_id", "?"), r.get(f"simulated_ms_{b}"), r.get(f"measured_int8_ms_{b}"))
            for r in rows
        ]
        points = [
            (str(label), float(x), float(y))
            for label, x, y in points
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x > 0 and y > 0
        ]
        metrics = validation["metrics"][b]
        rho = metrics.get("spearman") if with_spearman and isinstance(metrics, dict) else None
        name = f"batch {b[1:]}" + (f" (Spearman {rho:.2f})" if _finite(rho) else "")
        if points:
            series.append((name, points))
    return series


def _scatter(series: list[tuple[str, list[tuple[str, float, float]]]]) -> bytes:
    return validation_png(
        series,
        x_label="simulated latency, host profile (ms)",
        y_label="measured INT8 latency, ONNX Runtime (ms)",
        title="Simulated vs measured latency",
    )


def validation_scatter_png(validation: dict[str, Any]) -> bytes:
    """``validation.png`` of ``lowbit validate``: the report's scatter of simulated vs
    measured latency, each batch size labelled with its Spearman rank correlation."""
    return _scatter(_latency_series(validation, with_spearman=True))


def validation_section(validation: dict[str, Any]) -> Raw:
    """The "Simulated vs measured" section (module docstring)."""
    rows = [r for r in validation.get("configs", []) if isinstance(r, dict)]
    batches = _batches(validation)
    metric_rows = []
    for b in batches:
        m = validation["metrics"][b]
        for label, data in (
            (f"batch {b[1:]}", m),
            (f"batch {b[1:]}, measurement vs itself", m.get("repeatability")),
        ):
            if not isinstance(data, dict):
                continue
            speed = (m.get("int8_speedup_vs_fp32") or {}) if data is m else {}
            metric_rows.append(
                [
                    label,
                    _num(data.get("n"), "d"),
                    _num(data.get("spearman"), ".3f"),
                    _num(data.get("kendall"), ".3f"),
                    _num(data.get("mape_pct"), ".1f"),
                    _pct(data.get("within_10pct")),
                    _pct(data.get("within_15pct")),
                    f"{_num(speed.get('median'), '.2f')}x" if speed else "",
                ]
            )
    parts: list[Raw] = []
    host = validation.get("host", {})
    cpu = host.get("cpu", {}) if isinstance(host, dict) else {}
    cpu_name = (cpu.get("model_name") or cpu.get("model") or "") if isinstance(cpu, dict) else ""
    intro = (
        "Real INT8 latency (ONNX Runtime, 1 thread) of exported configurations against the "
        "simulator's latency on the host CPU profile"
        + (f" ({cpu_name})" if cpu_name else "")
        + ". 'Measurement vs itself' compares two independent halves of the timing runs: "
        "the ceiling any latency model can reach on this machine at this load."
    )
    if metric_rows:
        parts.append(
            table(
                [
                    "",
                    "configs",
                    "Spearman",
                    "Kendall",
                    "MAPE %",
                    "within ±10%",
                    "within ±15%",
                    "INT8 vs FP32 (median)",
                ],
                metric_rows,
                numeric=range(1, 8),
                caption="Simulated vs measured latency",
            )
        )
    series = _latency_series(validation)
    if series:
        parts.append(img(_scatter(series), alt="simulated vs measured latency scatter"))
    accuracy = validation.get("accuracy", {})
    if isinstance(accuracy, dict) and "max_abs_diff_points" in accuracy:
        parts.append(
            Raw(
                f'<p class="note">Largest |INT8 − fake-quant| test accuracy difference: '
                f"{esc(_num(accuracy['max_abs_diff_points'], '.2f'))} points.</p>"
            )
        )
    b1 = batches[0] if batches else "b1"
    parts.append(
        table(
            [
                "config",
                "method",
                "fake-quant acc",
                "INT8 acc",
                "Δ points",
                f"simulated ms ({b1})",
                f"measured ms ({b1})",
                "error %",
                "INT8 vs FP32",
            ],
            [
                [
                    r.get("config_id", "?"),
                    r.get("method", ""),
                    _pct(r.get("accuracy_fake_quant")),
                    _pct(r.get("accuracy_int8")),
                    _num(r.get("accuracy_diff_points"), "+.2f"),
                    _num(r.get(f"simulated_ms_{b1}"), ".4g"),
                    _num(r.get(f"measured_int8_ms_{b1}"), ".4g"),
                    _num(r.get(f"sim_error_pct_{b1}"), "+.1f"),
                    f"{_num(r.get(f'int8_speedup_vs_fp32_{b1}'), '.2f')}x",
                ]
                for r in rows
            ],
            numeric=range(2, 9),
            caption="Per configuration",
        )
    )
    return section("validation", "Simulated vs measured (host CPU)", *parts, intro=intro)
