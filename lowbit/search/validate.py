"""Validate a search run on this CPU: simulated vs measured latency, fake-quant vs INT8 accuracy.

``lowbit validate --run DIR`` takes the run's Pareto configurations (``configs/*.json``,
every method) plus the uniform baselines W8A8 / W4A8 / W2A8 (the run's own uniform configs,
or added here with their fake-quant accuracy measured like the search's evaluator), exports
each to INT8 ONNX and measures it (:mod:`lowbit.models.hostcal.measure`, beside the export:
this module only reads the run), and writes into the run directory:

``validation.csv``   one row per configuration (accuracies, latencies, IQRs, speed-ups)
``validation.json``  the rows plus, per batch size: Spearman and Kendall rank correlation of
                     simulated vs measured INT8 latency, mean absolute percentage error,
                     share within ±10% and ±15%; the largest |INT8 − fake-quant| accuracy
                     difference; INT8-vs-FP32 speed ratios; host, profile and load average
``validation.png``   simulated vs measured latency, one colour per batch size (drawn by
                     ``lowbit validate`` from the returned result: ``lowbit.reports.validation``)
``validation/<id>/`` each configuration's model.int8.onnx, model.fp32.onnx, deploy.json

The host profile is ``$LOWBIT_CACHE/host/host-cpu.toml``, calibrated on first use
(:mod:`lowbit.models.hostcal.calibration`). Each batch size's metrics also carry
``repeatability``: the same metrics between the INT8 medians of the even and of the odd
timing rounds (:func:`lowbit.models.hostcal.measure.time_configs`), two independent
measurements of the same models. It is the ceiling of what any latency model can score on
this machine at this load: when the configurations' true latencies differ by less than the
measurement's noise, their measured ranks are partly noise.

On a calibrated host profile the timings are converted to the profile's clock by the clock
read beside each (:func:`lowbit.models.hostcal.clock.clock_track`: a shared machine's core moves
10-20 % within a minute; the cycles do not); ``settings`` records that clock and the range
the core ran at. On a built-in profile they stay as timed.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.fileio import read_json
from lowbit.models.hostcal.clock import clock_track
from lowbit.models.hostcal.measure import (
    BATCHES,
    ConfigTarget,
    export_targets,
    prepare_config,
    time_configs,
)

from .checks import summary_problems
from .config import ConfigError, load_config
from .results import write_csv, write_json

__all__ = [
    "UNIFORM_BASELINES",
    "VALIDATION_COLUMNS",
    "latency_metrics",
    "targets_of_run",
    "validate_run",
]

log = logging.getLogger(__name__)

#: uniform baselines validated with every run (weights, activations)
UNIFORM_BASELINES = ((8, 8), (4, 8), (2, 8))
VALIDATION_COLUMNS = (
    "config_id",
    "source",
    "method",
    "accuracy_fake_quant",
    "accuracy_int8",
    "accuracy_diff_points",
    "accuracy_fp32_onnx",
    "argmax_agreement",
    "max_abs_logit_diff",
    "min_code_agreement",
    "min_code_agreement_forced",
    *(
        f"{key}_b{b}"
        for b in BATCHES
        for key in (
            "measured_int8_ms",
            "iqr_int8_ms",
            "measured_fp32_ms",
            "iqr_fp32_ms",
            "simulated_ms",
            "sim_error_pct",
            "int8_speedup_vs_fp32",
        )
    ),
    "search_latency_ms",
    "export_dir",
)


def _read_summary(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise LowbitError(f"run directory {run_dir} does not exist")
    path = run_dir / "summary.json"
    if not path.exists():
        raise LowbitError(f"{run_dir} is not a search run directory (no summary.json)")
    summary = read_json(path, what="run summary")
    problems = summary_problems(summary, needs=("model",))
    if problems:
        raise LowbitError(f"{path}: not a lowbit run summary: " + "; ".join(problems))
    return summary


def _spread(items: list[ConfigTarget], k: int) -> list[ConfigTarget]:
    """``k`` items evenly spaced along the front, ordered by the search's latency."""
    if k >= len(items):
        return items
    ordered = sorted(items, key=lambda t: (t.search_latency_ms or 0.0, t.config_id))
    picks = sorted({round(i * (len(ordered) - 1) / max(k - 1, 1)) for i in range(k)})
    return [ordered[i] for i in picks]


