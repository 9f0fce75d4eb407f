"""A cheap, deterministic evaluator for testing the search driver (as ``optuna.testing``).

:class:`SyntheticEvaluator` scores a configuration with closed-form objectives instead of a
trained model and the simulator, so properties of the driver (resume, failures, timeouts,
storage, Pareto bookkeeping) are tested in milliseconds per trial. It can be told to fail,
return NaN or hang on given trial numbers, and to log every evaluation to a file.

Objectives (per non-matmul layer, with w/a bits, keep ratio k, rank fraction r, N:M n/m):
    latency_ms = 0.1 + Σ (w·a / 64) · k · r · (n/m)
    accuracy   = 0.95 − Σ [0.002·((8 − w)² + (8 − a)²) + 0.05·(1 − k) + 0.03·(1 − r)
                 + 0.01·(N:M used)]

Co-design: the settings' hardware entry (``HARDWARE_KEY``) is ignored, so a co-design space
runs too (every hardware scores alike; the area constraint still applies).

Rungs (with ``fidelity`` two rungs, :mod:`lowbit.search.fidelity`): the full rung measures the
accuracy above; the cheap rung measures it plus ``cheap_bias`` plus ``cheap_noise · u``, where
``u`` in [-1, 1] is a fixed function of the settings (:func:`synthetic_cheap_accuracy`), so a
test knows every cheap result in advance.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .codesign import HARDWARE_KEY
from .config import DeploymentConfig
from .evaluator import Evaluator, Reference, TrialOutcome, TrialRequest
from .fidelity import CHEAP, Fidelity, Measurement

__all__ = [
    "example_config",
    "SyntheticSpec",
    "SyntheticEvaluator",
    "synthetic_cheap_accuracy",
    "synthetic_objectives",
]


def synthetic_objectives(settings: dict[str, dict[str, Any]]) -> tuple[float, float]:
    """(accuracy, latency_ms) of per-layer ``settings`` (module docstring)."""
    latency, accuracy = 0.1, 0.95
    for kw in _layers(settings).values():
        w, a = kw["w_bits"], kw["a_bits"]
        keep = kw.get("keep", 1.0)
        rank = kw.get("rank_fraction") or 1.0
        nm = kw.get("nm")
        density = nm[0] / nm[1] if nm else 1.0
        latency += (w * a / 64) * keep * rank * density
        accuracy -= 0.002 * ((8 - w) ** 2 + (8 - a) ** 2)
        accuracy -= 0.05 * (1 - keep) + 0.03 * (1 - rank) + (0.01 if nm else 0.0)
    return accuracy, latency


def synthetic_cheap_accuracy(
    settings: dict[str, dict[str, Any]], *, noise: float, bias: float = 0.0
) -> float:
    """The cheap-rung accuracy of ``settings``: the full-rung accuracy + ``bias`` +
    ``noise`` · u, u in [-1, 1] from the SHA-256 of the settings (deterministic)."""
    key = json.dumps(settings, sort_keys=True, default=list).encode()
    u = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64 * 2 - 1
    return synthetic_objectives(settings)[0] + bias + noise * u


def _layers(settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The per-layer settings (without a co-design hardware entry)."""
    return {name: kw for name, kw in settings.items() if name != HARDWARE_KEY}


