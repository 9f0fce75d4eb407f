"""Validate a search run against Arm Vela: lowbit's simulated Ethos-U cycles vs Vela's estimate.

``lowbit validate --run DIR --vela`` takes the configurations the CPU validation takes
(:func:`lowbit.search.validate.targets_of_run`: the Pareto configs, at most ``--top``
spread along the front, plus the uniform baselines W8A8 / W4A8 / W2A8), exports each as a
fully-integer TFLite model (:func:`lowbit.models.export.deploy.export_plan`, no runtime
check, nothing timed), compiles it with Vela for the run's Ethos-U profile
(:func:`lowbit.models.export.vela.vela_target`) and compares lowbit's simulated cycles of
the plan on that profile (batch 1, analytic engine) with Vela's total cycles, both over the
layers Vela runs wholly on the NPU (an operator Vela places on the CPU counts 0 cycles in
its estimate; such layers are listed in ``cpu_layers``). The profile is
the run's (``summary.json`` ``hardware.name``) unless ``profile`` names another Ethos-U
profile: then any run's configurations are compared on it. It writes into the run directory:

``vela_validation.csv``    one row per configuration (lowbit cycles, Vela cycles, ratio, ...)
``vela_validation.json``   the rows with their per-layer cycles; ``metrics``: Spearman,
                           Kendall, MAPE, share within ±10 % / ±15 % of lowbit vs Vela
                           cycles (:func:`lowbit.search.validate.latency_metrics`, Vela as
                           the reference); ``ratios``: median ratio and share within ±20 %
                           of totals, of layers and per layer kind
                           (:func:`lowbit.models.export.vela.ratio_summary`)
``vela_validation/<id>/``  each configuration's export (TFLite, Vela's output, deploy.json)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lowbit.hwsim.errors import LowbitError

from .results import write_csv, write_json
from .validate import latency_metrics, targets_of_run

__all__ = ["VELA_COLUMNS", "vela_validate_run"]

log = logging.getLogger(__name__)

VELA_COLUMNS = (
    "config_id",
    "source",
    "method",
    "search_latency_ms",
    "lowbit_cycles",
    "vela_cycles",
    "ratio",
    "vela_npu_cycles",
    "vela_flash_cycles",
    "lowbit_latency_ms",
    "vela_latency_ms",
    "vela_sram_bytes",
    "vela_flash_bytes",
    "cpu_operators",
    "npu_operators",
    "export_dir",
)


def _ethos_profile(summary: dict[str, Any], run_dir: Path, name: str | None) -> tuple[Any, Any]:
    """(profile, Vela target) of ``name`` or else of the run's hardware profile."""
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.export.vela import vela_target

    run_profile = (summary.get("hardware") or {}).get("name")
    chosen = name or run_profile
    if not chosen:
        raise LowbitError(
            f"{run_dir}/summary.json names no hardware profile: pass --profile npu-ethos-u55"
        )
    profile = load_profile(chosen)
    target = vela_target(profile)
    if target is None:
        how = "--profile must name" if name else "--vela needs a run searched on"
        raise LowbitError(
            f"{how} an Ethos-U profile, got {profile.name!r}"
            + ("" if name else " (or compare on one: --profile npu-ethos-u55)")
        )
    return profile, target


def vela_validate_run(
    run_dir: str | Path, *, top: int | None = None, profile: str | None = None
) -> dict[str, Any]:
    """Validate ``run_dir`` against Vela (module docstring) and return vela_validation.json's
    content.

    Args:
        run_dir: a search run directory (summary.json, configs/).
        top: at most this many Pareto configurations (spread along the front).
        profile: an Ethos-U hardware profile (built-in name or .toml) to compare on instead
            of the run's own.
    Raises:
        LowbitError: a bad run directory or a profile that is not Ethos-U;
            EdgeExtraMissing: ``ethos-u-vela`` / ``ai-edge-litert`` are not installed.
    """
    from lowbit import models
    from lowbit.models.bridge import to_workload
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.export.deploy import export_plan
    from lowbit.models.export.formats import check_extras
    from lowbit.models.export.vela import layer_pairs, ratio_summary

    run_dir = Path(run_dir)
    targets, summary = targets_of_run(run_dir, top=top)
    hw, vela = _ethos_profile(summary, run_dir, profile)
    check_extras(("onnx", "tflite"), check=False, vela=True)  # one line, before any export
    finetune = int((summary.get("evaluator") or {}).get("finetune_steps", 0) or 0)
    bases: dict[tuple[str, int], Any] = {}
    rows = []
    for t in targets:
        out_dir = run_dir / "vela_validation" / t.config_id
        plan = CompressionPlan.from_dict(t.plan)
        log.info("exporting %s and compiling it with Vela (%s)", t.config_id, vela.accelerator)
        result = export_plan(
            t.model,
            plan,
            out_dir=out_dir,
            seed=t.seed,
            finetune_steps=finetune if t.qat_steps is None else t.qat_steps,
            qat_seed=t.qat_seed,
            calib_samples=t.calib_samples,
            calib_seed=t.calib_seed,
            config_id=t.config_id,
            check=False,
            formats=("tflite",),
            hardware=hw,
        )
        est = result.deploy["vela"]
        key = (t.model, t.seed)
        if key not in bases:
            bases[key] = models.load_trained(t.model, seed=t.seed)
        ops = {layer.name: layer.op for layer in to_workload(bases[key], plan).layers}
        sim = est["lowbit"]
        lowbit_cycles = sim.get("cycles_npu_layers", sim["cycles"])
        vela_cycles = est.get("cycles_npu_layers", est["cycles"])
        rows.append(
            {
                "config_id": t.config_id,
                "source": t.source,
                "method": t.method,
                "search_latency_ms": t.search_latency_ms,
                "lowbit_cycles": lowbit_cycles,
                "vela_cycles": vela_cycles,
                "ratio": lowbit_cycles / vela_cycles,
                "cpu_layers": est.get("cpu_layers", []),
                "vela_npu_cycles": est["cycles_npu"],
                "vela_flash_cycles": est["cycles_off_chip_flash_access"],
                "lowbit_latency_ms": sim["latency_ms"],
                "vela_latency_ms": est["latency_ms"],
                "vela_sram_bytes": est["sram_bytes"],
                "vela_flash_bytes": est["flash_bytes"],
                "cpu_operators": est["cpu_operators"],
                "npu_operators": est["npu_operators"],
                "export_dir": str(out_dir.relative_to(run_dir)),
                "layers": layer_pairs(est, ops=ops),
            }
        )
    metrics = latency_metrics([r["lowbit_cycles"] for r in rows], [r["vela_cycles"] for r in rows])
    out = {
        "schema_version": 1,
        "kind": "lowbit-vela-validation",
        "run_dir": str(run_dir),
        "model": summary["model"],
        "run_profile": (summary.get("hardware") or {}).get("name"),
        "profile": hw.name,
        "profile_hash": hw.content_hash(),
        "vela": {
            "accelerator": vela.accelerator,
            "system_config": vela.system_config,
            "memory_mode": vela.memory_mode,
            "version": _vela_version(),
        },
        "metrics": metrics,
        "ratios": ratio_summary(rows),
        "configs": rows,
    }
    write_csv(run_dir / "vela_validation.csv", rows, VELA_COLUMNS)
    write_json(run_dir / "vela_validation.json", out)
    return out


def _vela_version() -> str:
    from importlib.metadata import version

    return version("ethos-u-vela")