def targets_of_run(run_dir: Path, *, top: int | None = None) -> tuple[list[ConfigTarget], dict]:
    """The run's Pareto configurations (at most ``top``, evenly spread along the front by
    simulated latency) and uniform baselines, plus the run summary.

    Raises:
        LowbitError: missing or malformed run directory; ConfigError: a bad config file
            (corrupt JSON, missing fields, or a config of another model).
    """
    run_dir = Path(run_dir)
    summary = _read_summary(run_dir)
    model = summary["model"]
    ids = []
    for method in (summary.get("methods") or {}).values():
        ids.extend(i for i in method.get("pareto", []) if i not in ids)
    if not ids:
        ids = sorted(p.stem for p in (run_dir / "configs").glob("*.json"))
    found: list[ConfigTarget] = []
    for cid in ids:
        path = run_dir / "configs" / f"{cid}.json"
        cfg = load_config(path)
        if cfg.model != model:
            raise ConfigError(f"{path}: config of model {cfg.model!r}, but the run is {model!r}")
        found.append(
            ConfigTarget(
                cfg.id,
                "pareto",
                cfg.method,
                cfg.model,
                cfg.seed,
                cfg.plan,
                cfg.accuracy_test,
                cfg.latency_ms,
                qat_steps=cfg.qat_steps,
                qat_seed=cfg.qat_seed,
                calib_samples=cfg.calib_samples,
                calib_seed=cfg.calib_seed or 0,
            )
        )
    uniform = [t for t in found if t.method == "uniform"]
    pareto = [t for t in found if t.method != "uniform"]
    if top is not None:
        if top < 1:
            raise LowbitError(f"--top must be a positive integer, got {top}")
        pareto = _spread(pareto, top)
    seed = int(summary.get("seed", 0))
    pin = bool((summary.get("evaluator") or {}).get("pin_first_last", False))
    baselines = []
    for w, a in UNIFORM_BASELINES:
        from lowbit.models.compression.plan import CompressionPlan

        plan = CompressionPlan.uniform(w_bits=w, a_bits=a, pin_first_last=pin).to_dict()
        baselines.append(ConfigTarget(f"uniform-W{w}A{a}", "uniform", "uniform", model, seed, plan))
    return _distinct(pareto + uniform + baselines, model, seed), summary


