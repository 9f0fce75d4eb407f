"""The report's view of one selected configuration: its hardware (co-design), per-layer
settings, latency breakdown, roofline and per-layer table."""

from __future__ import annotations

import math
from typing import Any

from . import layer_plots
from ._figure import TimeUnit
from .html import Raw, esc, img, link, table
from .layers import ConfigDetail, config_detail, hardware_of
from .rundata import RunData

__all__ = ["config_block", "fmt_time", "pct", "short_hw"]


def fmt_time(ms: float, unit: TimeUnit) -> str:
    return f"{ms * unit.per_ms:.4g} {unit.label}" if math.isfinite(ms) else "-"


def pct(value: float) -> str:
    return f"{100 * value:.2f}%" if math.isfinite(value) else "-"


def _hardware_table(run: RunData, config: dict[str, Any]) -> Raw | None:
    codesign = run.summary.get("co_design")
    hw = config.get("hardware", {})
    if not codesign or "overrides" not in hw:
        return None
    base = codesign.get("base", {})
    rows = [
        [
            key,
            f"{value:g}",
            f"{base.get(key, float('nan')):g}",
            ("changed", "good") if value != base.get(key) else "",
        ]
        for key, value in hardware_of(config).items()
    ]
    area = hw.get("area") or {}
    if area:
        rows.append(
            [
                "area (mm²)",
                f"{area['total_mm2']:.3f}",
                f"{codesign.get('base_area_mm2', float('nan')):.3f}",
                f"PEs {area['pe_mm2']:.2f} + SRAM {area['sram_mm2']:.2f} + off-chip "
                f"{area['dram_mm2']:.2f} + base {area['base_mm2']:.2f}",
            ]
        )
    return table(["hardware parameter", "chosen", "profile as given", ""], rows, numeric=(1, 2))


def _layer_table(detail: ConfigDetail, unit: TimeUnit) -> Raw:
    def bits(v: int | None) -> str:
        return "FP32" if v is None or v >= 32 else str(v)

    rows = []
    for layer in detail.layers:
        compute = layer.macs > 0
        rank = "-" if not compute else ("full" if layer.rank is None else f"{layer.rank}")
        if compute and layer.rank is not None and layer.full_rank:
            rank += f" / {layer.full_rank}"
        ms = layer.total_cycles / detail.clock_hz * 1e3 if detail.clock_hz else float("nan")
        rows.append(
            [
                layer.name,
                layer.op,
                bits(layer.w_bits) if compute else "-",
                bits(layer.a_bits) if compute else "-",
                f"{layer.keep:.3g}" if compute else "-",
                layer.nm if compute else "-",
                rank,
                f"{layer.macs:,}" if compute else "-",
                f"{layer.compute_cycles:,}" if detail.resimulated else "-",
                f"{layer.stall_cycles:,}" if detail.resimulated else "-",
                f"{layer.overhead_cycles:,}" if detail.resimulated else "-",
                fmt_time(ms, unit),
                layer.bound or "-",
            ]
        )
    return table(
        [
            "layer",
            "op",
            "w bits",
            "a bits",
            "keep",
            "N:M",
            "rank",
            "MACs",
            "compute cyc",
            "stall cyc",
            "overhead cyc",
            "latency",
            "bound",
        ],
        rows,
        numeric=range(2, 12),
    )


def config_block(run: RunData, cid: str, unit: TimeUnit, config_href: str) -> Raw:
    config = run.configs[cid]
    row = next(p for p in run.pareto if p.config_id == cid)
    detail = config_detail(config)
    speed = run.w8a8_latency_ms / row.latency_ms if row.latency_ms > 0 else float("nan")
    json_link = link(f"{config_href}/{cid}.json", "deployment config (JSON)")
    head = (
        f'<h3 id="cfg-{esc(cid)}">{esc(cid)} — {esc(pct(row.accuracy_test))} test accuracy, '
        f"{esc(fmt_time(row.latency_ms, unit))} ({speed:.2f}x vs W8A8)</h3>"
        f'<p class="note">Method {esc(row.method)}, trial {row.number}; val accuracy '
        f"{esc(pct(row.accuracy_val))}; energy {row.energy_mj:.4g} mJ; weights "
        f"{row.size_kib:.3g} KiB; {json_link}.</p>"
    )
    parts = [Raw(head)]
    hw = _hardware_table(run, config)
    if hw is not None:
        parts.append(hw)
    if detail.note:
        parts.append(Raw(f'<p class="warn">{esc(detail.note)}</p>'))
    parts.append(img(layer_plots.layer_settings_png(detail), alt=f"per-layer settings of {cid}"))
    if detail.resimulated:
        parts.append(
            img(layer_plots.latency_breakdown_png(detail), alt=f"latency breakdown of {cid}")
        )
        parts.append(
            img(layer_plots.roofline_png(detail, hardware=run.hardware), alt=f"roofline of {cid}")
        )
    parts.append(_layer_table(detail, unit))
    return Raw('<div class="config">' + "".join(parts) + "</div>")


def short_hw(key: str, value: float) -> str:
    """``memory.wbuf.size_bytes``, 32768 -> ``wbuf 32 KiB``; ``compute.rows``, 8 -> ``rows 8``."""
    parts = key.split(".")
    name = parts[-1]
    if name == "size_bytes":
        kib = value / 1024
        text = f"{kib / 1024:g} MiB" if kib >= 1024 else f"{kib:g} KiB"
        return f"{parts[-2]} {text}"
    if name == "bandwidth_bytes_per_cycle":
        return f"{parts[-2]} {value:g} B/cycle"
    return f"{name} {value:g}"
