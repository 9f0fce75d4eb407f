"""Which configs ``bench_export_formats.py`` exports: a run's Pareto configs and uniform
baselines (with the other ids that share their effective settings), or a zoo model at W8A8
and one mixed config (:data:`MIXED_PLANS`)."""

from __future__ import annotations

from pathlib import Path

#: ``--model MODEL``: besides W8A8, one mixed config per model (sub-8-bit weights and
#: activations, pruned channels, a low-rank layer where the model has a fitting one)
MIXED_PLANS = {
    "fashion-mobilenet": {
        "_default": {"w_bits": 4, "a_bits": 8},
        "re:blocks\\.\\d+\\.dw": {"w_bits": 8, "a_bits": 8},
        "blocks.2.expand": {"w_bits": 4, "a_bits": 8, "keep": 0.75},
        "blocks.4.project": {"w_bits": 2, "a_bits": 4},
        "fc": {"w_bits": 4, "a_bits": 8, "rank_fraction": 0.5},
    },
    "fashion-vit": {
        "_default": {"w_bits": 4, "a_bits": 8},
        "re:blocks\\.\\d+\\.mlp\\.fc1": {"w_bits": 4, "a_bits": 8, "keep": 0.75},
        "blocks.1.attn.proj": {"w_bits": 2, "a_bits": 4},
        "blocks.3.mlp.fc2": {"w_bits": 4, "a_bits": 8, "rank_fraction": 0.5},
    },
}
#: calibration subset of ``--model`` configs: the demo search's (summary.json ``fidelity``)
ZOO_CALIB = {"calib_samples": 512, "calib_seed": 0}


def aliases(run: Path, targets: list, summary: dict) -> dict[str, list[str]]:
    """Measured config id → the run's other Pareto configs and uniform baselines with the
    same effective per-layer settings (``targets_of_run`` measures each setting once)."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.zoo import build
    from lowbit.search.config import load_config
    from lowbit.search.validate import UNIFORM_BASELINES

    net = build(summary["model"], seed=int(summary.get("seed", 0)))
    pin = bool((summary.get("evaluator") or {}).get("pin_first_last", False))
    measured = [(t.config_id, CompressionPlan.from_dict(t.plan).effective(net)) for t in targets]
    plans = {}
    for method in (summary.get("methods") or {}).values():
        for cid in method.get("pareto", []):
            plans.setdefault(cid, load_config(run / "configs" / f"{cid}.json").plan)
    for w, a in UNIFORM_BASELINES:
        plans[f"uniform-W{w}A{a}"] = CompressionPlan.uniform(
            w_bits=w, a_bits=a, pin_first_last=pin
        ).to_dict()
    out: dict[str, list[str]] = {cid: [] for cid, _ in measured}
    for cid, plan in plans.items():
        if cid in out:
            continue
        settings = CompressionPlan.from_dict(plan).effective(net)
        for mid, known in measured:
            if known == settings:
                out[mid].append(cid)
                break
    return out


def zoo_targets(model: str) -> list:
    """W8A8 and :data:`MIXED_PLANS`' mixed config of zoo ``model`` (seed 0, no QAT)."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.hostcal.measure import ConfigTarget

    plans = {"W8A8": CompressionPlan.uniform(w_bits=8, a_bits=8, pin_first_last=False).to_dict()}
    if model in MIXED_PLANS:
        plans["mixed"] = {"version": 1, "pin_first_last": False, "layers": MIXED_PLANS[model]}
    return [
        ConfigTarget(f"{model}:{label}", "zoo", label, model, 0, plan, qat_steps=0, **ZOO_CALIB)
        for label, plan in plans.items()
    ]
