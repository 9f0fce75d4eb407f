"""What a Ray worker evaluates, and the zoo evaluator that does it.

Contract of an evaluator (:class:`Evaluator`): built once per worker from a small picklable
spec (``spec.build()``), it holds everything heavy (the trained model, the data, the
profile) and answers :class:`TrialRequest` objects with :class:`TrialOutcome` snapshots.
Both are frozen and picklable, so they are all that crosses the process boundary. An
evaluator may raise; the Ray actor turns the exception into a failed outcome.

The zoo evaluator (:class:`ZooEvaluator`) does, per trial: compress the trained model with
the trial's plan (low rank → prune → quantize, activations calibrated on the val split),
optionally recover with a few QAT steps on the train split (``finetune_steps``, default 0;
deterministic, so the test re-evaluation sees the same model), measure accuracy on the
requested split, build the hwsim workload of the base model under the same plan
(``models.bridge.to_workload``) and simulate it (analytic engine) for latency and energy.
Model size = stored weight bits after pruning/low rank (see :func:`weight_bytes`).

Co-design: a request's settings may carry the reserved entry ``HARDWARE_KEY`` ("@hardware",
:mod:`lowbit.search.codesign`) with profile overrides; the zoo evaluator then simulates on that
variant of the profile (built from ``spec.codesign``) and reports its area.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lowbit.hwsim.profile import HardwareProfile

from .codesign import HARDWARE_KEY, CoDesign

if TYPE_CHECKING:
    from lowbit.hwsim.result import SimResult
    from lowbit.hwsim.workload import Workload

__all__ = [
    "SPLITS",
    "TrialRequest",
    "LayerCost",
    "TrialOutcome",
    "Reference",
    "Evaluator",
    "ZooEvaluatorSpec",
    "ZooEvaluator",
    "weight_bytes",
    "layer_costs",
    "measured_outcome",
]

SPLITS = ("val", "test")


@dataclass(frozen=True, slots=True)
class TrialRequest:
    """One configuration to evaluate.

    Attributes:
        number: the Optuna trial number (echoed back; -1 for requests outside a study).
        settings: layer name -> :class:`lowbit.models.compression.plan.LayerSpec` keyword
        arguments; with
            co-design also ``HARDWARE_KEY`` -> profile overrides (module docstring).
        split: "val" during the search, "test" for the final Pareto configurations.
        detail: also return per-layer simulation results.
    """

    number: int
    settings: dict[str, dict[str, Any]]
    split: str = "val"
    detail: bool = False

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")


@dataclass(frozen=True, slots=True)
class LayerCost:
    """Simulated cost of one layer (from ``hwsim.LayerResult``)."""

    name: str
    op: str
    w_bits: int
    a_bits: int
    macs: int
    total_cycles: int
    latency_ms: float
    energy_mj: float


@dataclass(frozen=True, slots=True)
class TrialOutcome:
    """The measured objectives of one request; ``error`` set means the trial failed."""

    number: int
    split: str
    accuracy: float = float("nan")
    latency_ms: float = float("nan")
    energy_mj: float = float("nan")
    size_kib: float = float("nan")
    duration_s: float = 0.0
    error: str | None = None
    plan_json: str = ""
    total_cycles: int = 0
    layers: tuple[LayerCost, ...] = ()
    #: silicon area of the simulated hardware (co-design; NaN when not computed)
    area_mm2: float = float("nan")

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True, slots=True)
class Reference:
    """Numbers every method is compared against (FP32 accuracy, uniform W8A8 cost)."""

    dataset: str
    fp32_val: float
    fp32_test: float
    w8a8_latency_ms: float
    w8a8_energy_mj: float
    w8a8_size_kib: float
    w8a8_val: float
    w8a8_test: float

    @classmethod
    def of_w8a8(
        cls,
        *,
        dataset: str,
        fp32_val: float,
        fp32_test: float,
        val: TrialOutcome,
        test: TrialOutcome,
    ) -> Reference:
        """The reference from the FP32 accuracies and the W8A8 outcomes on val and test
        (cost from the val outcome: it does not depend on the split)."""
        return cls(
            dataset=dataset,
            fp32_val=fp32_val,
            fp32_test=fp32_test,
            w8a8_latency_ms=val.latency_ms,
            w8a8_energy_mj=val.energy_mj,
            w8a8_size_kib=val.size_kib,
            w8a8_val=val.accuracy,
            w8a8_test=test.accuracy,
        )


class Evaluator(abc.ABC):
    """Evaluates configurations for one model on one target (see the module docstring)."""

    @abc.abstractmethod
    def evaluate(self, request: TrialRequest) -> TrialOutcome:
        """Objectives of ``request`` (may raise: the worker records the failure)."""

    @abc.abstractmethod
    def reference(self, w8a8: dict[str, dict[str, Any]]) -> Reference:
        """FP32 accuracy and the cost/accuracy of the uniform W8A8 ``settings``."""

    def hawq_inputs(
        self,
        *,
        layers: tuple[str, ...],
        options: tuple[tuple[int, int], ...],
        fixed: dict[str, dict[str, Any]],
        probes: int,
        seed: int,
    ) -> Any:
        """Per-layer Hessian traces, weight perturbations and latencies for the HAWQ
        baseline (:class:`lowbit.search.hawq.HawqInputs`); ``fixed`` = settings of other layers."""
        raise NotImplementedError(f"{type(self).__name__} does not support the HAWQ baseline")


def weight_bytes(workload: Workload) -> float:
    """Bytes of stored weights: Σ over weight GEMMs of N·K·count · density · w_bits / 8.

    Structured pruning and low rank are in the GEMM shapes; N:M / unstructured sparsity
    count only non-zeros (index metadata is not counted); float layers count 32 bits.
    Activation × activation products hold no weights.
    """
    total = 0.0
    for layer in workload.layers:
        for g in layer.gemms():
            if not g.weights_are_activations:
                total += g.N * g.K * g.count * g.weight_density * g.w_bits / 8
    return total


def layer_costs(sim: SimResult) -> tuple[LayerCost, ...]:
    """Per-layer latency and energy of a simulation result."""
    return tuple(
        LayerCost(
            name=r.name,
            op=r.op,
            w_bits=r.w_bits,
            a_bits=r.a_bits,
            macs=r.macs,
            total_cycles=r.total_cycles,
            latency_ms=r.total_cycles / sim.clock_hz * 1e3,
            energy_mj=r.energy_j * 1e3,
        )
        for r in sim.layers
    )


def measured_outcome(
    request: TrialRequest,
    *,
    accuracy: float,
    sim: SimResult,
    workload: Workload,
    plan: Any,
    started_s: float,
    area_mm2: float = float("nan"),
) -> TrialOutcome:
    """The outcome of ``request``: its measured ``accuracy``, the simulation ``sim`` of
    ``workload`` compressed by ``plan`` (a ``models.plan.CompressionPlan``), and the time
    since ``started_s`` (a ``time.perf_counter()`` value)."""
    return TrialOutcome(
        number=request.number,
        split=request.split,
        accuracy=accuracy,
        latency_ms=sim.latency_s * 1e3,
        energy_mj=sim.energy_j * 1e3,
        size_kib=weight_bytes(workload) / 1024,
        duration_s=time.perf_counter() - started_s,
        plan_json=plan.to_json(),
        total_cycles=sim.total_cycles,
        layers=layer_costs(sim) if request.detail else (),
        area_mm2=area_mm2,
    )


@dataclass(frozen=True, slots=True)
class ZooEvaluatorSpec:
    """How to build a :class:`ZooEvaluator` in a worker (small and picklable)."""

    model: str
    profile: HardwareProfile
    seed: int = 0
    pin_first_last: bool = False
    engine: str = "analytic"
    threads: int = 1
    finetune_steps: int = 0
    #: the hardware parameters of a co-design search (variants of ``profile``)
    codesign: CoDesign | None = None

    def build(self) -> ZooEvaluator:
        return ZooEvaluator(self)


class ZooEvaluator(Evaluator):
    """Holds a trained zoo model and its val/test data; evaluates plans on them."""

    def __init__(self, spec: ZooEvaluatorSpec) -> None:
        import torch

        from lowbit import models
        from lowbit.models.accuracy import as_model_input
        from lowbit.models.data import load_split

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.base = models.load_trained(spec.model, seed=spec.seed)
        self.dataset = self.base.dataset
        self.data = {}
        for split in SPLITS:
            x, y = load_split(self.dataset, split)
            self.data[split] = (as_model_input(self.base, x), y)
        self.calib = self.data["val"][0]

    def _plan(self, settings: dict[str, dict[str, Any]]):
        from lowbit.models.compression.plan import CompressionPlan, LayerSpec

        layers = {name: LayerSpec(**kw) for name, kw in settings.items() if name != HARDWARE_KEY}
        return CompressionPlan(layers=layers, pin_first_last=self.spec.pin_first_last)

    def _profile(self, settings: dict[str, dict[str, Any]]) -> HardwareProfile:
        """The profile to simulate on: the co-design variant the settings choose, if any."""
        overrides = settings.get(HARDWARE_KEY)
        if overrides is None:
            return self.spec.profile
        if self.spec.codesign is None:
            raise ValueError(f"settings choose hardware {overrides} but the spec has no codesign")
        return self.spec.codesign.profile(overrides)

    def _simulate(self, plan, profile: HardwareProfile | None = None) -> tuple[SimResult, Workload]:
        from lowbit import hwsim
        from lowbit.models.bridge import to_workload

        workload = to_workload(self.base, plan, name=self.spec.model)
        profile = self.spec.profile if profile is None else profile
        return hwsim.simulate(workload, profile, engine=self.spec.engine), workload

    def _accuracy(self, plan, split: str) -> float:
        from lowbit import models
        from lowbit.models.accuracy import accuracy

        compressed = models.compress(self.base, plan, calib=self.calib)
        if self.spec.finetune_steps:
            compressed = models.finetune(
                compressed, steps=self.spec.finetune_steps, seed=self.spec.seed
            )
        x, y = self.data[split]
        return accuracy(compressed, x, y)

    def evaluate(self, request: TrialRequest) -> TrialOutcome:
        start = time.perf_counter()
        plan = self._plan(request.settings)
        profile = self._profile(request.settings)
        acc = self._accuracy(plan, request.split)
        sim, workload = self._simulate(plan, profile)
        area = float("nan")
        if HARDWARE_KEY in request.settings and profile.area is not None:
            from lowbit.hwsim.area import area_mm2

            area = area_mm2(profile)
        return measured_outcome(
            request,
            accuracy=acc,
            sim=sim,
            workload=workload,
            plan=plan,
            started_s=start,
            area_mm2=area,
        )

    def reference(self, w8a8: dict[str, dict[str, Any]]) -> Reference:
        from lowbit.models.accuracy import accuracy

        fp32 = {split: accuracy(self.base, *self.data[split]) for split in SPLITS}
        val = self.evaluate(TrialRequest(-1, w8a8, split="val"))
        test = self.evaluate(TrialRequest(-1, w8a8, split="test"))
        return Reference.of_w8a8(
            dataset=self.dataset, fp32_val=fp32["val"], fp32_test=fp32["test"], val=val, test=test
        )

    def hawq_inputs(
        self,
        *,
        layers: tuple[str, ...],
        options: tuple[tuple[int, int], ...],
        fixed: dict[str, dict[str, Any]],
        probes: int,
        seed: int,
    ) -> Any:
        from lowbit.models.accuracy import as_model_input
        from lowbit.models.data import load_split

        from .hawq import HawqInputs, hutchinson_traces, weight_perturbations

        x, y = load_split(self.dataset, "train")
        x = as_model_input(self.base, x)
        traces, counts = hutchinson_traces(self.base, x, y, layers=layers, probes=probes, seed=seed)
        perturb = weight_perturbations(
            self.base, layers=layers, bits=sorted({w for w, _ in options})
        )
        latency: dict[str, dict[str, float]] = {name: {} for name in layers}
        totals = {}
        for w, a in options:
            settings = {name: {"w_bits": w, "a_bits": a} for name in layers}
            sim, _ = self._simulate(self._plan({**fixed, **settings}))
            key = f"{w}/{a}"
            totals[key] = sim.latency_s * 1e3
            for cost in layer_costs(sim):
                if cost.name in latency:
                    latency[cost.name][key] = cost.latency_ms
        return HawqInputs(
            layers=tuple(layers),
            options=tuple(options),
            traces=traces,
            params=counts,
            perturbation=perturb,
            latency_ms=latency,
            total_latency_ms=totals,
        )
