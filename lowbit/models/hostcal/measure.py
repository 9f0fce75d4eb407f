"""Measure deployment configurations on this CPU: real INT8/FP32 latency and accuracy,
and the simulator's latency on the host profile.

Protocol (what ``lowbit validate`` reports): the configuration is exported
(:func:`lowbit.models.export.deploy.export_plan`: FP32 and QDQ INT8 ONNX), each model runs in
an ONNX Runtime session on one thread (intra- and inter-op), at every batch size, on the first
samples of the test split: ``warmup`` untimed runs, then the median and interquartile range
of ``repeats`` timed runs, taken round-robin over all configurations in a few rounds
(:func:`time_configs`: a load spike hits every configuration alike). Accuracy is the INT8
model's on the whole test split. The simulated latency is ``hwsim.simulate`` of
``models.bridge.to_workload(base, plan, batch=B)`` on the host profile (analytic engine).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.hwsim.profile import HardwareProfile

__all__ = [
    "BATCHES",
    "ConfigTarget",
    "Prepared",
    "export_target",
    "export_targets",
    "memory_elements",
    "prepare_config",
    "time_configs",
]

#: batch sizes every configuration is timed at
BATCHES = (1, 64)


@dataclass(frozen=True, slots=True)
class ConfigTarget:
    """One configuration to validate.

    Attributes:
        config_id: the run's config id (``joint-00012``) or ``uniform-W8A8`` for a baseline
            validate added itself.
        source: ``pareto`` (a config file of the run) or ``uniform`` (a baseline).
        method: the search method that found it (``uniform`` for baselines).
        model: zoo model name. seed: its training seed.
        plan: the compression plan (JSON object).
        fake_quant_test: the search's fake-quant test accuracy (None: measure it here).
        search_latency_ms: the search's simulated latency on its own target (None if none).
        qat_steps, qat_seed, calib_samples, calib_seed: how the config's model was built
            (a deployment config records them; None: the run's QAT steps, the training
            seed, all of val).
    """

    config_id: str
    source: str
    method: str
    model: str
    seed: int
    plan: dict[str, Any]
    fake_quant_test: float | None = None
    search_latency_ms: float | None = None
    qat_steps: int | None = None
    qat_seed: int | None = None
    calib_samples: int | None = None
    calib_seed: int = 0


def memory_elements(base: Any, workload: Any) -> dict[str, int]:
    """Elements the workload's memory-only layers process, by operator kind (the names
    :func:`lowbit.models.hostcal.elementwise.elementwise_costs` measures): outputs of
    elementwise layers, inputs of pooling layers."""
    from torch import nn

    from lowbit.models.zoo import Add, TokenEmbedding

    kinds = (
        (nn.LayerNorm, "LayerNormalization"),
        (nn.Softmax, "Softmax"),
        (nn.GELU, "Gelu"),
        ((Add, TokenEmbedding), "Add"),
    )
    modules = dict(base.named_modules())
    out: dict[str, int] = {}
    for layer in workload.layers:
        if layer.op not in ("elementwise", "pool"):
            continue
        module = modules.get(layer.name.split("#")[0])
        if layer.op == "pool":
            kind, count = "MaxPool", layer.memory_elements()[0]
        else:
            kind = next((k for t, k in kinds if isinstance(module, t)), "Add")
            count = layer.memory_elements()[1]
        out[kind] = out.get(kind, 0) + count
    return out


@dataclass(slots=True)
class Prepared:
    """One exported configuration, ready to time: its row (accuracy, simulated latency) and
    an ONNX Runtime session per model kind with the test samples of each batch size."""

    row: dict[str, Any]
    sessions: dict[str, Any]
    feeds: dict[int, Any]


def export_target(target: ConfigTarget, *, out_dir: Path, finetune_steps: int = 0) -> Any:
    """Export ``target`` into ``out_dir`` and check it (the
    :class:`~lowbit.models.export.deploy.ExportResult`); ``finetune_steps`` applies when the
    target does not record its own QAT steps. Runs on one torch thread."""
    import torch

    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.export.deploy import export_plan

    torch.set_num_threads(1)
    steps = finetune_steps if target.qat_steps is None else target.qat_steps
    return export_plan(
        target.model,
        CompressionPlan.from_dict(target.plan),
        out_dir=out_dir,
        seed=target.seed,
        finetune_steps=steps,
        qat_seed=target.qat_seed,
        calib_samples=target.calib_samples,
        calib_seed=target.calib_seed,
        config_id=target.config_id,
        check=True,
    )


def export_targets(
    targets: list[ConfigTarget], *, out_dirs: list[Path], finetune_steps: int, workers: int
) -> list[Any]:
    """:func:`export_target` of every target (into the matching ``out_dirs``), on
    ``workers`` processes (spawned, one torch thread each) when there is more than one
    target and ``workers`` > 1, else in this process. Exports are independent and
    deterministic; only the timing that follows needs the machine to itself."""
    jobs = list(zip(targets, out_dirs, strict=True))
    if workers <= 1 or len(jobs) <= 1:
        return [export_target(t, out_dir=d, finetune_steps=finetune_steps) for t, d in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no forked torch/ORT thread state
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        futures = [
            pool.submit(export_target, t, out_dir=d, finetune_steps=finetune_steps) for t, d in jobs
        ]
        return [f.result() for f in futures]


def prepare_config(
    target: ConfigTarget,
    *,
    exported: Any,
    profile: HardwareProfile,
    batches: tuple[int, ...] = BATCHES,
) -> Prepared:
    """The validation row of ``target`` from its export (``exported``, its
    :func:`export_target` result: files and accuracy check), simulated on ``profile`` at
    every batch size, with ONNX Runtime sessions ready for :func:`time_configs` (module
    docstring)."""
    from lowbit import hwsim
    from lowbit.models.accuracy import as_model_input
    from lowbit.models.bridge import to_workload
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.data import load_split
    from lowbit.models.export.ort import ort_session
    from lowbit.models.train import load_trained

    plan = CompressionPlan.from_dict(target.plan)
    check = exported.deploy["check"]
    fake = target.fake_quant_test
    if fake is None:
        fake = check["accuracy_fake_quant"]
    row: dict[str, Any] = {
        "config_id": target.config_id,
        "source": target.source,
        "method": target.method,
        "accuracy_fake_quant": fake,
        "accuracy_int8": check["accuracy_int8"],
        "accuracy_diff_points": (check["accuracy_int8"] - fake) * 100,
        "accuracy_fp32_onnx": check["accuracy_fp32_onnx"],
        "argmax_agreement": check["argmax_agreement"],
        "max_abs_logit_diff": check["max_abs_logit_diff"],
        # the share of activation codes equal in fake-quant and INT8, worst layer: end to end,
        # and with each layer fed the INT8 model's own input codes
        "min_code_agreement": check.get("min_code_agreement"),
        "min_code_agreement_forced": check.get("min_code_agreement_forced"),
    }
    base = load_trained(target.model, seed=target.seed)
    x, _ = load_split(base.dataset, "test")
    x = as_model_input(base, x).numpy()
    feeds = {}
    for batch in batches:
        if batch > len(x):
            raise ValueError(f"batch {batch} is larger than the test split ({len(x)} samples)")
        feeds[batch] = x[:batch]
        workload = to_workload(
            base, plan, batch=batch, round_trip=profile.overheads.two_grid_round_trip
        )
        sim = hwsim.simulate(workload, profile)
        row[f"simulated_ms_b{batch}"] = sim.latency_s * 1e3
        row[f"memory_elements_b{batch}"] = memory_elements(base, workload)
    row["sim_layers"] = len(workload.layers)
    # kernels hwsim charges an operator for: each GEMM (low-rank: two), each memory-only layer
    # (+ the Clip of each sub-8-bit activation, when the profile prices it)
    row["sim_kernels"] = sum(max(1, len(layer.gemms())) for layer in workload.layers)
    if profile.overheads.narrow_activation_cycles:
        row["sim_kernels"] += sum(
            (2 if layer.op == "matmul" else 1)
            for layer in workload.layers
            if layer.gemms() and layer.compression.a_storage_bits < 8
        )
    row["ort_int8_ops"] = sum(exported.deploy["ort_kernels"]["int8"].values())
    row["search_latency_ms"] = target.search_latency_ms
    row["export_dir"] = str(exported.out_dir)
    row["int8_kernels"] = exported.deploy["ort_kernels"]["int8"]
    paths = {"int8": exported.int8_path, "fp32": exported.fp32_path}
    sessions = {kind: ort_session(str(path)) for kind, path in paths.items()}
    return Prepared(row, sessions, feeds)


def time_configs(
    prepared: list[Prepared], *, repeats: int = 100, warmup: int = 20, rounds: int = 4
) -> dict[int, tuple[list[float], list[float]] | None]:
    """Time every model of ``prepared`` at every batch size, round-robin: ``rounds`` rounds,
    each running every model ``ceil(repeats / rounds)`` times in a shuffled order (fixed
    seed), so a load spike on this machine or a neighbour's cache footprint lands on all
    configurations alike rather than on one. Under a clock track with a vector probe, only the
    rounds timed on a quiet core count, and a model none of whose rounds was is timed again
    (:mod:`lowbit.models.hostcal.quiet`: the calibration's own rule, so the simulated and the
    measured times are of the same core). Fills each row's
    ``measured_{int8,fp32}_ms_b{B}`` (median of all runs), ``iqr_..._ms_b{B}``,
    ``timed_runs`` and ``int8_speedup_vs_fp32_b{B}``, and the simulation error; returns,
    per batch size, the INT8 medians of the even and of the odd rounds (two independent
    measurements, for the measurement's own repeatability: of the quiet rounds, or of all
    where a model has fewer than two quiet ones), or None with a single round."""
    from lowbit.models.hostcal.clock import active_track
    from lowbit.models.hostcal.quiet import again_until_quiet, quiet_only, timed_quiet
    from lowbit.models.hostcal.timing import bind, run_times_s, timing_of, warm_up

    if repeats < 1 or warmup < 0 or rounds < 1:
        raise ValueError(
            f"need repeats, rounds >= 1 and warmup >= 0, got {repeats}, {rounds}, {warmup}"
        )
    rounds = min(rounds, repeats)
    per_round = -(-repeats // rounds)
    bound = {}
    for i, p in enumerate(prepared):
        for kind, session in p.sessions.items():
            for batch, x in p.feeds.items():
                bound[i, kind, batch] = (session, bind(session, x=x))
                if warmup:
                    warm_up(session, binding=bound[i, kind, batch][1], runs=warmup)
    # each round's runs with the probe's least ratio beside them (quiet.timed_quiet)
    samples: dict[tuple, list] = {key: [] for key in bound}
    keys = list(bound)
    order = np.random.default_rng(0)

    def run(key: tuple) -> None:
        session, binding = bound[key]
        samples[key].append(
            timed_quiet(lambda: run_times_s(session, binding=binding, runs=per_round))
        )

    for _ in range(rounds):
        for index in order.permutation(len(keys)):
            run(keys[index])
    # a model no round timed on a quiet core is timed again (quiet.least_disturbed's rule)
    again_until_quiet([samples[k] for k in keys], run=lambda index: run(keys[index]))
    track = active_track()
    halves: dict[int, tuple[list[float], list[float]] | None] = {}
    without: set[int] = set()  # batches where some model has a single round: no halves
    for (i, kind, batch), timed in samples.items():
        parts = quiet_only(timed, track=track)
        row = prepared[i].row
        timing = timing_of(np.concatenate(parts))
        row[f"measured_{kind}_ms_b{batch}"] = timing.median_s * 1e3
        row[f"iqr_{kind}_ms_b{batch}"] = timing.iqr_s * 1e3
        row["timed_runs"] = timing.runs
        if kind != "int8":
            continue
        if len(parts) < 2:
            # one quiet round (or one round): its halves from all its rounds
            parts = [r for r, _ in timed]
        if len(parts) < 2:
            without.add(batch)
            continue
        even, odd = halves.setdefault(batch, ([], []))
        even.append(float(np.median(np.concatenate(parts[0::2]))) * 1e3)
        odd.append(float(np.median(np.concatenate(parts[1::2]))) * 1e3)
    for batch in without:
        halves[batch] = None
    for p in prepared:
        row = p.row
        for batch in p.feeds:
            measured = row[f"measured_int8_ms_b{batch}"]
            row[f"sim_error_pct_b{batch}"] = (row[f"simulated_ms_b{batch}"] / measured - 1) * 100
            row[f"int8_speedup_vs_fp32_b{batch}"] = row[f"measured_fp32_ms_b{batch}"] / measured
    return halves
