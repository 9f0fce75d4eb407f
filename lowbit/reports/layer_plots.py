"""Figures of one configuration (PNG bytes): per-layer settings, the per-layer latency
breakdown and the roofline of its layers on the target."""

from __future__ import annotations

from ._figure import pyplot, style, time_unit, to_png
from .layers import ConfigDetail

__all__ = ["layer_settings_png", "latency_breakdown_png", "roofline_png"]


def layer_settings_png(detail: ConfigDetail) -> bytes:
    """Per compute layer: weight/activation bits (top), keep ratio and rank fraction."""
    plt = pyplot()
    layers = detail.compute_layers
    names = [layer.name for layer in layers]
    xs = list(range(len(layers)))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8.6, 5.0), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )

    def bits(value: int | None) -> float:
        return 9.0 if value is None else float(value)  # float layers drawn above 8 bits

    width = 0.38
    w = [bits(layer.w_bits) for layer in layers]
    a = [bits(layer.a_bits) for layer in layers]
    top.bar([x - width / 2 for x in xs], w, width, color="#1f5fbf", label="weight bits")
    top.bar([x + width / 2 for x in xs], a, width, color="#e07b00", label="activation bits")
    for x, wv, av in zip(xs, w, a, strict=True):
        for dx, v in ((-width / 2, wv), (width / 2, av)):
            top.annotate(
                "FP" if v > 8 else f"{v:g}",
                (x + dx, v),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 1),
                textcoords="offset points",
            )
    top.set_ylim(0, 10.5)
    top.set_yticks([2, 4, 6, 8])
    style(top, title="Per-layer precision, pruning and rank", xlabel="", ylabel="bits")
    top.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    keep = [layer.keep for layer in layers]
    rank = [layer.rank_fraction for layer in layers]
    bottom.bar([x - width / 2 for x in xs], keep, width, color="#2a9d8f", label="kept channels")
    bottom.bar([x + width / 2 for x in xs], rank, width, color="#7b3fa8", label="rank / full rank")
    bottom.set_ylim(0, 1.15)
    bottom.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    style(bottom, title="", xlabel="layer", ylabel="fraction kept")
    bottom.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    bottom.set_xticks(
        xs, names, rotation=30 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center"
    )
    return to_png(fig)


def latency_breakdown_png(detail: ConfigDetail) -> bytes:
    """Per layer: compute, memory stall and fixed overhead time, stacked."""
    plt = pyplot()
    layers = detail.layers
    total_ms = sum(layer.total_cycles for layer in layers) / detail.clock_hz * 1e3
    unit = time_unit(total_ms)
    scale = unit.per_ms * 1e3 / detail.clock_hz  # cycles -> display unit
    names = [layer.name for layer in layers]
    ys = list(range(len(layers)))[::-1]
    compute = [layer.compute_cycles * scale for layer in layers]
    stall = [layer.stall_cycles * scale for layer in layers]
    overhead = [layer.overhead_cycles * scale for layer in layers]
    fig, ax = plt.subplots(figsize=(8.6, 0.36 * len(layers) + 1.6))
    ax.barh(ys, compute, color="#1f5fbf", label="compute")
    ax.barh(ys, stall, left=compute, color="#d62728", label="memory stall")
    left = [c + s for c, s in zip(compute, stall, strict=True)]
    ax.barh(ys, overhead, left=left, color="#bdbdbd", label="fixed overhead")
    ax.set_yticks(ys, names)
    style(
        ax,
        title=f"Per-layer latency breakdown (total {total_ms * unit.per_ms:.4g} {unit.label})",
        xlabel=f"simulated time ({unit.label})",
        ylabel="",
    )
    ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, frameon=False)
    return to_png(fig)


def roofline_png(detail: ConfigDetail, *, hardware: str) -> bytes:
    """Attained GMAC/s vs operational intensity (MACs per off-chip byte) of each compute
    layer, under the roof of its precision mode: min(peak, intensity × off-chip bandwidth).
    Colour = precision mode, marker = what bounds the layer."""
    plt = pyplot()
    clock = detail.clock_hz
    layers = [layer for layer in detail.compute_layers if layer.total_cycles > 0]
    fig, ax = plt.subplots(figsize=(8.6, 4.8))
    intensities = [layer.macs / layer.dram_bytes for layer in layers if layer.dram_bytes > 0]
    lo = min(intensities + [1.0]) / 4
    hi = max(intensities + [lo * 64]) * 6
    on_chip_x = hi / 2  # layers with no off-chip traffic are drawn near the right edge
    bandwidth = max((layer.dram_bytes_per_cycle for layer in layers), default=0.0)
    modes = sorted({(layer.peak_macs_per_cycle, _bits(layer)) for layer in layers})
    palette = ("#1f5fbf", "#e07b00", "#2a9d8f", "#7b3fa8", "#d62728", "#8c564b")
    colors = {label: palette[i % len(palette)] for i, (_, label) in enumerate(modes)}
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    for peak, label in modes:
        ys = [min(peak, x * bandwidth) * clock / 1e9 for x in xs]
        ax.plot(
            xs,
            ys,
            color=colors[label],
            linewidth=1.4,
            alpha=0.85,
            label=f"{label} roof: peak {peak * clock / 1e9:.4g} GMAC/s",
        )
    markers = {"compute": "o", "memory": "^", "overhead": "s"}
    for layer in layers:
        x = layer.macs / layer.dram_bytes if layer.dram_bytes else on_chip_x
        y = layer.macs / layer.total_cycles * clock / 1e9
        ax.scatter(
            [x],
            [y],
            s=52,
            color=colors[_bits(layer)],
            zorder=3,
            edgecolors="white",
            linewidths=0.8,
            marker=markers.get(layer.bound, "o"),
        )
        ax.annotate(layer.name, (x, y), textcoords="offset points", xytext=(6, -3), fontsize=8)
    for bound, marker in markers.items():
        ax.scatter([], [], color="#777777", marker=marker, label=f"{bound}-bound layer")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    style(
        ax,
        title=f"Roofline on {hardware} (off-chip {bandwidth * clock / 1e9:.3g} GB/s)",
        xlabel="operational intensity (MACs per off-chip byte)",
        ylabel="attained performance (GMAC/s)",
    )
    ax.legend(fontsize=7.5, loc="upper left", framealpha=0.92)
    return to_png(fig)


def _bits(layer) -> str:
    def one(v: int | None) -> str:
        return "FP" if v is None or v >= 32 else str(v)

    return f"W{one(layer.w_bits)}A{one(layer.a_bits)}"
