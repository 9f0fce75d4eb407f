"""What a Ray worker evaluates: requests, outcomes and the evaluator contract.

Contract of an evaluator (:class:`Evaluator`): built once per worker from a small picklable
spec (``spec.build()``), it holds everything heavy (the trained model, the data, the
profile) and answers :class:`TrialRequest` objects with :class:`TrialOutcome` snapshots.
Both are frozen and picklable, so they are all that crosses the process boundary. An
evaluator may raise; the Ray actor turns the exception into a failed outcome.

A request names its rung (:mod:`lowbit.search.fidelity`: 0 cheap, 1 full; the test split is
always measured at the full rung); the outcome echoes it with the number of images its
accuracy came from. The zoo evaluator is :mod:`lowbit.search.zoo_evaluator`.

Co-design: a request's settings may carry the reserved entry ``HARDWARE_KEY`` ("@hardware",
:mod:`lowbit.search.codesign`) with profile overrides; the zoo evaluator then simulates on that
variant of the profile (built from ``spec.codesign``) and reports its area.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .fidelity import FULL, Measurement

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
        rung: 0 (cheap: a val subset, no QAT) or 1 (full); "test" is always at rung 1.
    """

    number: int
    settings: dict[str, dict[str, Any]]
    split: str = "val"
    detail: bool = False
    rung: int = FULL

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.rung not in (0, FULL) or (self.split == "test" and self.rung != FULL):
            raise ValueError(f"rung must be 0 or 1 (1 on test), got {self.rung!r}")


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
    #: the rung measured (:mod:`lowbit.search.fidelity`) and its number of images (0: unknown)
    rung: int = FULL
    samples: int = 0

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
    #: what the evaluator measures on (split sizes, calibration, QAT; None: not reported)
    measurement: Measurement | None = None

    @classmethod
    def of_w8a8(
        cls,
        *,
        dataset: str,
        fp32_val: float,
        fp32_test: float,
        val: TrialOutcome,
        test: TrialOutcome,
        measurement: Measurement | None = None,
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
            measurement=measurement,
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
    samples: int = 0,
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
        rung=request.rung,
        samples=samples,
    )