def _distinct(targets: list[ConfigTarget], model: str, seed: int) -> list[ConfigTarget]:
    """The first of every group of targets with the same effective per-layer settings (the
    joint search often re-finds a uniform configuration; it is measured once)."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.zoo import build

    net = build(model, seed=seed)
    seen: list = []
    out = []
    for target in targets:
        settings = CompressionPlan.from_dict(target.plan).effective(net)
        if settings in seen:
            log.info("%s has the settings of an earlier config: measured once", target.config_id)
            continue
        seen.append(settings)
        out.append(target)
    return out


def _pct_errors(sim: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    err = np.abs(sim / measured - 1)
    return {
        "mape_pct": float(err.mean() * 100),
        "within_10pct": float((err <= 0.10).mean()),
        "within_15pct": float((err <= 0.15).mean()),
    }


def latency_metrics(simulated: list[float], measured: list[float]) -> dict[str, Any]:
    """Rank correlations and percentage errors of simulated vs measured latencies.

    Spearman/Kendall are None (JSON null) with fewer than 3 points or constant values.
    """
    from scipy import stats

    sim, real = np.asarray(simulated, float), np.asarray(measured, float)
    out: dict[str, Any] = {"n": len(sim)}
    for name, fn in (("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        value = None
        if len(sim) >= 3 and np.ptp(sim) > 0 and np.ptp(real) > 0:
            value = float(fn(sim, real).statistic)
        out[name] = value if value is None or math.isfinite(value) else None
    out.update(_pct_errors(sim, real) if len(sim) else {})
    return out


def validate_run(
    run_dir: str | Path,
    *,
    top: int | None = None,
    profile_path: str | Path | None = None,
    repeats: int = 100,
    warmup: int = 20,
    batches: tuple[int, ...] = BATCHES,
    workers: int | None = None,
) -> dict[str, Any]:
    """Validate ``run_dir`` (module docstring) and return validation.json's content.

    Args:
        run_dir: a search run directory (summary.json, configs/).
        top: validate at most this many Pareto configurations (spread along the front).
        profile_path: the host profile (default: the calibrated host profile, made if
            missing; a missing .toml path is calibrated and written there) or a built-in
            profile name to validate instead (e.g. ``cpu-x86-avx2``).
        repeats: timed runs per model and batch size (median and IQR of these).
        warmup: untimed runs before timing.
        batches: batch sizes (default 1 and 64).
        workers: processes exporting and checking the configurations before the timing
            (default: the CPU count, at most 2; the timing runs alone).
    """
    from lowbit.models.hostcal.calibration import calibration_version_of, load_or_calibrate
    from lowbit.models.hostcal.isa import cpu_info

    if repeats < 1 or warmup < 0:
        raise LowbitError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    run_dir = Path(run_dir)
    targets, summary = targets_of_run(run_dir, top=top)
    host = profile_path is None or Path(profile_path).suffix in (".toml", ".cfg")
    if not host:
        from lowbit.hwsim.profiles import load_profile

        profile = load_profile(profile_path)  # a built-in, e.g. cpu-x86-avx2
    else:
        profile = load_or_calibrate(profile_path)
    finetune = int((summary.get("evaluator") or {}).get("finetune_steps", 0) or 0)
    load_before = os.getloadavg()
    if workers is None:
        workers = min(os.cpu_count() or 1, 2)
    out_dirs = [run_dir / "validation" / t.config_id for t in targets]
    log.info("exporting and checking %d configurations", len(targets))
    exported = export_targets(targets, out_dirs=out_dirs, finetune_steps=finetune, workers=workers)
    prepared = [
        prepare_config(target, exported=result, profile=profile, batches=batches)
        for target, result in zip(targets, exported, strict=True)
    ]
    log.info("timing %d configurations round-robin", len(prepared))
    # a calibrated host profile (it has a sidecar; not a built-in, a SCALE-Sim .cfg or a
    # hand-written TOML): its clock is this core's, so the timings are converted to it
    calibrated = profile_path is None or calibration_version_of(profile_path) is not None
    with clock_track(reference_hz=profile.clock_hz) if calibrated else nullcontext() as track:
        halves = time_configs(prepared, repeats=repeats, warmup=warmup)
    clock = track.summary() if track is not None else None
    rows = [p.row for p in prepared]
    metrics: dict[str, Any] = {}
    for batch in batches:
        sim = [r[f"simulated_ms_b{batch}"] for r in rows]
        real = [r[f"measured_int8_ms_b{batch}"] for r in rows]
        metrics[f"b{batch}"] = latency_metrics(sim, real)
        # None with one timing round (repeats 1): no two halves to compare
        half = halves.get(batch)
        metrics[f"b{batch}"]["repeatability"] = latency_metrics(*half) if half else None
        ratios = [r[f"int8_speedup_vs_fp32_b{batch}"] for r in rows]
        metrics[f"b{batch}"]["int8_speedup_vs_fp32"] = {
            "min": min(ratios),
            "median": float(np.median(ratios)),
            "max": max(ratios),
        }
    diffs = [abs(r["accuracy_diff_points"]) for r in rows]
    result = {
        "schema_version": 1,
        "kind": "lowbit-validation",
        "run_dir": str(run_dir),
        "model": summary["model"],
        "host": {
            "cpu": cpu_info(),
            "profile": profile.source,
            "profile_hash": profile.content_hash(),
        },
        "settings": {
            "batches": list(batches),
            "repeats": repeats,
            "timed_runs": rows[0].get("timed_runs") if rows else 0,
            "warmup": warmup,
            "intra_op_threads": 1,
            "inter_op_threads": 1,
            "finetune_steps": finetune,
            # the timings at the host profile's clock, the core's range while they ran
            "timings_at_clock_hz": clock["reference_hz"] if clock else None,
            "core_clock_range_hz": [clock["low_hz"], clock["high_hz"]] if clock else None,
        },
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "metrics": metrics,
        "accuracy": {
            "max_abs_diff_points": max(diffs),
            "all_within_0.5_points": all(d <= 0.5 for d in diffs),
        },
        "configs": rows,
    }
    write_csv(run_dir / "validation.csv", rows, VALIDATION_COLUMNS)
    write_json(run_dir / "validation.json", result)
    return result
