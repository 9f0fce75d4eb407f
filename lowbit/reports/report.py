"""``report.html`` of a search run: one self-contained page a person opens in a browser.

Sections: the run at a glance; the Pareto frontier (accuracy vs simulated latency, every
method, the uniform-precision and HAWQ points, FP32 marked) with the methods' table;
hypervolume vs trials; selected Pareto configurations, each with its hardware (co-design),
per-layer bits / keep ratio / rank, per-layer latency breakdown and roofline; simulated vs
measured latency when ``lowbit validate`` ran; the per-layer sensitivity screen when the
search ran one; the table of every Pareto configuration with
links to its JSON.

Example:
    >>> from lowbit.reports import build_report
    >>> path = build_report("runs/digits-cnn-npu-bitfusion-s0")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from . import plots
from ._figure import TimeUnit, time_unit
from .config_view import config_block, fmt_time, pct, short_hw
from .html import Raw, card, img, link, page, section, table
from .layers import fp32_latency_ms, hardware_of
from .rundata import ReportError, RunData, load_run
from .screen_view import screen_section
from .validation import validation_section

__all__ = ["REPORT_FILE", "build_report", "render_report", "select_configs"]

REPORT_FILE = "report.html"
#: how many Pareto configurations get the per-layer view by default
DEFAULT_SELECTED = 3
#: the second pick is the fastest config within this many points of FP32 (test)
NEAR_POINTS = 5.0


def select_configs(run: RunData, *, limit: int = DEFAULT_SELECTED) -> list[str]:
    """The Pareto configs worth a close look, from the joint search (another method's if
    joint is absent), first ``limit`` distinct of: the fastest within 1 point of FP32, the
    fastest within 5 points (test accuracy), the most accurate, the fastest, the rest by
    latency."""
    methods = [m for m in ("joint", *run.methods) if any(p.method == m for p in run.pareto)]
    if not methods:
        return []
    method = methods[0]
    rows = sorted((p for p in run.pareto if p.method == method), key=lambda p: p.latency_ms)
    picks = []
    best = (run.summary["methods"].get(method) or {}).get("best_within_1pt")
    if best:
        picks.append(best["config_id"])
    fp32 = float(run.summary["reference"]["fp32_test"])
    near = [p for p in rows if p.accuracy_test >= fp32 - NEAR_POINTS / 100] or rows
    picks.append(min(near, key=lambda p: (p.latency_ms, -p.accuracy_test)).config_id)
    picks.append(max(rows, key=lambda p: (p.accuracy_test, -p.latency_ms)).config_id)
    picks += [p.config_id for p in rows]
    out: list[str] = []
    for cid in picks:
        if cid in run.configs and cid not in out:
            out.append(cid)
    return out[:limit]


def _overview(run: RunData, unit: TimeUnit) -> Raw:
    ref = run.summary["reference"]
    joint = run.summary["methods"].get("joint") or next(iter(run.summary["methods"].values()))
    best = joint.get("best_within_1pt")
    done = sum(m.get("completed", 0) for m in run.summary["methods"].values())
    cards = [
        card("FP32 accuracy", pct(ref["fp32_test"]), f"test split; val {pct(ref['fp32_val'])}"),
        card("W8A8 latency", fmt_time(ref["w8a8_latency_ms"], unit), "uniform INT8, simulated"),
        card(
            "Best speed-up ≤ 1 pt loss",
            f"{joint['speedup_vs_w8a8']:.2f}x" if joint.get("speedup_vs_w8a8") else "none",
            f"{best['config_id']}: test {pct(best['accuracy_test'])}" if best else "no config",
        ),
        card("Trials", f"{done:,}", f"{len(run.methods)} methods, {run.summary.get('sampler')}"),
    ]
    codesign = run.summary.get("co_design")
    if codesign:
        budget = codesign.get("area_budget_mm2")
        cards.append(
            card(
                "Area budget",
                f"{budget:g} mm²" if budget else "none",
                f"profile as given: {codesign.get('base_area_mm2', float('nan')):.3g} mm²",
            )
        )
    constraints = ", ".join(f"{k} = {v:g}" for k, v in run.summary.get("constraints", {}).items())
    facts = (
        f"Model {run.model} ({run.summary.get('dataset', '?')}) on {run.hardware}; objectives "
        f"{' & '.join(run.summary.get('objectives', []))}; seed {run.summary.get('seed')}; "
        f"{run.summary.get('engine', 'analytic')} simulator"
        + (f"; constraints {constraints}" if constraints else "")
        + "."
    )
    return section(
        "overview", "At a glance", Raw('<div class="cards">' + "".join(cards) + "</div>"), facts
    )


def _methods_table(run: RunData, unit: TimeUnit) -> Raw:
    rows = []
    for name, m in run.summary["methods"].items():
        best = m.get("best_within_1pt")
        rows.append(
            [
                name,
                m.get("completed", 0),
                m.get("failed", 0),
                f"{m.get('hypervolume_val', float('nan')):.4f}",
                f"{m.get('hypervolume_test', float('nan')):.4f}",
                fmt_time(best["latency_ms"], unit) if best else "-",
                f"{m['speedup_vs_w8a8']:.2f}x" if m.get("speedup_vs_w8a8") else "-",
                pct(best["accuracy_test"]) if best else "-",
                len(m.get("pareto", [])),
            ]
        )
    return table(
        [
            "method",
            "completed",
            "failed",
            "HV val",
            "HV test",
            "best latency ≤ 1 pt",
            "speed-up vs W8A8",
            "test acc",
            "Pareto configs",
        ],
        rows,
        numeric=range(1, 9),
        caption="Hypervolume: accuracy × (latency / W8A8), reference point (0, 2); max 2.0",
    )


def _pareto_table(run: RunData, unit: TimeUnit, config_href: str) -> Raw:
    codesign = bool(run.summary.get("co_design"))
    headers = [
        "config",
        "method",
        "val acc",
        "test acc",
        "latency",
        "vs W8A8",
        "energy mJ",
        "weights KiB",
    ] + (["area mm²", "hardware"] if codesign else [])
    rows = []
    for p in sorted(run.pareto, key=lambda p: (p.method, p.latency_ms)):
        cells: list[object] = [
            link(f"{config_href}/{p.config_id}.json", p.config_id),
            p.method,
            pct(p.accuracy_val),
            pct(p.accuracy_test),
            fmt_time(p.latency_ms, unit),
            f"{p.latency_vs_w8a8:.3f}",
            f"{p.energy_mj:.4g}",
            f"{p.size_kib:.3g}",
        ]
        if codesign:
            hw = run.configs[p.config_id].get("hardware", {})
            base = run.summary["co_design"].get("base", {})
            changed = {
                k: v for k, v in hardware_of(run.configs[p.config_id]).items() if base.get(k) != v
            }
            area = hw.get("area_mm2")
            cells.append(f"{area:.3f}" if isinstance(area, (int, float)) else "-")
            cells.append(
                (", ".join(short_hw(k, v) for k, v in changed.items()) or "as given", "wrap")
            )
        rows.append(cells)
    return table(headers, rows, numeric=range(2, 9 if codesign else 8))


def render_report(
    run: RunData, *, configs: Sequence[str] | None = None, config_href: str = "configs"
) -> str:
    """The report page of ``run`` as HTML text (:func:`build_report` writes it).

    Args:
        configs: config ids for the per-layer view (default :func:`select_configs`).
        config_href: URL of the configs directory relative to the page.
    """
    chosen = list(configs) if configs else select_configs(run)
    unknown = [c for c in chosen if c not in run.configs]
    if unknown:
        raise ReportError(
            f"unknown config ids {unknown} (Pareto configs: {', '.join(sorted(run.configs))})"
        )
    unit = time_unit(run.w8a8_latency_ms)
    codesign = run.summary.get("co_design") or {}
    base = hardware_of({"hardware": {"overrides": codesign.get("base")}})
    fp32_ms = fp32_latency_ms(run.model, hardware=run.hardware, overrides=base)
    body = [
        _overview(run, unit),
        section(
            "pareto",
            "Pareto frontier",
            img(plots.pareto_png(run, fp32_latency_ms=fp32_ms), alt="Pareto frontier"),
            _methods_table(run, unit),
            intro="Validation accuracy vs simulated latency of every completed trial; lines "
            "join each method's non-dominated feasible trials. Pareto configurations were "
            "re-evaluated on the test split (tables below)."
            + (
                ""
                if fp32_ms is not None
                else f" FP32 does not run on {run.hardware}: its accuracy is the dashed line."
            ),
        ),
        section(
            "progress",
            "Hypervolume vs trials",
            img(plots.hypervolume_png(run), alt="hypervolume vs number of trials"),
            intro="How fast each method finds good trade-offs: hypervolume of the feasible "
            "trials completed so far (higher is better).",
        ),
        section(
            "configs",
            "Selected configurations",
            *[config_block(run, cid, unit, config_href) for cid in chosen],
            intro="Per layer: precision, kept channels and rank; where the time goes "
            "(compute vs waiting for memory vs fixed per-layer cost); and each layer on the "
            "target's roofline.",
        ),
    ]
    nav = [
        ("overview", "Overview"),
        ("pareto", "Pareto"),
        ("progress", "Hypervolume"),
        ("configs", "Configurations"),
    ]
    screen = screen_section(run.run_dir, run.summary)
    if screen is not None:
        body.append(screen)
        nav.append(("screen", "Sensitivity"))
    if run.validation:
        body.append(validation_section(run.validation))
        nav.append(("validation", "Validation"))
    body.append(
        section(
            "all-configs",
            "All Pareto configurations",
            _pareto_table(run, unit, config_href),
            intro="Every method's final Pareto configurations (test accuracy re-measured); "
            "each links to its deployment config.",
        )
    )
    nav.append(("all-configs", "All configs"))
    versions = run.summary.get("versions", {})
    return page(
        title=f"lowbit report: {run.model} on {run.hardware}",
        subtitle=f"run {run.run_dir.resolve()} · study {run.summary.get('study', '?')}",
        nav=nav,
        body=body,
        footer=f"generated {time.strftime('%Y-%m-%d %H:%M:%S')} by lowbit "
        f"{versions.get('lowbit', '?')} (optuna {versions.get('optuna', '?')}, "
        f"ray {versions.get('ray', '?')})",
    )


def build_report(
    run_dir: str | Path, *, out: str | Path | None = None, configs: Sequence[str] | None = None
) -> Path:
    """Write the report of run ``run_dir`` to ``out`` (default ``run_dir/report.html``),
    atomically; returns its path.

    Raises:
        ReportError: the run directory cannot be read (see :func:`lowbit.reports.load_run`) or a
            requested config id is not a Pareto config of the run.
    """
    from lowbit.search.results import atomic_write_text

    run = load_run(run_dir)
    out = Path(out) if out is not None else run.run_dir / REPORT_FILE
    configs_dir = (run.run_dir / "configs").resolve()
    href = Path(os.path.relpath(configs_dir, out.resolve().parent)).as_posix()
    text = render_report(run, configs=configs, config_href=href)
    try:
        return atomic_write_text(out, text)
    except OSError as exc:
        raise ReportError(f"{out}: cannot write the report: {exc.strerror or exc}") from None