def _plan_json(settings: dict[str, dict[str, Any]]) -> str:
    """The settings as a CompressionPlan JSON object (written without importing torch)."""
    layers = {
        name: {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
        for name, kw in _layers(settings).items()
    }
    return json.dumps({"version": 1, "pin_first_last": False, "layers": layers})


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """Picklable recipe of a :class:`SyntheticEvaluator` (what a Ray actor receives)."""

    fail_numbers: tuple[int, ...] = ()
    nan_numbers: tuple[int, ...] = ()
    hang_numbers: tuple[int, ...] = ()
    sleep_s: float = 0.0
    log_path: str | None = None
    fidelity: Fidelity = field(default_factory=Fidelity)
    cheap_noise: float = 0.0
    cheap_bias: float = 0.0
    val_samples: int = 5000
    test_samples: int = 10000

    def build(self) -> SyntheticEvaluator:
        return SyntheticEvaluator(self)


class SyntheticEvaluator(Evaluator):
    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec

    def evaluate(self, request: TrialRequest) -> TrialOutcome:
        start = time.perf_counter()
        if self.spec.log_path:
            rung = " cheap" if request.rung == CHEAP else ""
            with Path(self.spec.log_path).open("a", encoding="utf-8") as fh:
                fh.write(f"{request.number} {request.split}{rung}\n")
        if request.number in self.spec.hang_numbers:
            time.sleep(3600)
        if self.spec.sleep_s:
            time.sleep(self.spec.sleep_s)
        if request.number in self.spec.fail_numbers:
            raise RuntimeError(f"synthetic failure of trial {request.number}")
        accuracy, latency = synthetic_objectives(request.settings)
        samples = self.spec.val_samples if request.split == "val" else self.spec.test_samples
        if request.rung == CHEAP:
            if not self.spec.fidelity.multi:
                raise ValueError("this search has no cheap rung (fidelity: full)")
            accuracy = synthetic_cheap_accuracy(
                request.settings, noise=self.spec.cheap_noise, bias=self.spec.cheap_bias
            )
            samples = self.spec.fidelity.cheap_val or samples
        if request.number in self.spec.nan_numbers:
            accuracy = float("nan")
        if request.split == "test":
            accuracy -= 0.005  # test is a little harder than val, as with real data
        return TrialOutcome(
            number=request.number,
            split=request.split,
            accuracy=accuracy,
            latency_ms=latency,
            energy_mj=latency * 0.5,
            size_kib=sum(kw["w_bits"] for kw in _layers(request.settings).values()) / 8,
            duration_s=time.perf_counter() - start,
            plan_json=_plan_json(request.settings),
            total_cycles=int(latency * 1e6),
            rung=request.rung,
            samples=samples,
        )

    def reference(self, w8a8: dict[str, dict[str, Any]]) -> Reference:
        accuracy, latency = synthetic_objectives(w8a8)
        return Reference(
            dataset="synthetic",
            fp32_val=0.95,
            fp32_test=0.945,
            w8a8_latency_ms=latency,
            w8a8_energy_mj=latency * 0.5,
            w8a8_size_kib=sum(kw["w_bits"] for kw in _layers(w8a8).values()) / 8,
            w8a8_val=accuracy,
            w8a8_test=accuracy - 0.005,
            measurement=Measurement(
                val_samples=self.spec.val_samples,
                test_samples=self.spec.test_samples,
                calib_samples=self.spec.fidelity.calib_samples or self.spec.val_samples,
                cheap_val_samples=self.spec.fidelity.cheap_val,
            ),
        )


def example_config(**changes: Any) -> DeploymentConfig:
    """A valid :class:`lowbit.search.config.DeploymentConfig` for tests: digits-cnn on
    npu-bitfusion, an empty plan (every layer W8A8), zero accuracies, with ``changes``
    applied (any field)."""
    fields: dict[str, Any] = {
        "id": "joint-00001",
        "model": "digits-cnn",
        "dataset": "digits",
        "seed": 0,
        "hardware": "npu-bitfusion",
        "hardware_hash": "0" * 64,
        "method": "joint",
        "study": "test",
        "trial_number": 1,
        "plan": {"version": 1, "layers": {}},
        "accuracy_val": 0.0,
        "accuracy_test": 0.0,
        "fp32_val": 0.0,
        "fp32_test": 0.0,
        "engine": "analytic",
        "latency_ms": 0.01,
        "energy_mj": 0.0,
        "total_cycles": 1,
        "size_kib": 0.0,
        "layers": (),
        "lowbit_version": "0.2.0",
        "val_samples": 359,
        "test_samples": 360,
        "qat_steps": 0,
        "qat_seed": 0,
        "calib_samples": 359,
        "calib_seed": 0,
        "threads": 1,
    }
    return DeploymentConfig(**{**fields, **changes})
