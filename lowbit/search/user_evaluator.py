"""The evaluator of a user's own model, and how it is shipped to the Ray workers once.

The driver puts ``(model, calib, evaluate, evaluate_test)`` into the Ray object store once
(:func:`ship`); every actor fetches it once when it builds its :class:`UserEvaluator`, so a
trial request carries only the per-layer settings. Per trial the evaluator compresses the
model with the trial's plan (activations calibrated on ``calib``), scores it with the user's
``evaluate(model) -> float`` (higher is better), and simulates the uncompressed model's
workload under the same plan (``models.to_workload``, traced prune groups included).

Classes and functions defined in a script or notebook are pickled by value by Ray; those in a
module the workers cannot import (a test file, a module next to a notebook) are registered
to be pickled by value for the run (:func:`ship`), so user code needs no packaging.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lowbit.hwsim import DEFAULT_ENGINE
from lowbit.hwsim.profile import HardwareProfile

from .evaluator import Evaluator, Reference, TrialOutcome, TrialRequest, measured_outcome
from .fidelity import Measurement

__all__ = ["UserEvaluatorSpec", "UserEvaluator", "ship", "score"]

#: our own packages: always importable by the workers
_OWN = {"lowbit"}


def score(evaluate: Callable[[Any], Any], model: Any, *, what: str) -> float:
    """``evaluate(model)`` as a finite float; a clear ValueError otherwise."""
    value = evaluate(model)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"evaluate({what}) must return a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"evaluate({what}) returned {value}, not a finite number")
    return value


class UserEvaluatorSpec:
    """How a worker builds a :class:`UserEvaluator` (picklable; holds an object-store ref).

    Not a dataclass on purpose: the run summary lists a dataclass spec's fields, and the
    object reference is not JSON (the user model is described in ``user_model.json``).
    ``summary_sections``: what summary.json records instead (its ``evaluator`` and
    ``user_model`` sections; :func:`lowbit.search.summary.run_summary` adds them).
    """

    __slots__ = (
        "payload",
        "profile",
        "name",
        "pinned",
        "fp32",
        "dataset",
        "engine",
        "threads",
        "summary_sections",
    )

    def __init__(
        self,
        *,
        payload: Any,
        profile: HardwareProfile,
        name: str,
        pinned: tuple[str, ...],
        fp32: tuple[float, float],
        dataset: str = "user",
        engine: str = DEFAULT_ENGINE,
        threads: int = 1,
        summary_sections: dict[str, Any] | None = None,
    ) -> None:
        self.payload, self.profile, self.name, self.pinned = payload, profile, name, pinned
        self.fp32, self.dataset, self.engine, self.threads = fp32, dataset, engine, threads
        self.summary_sections = dict(summary_sections or {})

    def __getstate__(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def build(self) -> UserEvaluator:
        return UserEvaluator(self)


class UserEvaluator(Evaluator):
    """Holds the user's model, calibration batch and metric functions (one per worker)."""

    def __init__(self, spec: UserEvaluatorSpec) -> None:
        import torch

        torch.set_num_threads(spec.threads)
        self.spec = spec
        payload = spec.payload
        if not isinstance(payload, tuple):  # an object-store reference (in a worker)
            import ray

            payload = ray.get(payload)
        self.base, self.calib, self.evaluate_fn, self.evaluate_test = payload

    def plan(self, settings: dict[str, dict[str, Any]]):
        """The trial's plan; pinned first/last layers are given W8A8 explicitly (layers the
        space does not name stay float: the untouched ones)."""
        from lowbit.models.compression.plan import CompressionPlan, LayerSpec

        layers = {
            name: LayerSpec(**kw) for name, kw in settings.items() if not name.startswith("@")
        }
        for name in self.spec.pinned:
            layers[name] = LayerSpec(w_bits=8, a_bits=8)
        return CompressionPlan(layers=layers, pin_first_last=False)

    def evaluate(self, request: TrialRequest) -> TrialOutcome:
        from lowbit import hwsim, models

        start = time.perf_counter()
        plan = self.plan(request.settings)
        compressed = models.compress(self.base, plan, calib=self.calib)
        fn = self.evaluate_fn
        if request.split == "test" and self.evaluate_test is not None:
            fn = self.evaluate_test
        metric = score(fn, compressed, what="compressed model")
        workload = models.to_workload(
            self.base,
            plan,
            name=self.spec.name,
            round_trip=self.spec.profile.overheads.two_grid_round_trip,
        )
        sim = hwsim.simulate(workload, self.spec.profile, engine=self.spec.engine)
        return measured_outcome(
            request, accuracy=metric, sim=sim, workload=workload, plan=plan, started_s=start
        )

    def reference(self, w8a8: dict[str, dict[str, Any]]) -> Reference:
        from lowbit.hwsim.errors import LowbitError

        outcomes = {}
        for split in ("val", "test"):
            try:
                outcomes[split] = self.evaluate(TrialRequest(-1, w8a8, split=split))
            except Exception as exc:
                raise LowbitError(
                    f"the uniform W8A8 reference failed: {type(exc).__name__}: {exc}"
                ) from exc
        return Reference.of_w8a8(
            dataset=self.spec.dataset,
            fp32_val=self.spec.fp32[0],
            fp32_test=self.spec.fp32[1],
            val=outcomes["val"],
            test=outcomes["test"],
            measurement=Measurement(
                val_samples=None,
                test_samples=None,
                calib_samples=len(self.calib),
                calib_split="user",
                calib_seed=None,
                qat_steps=0,
                threads=self.spec.threads,
            ),
        )


def _user_modules(objects: list[Any]) -> set[str]:
    """Modules defining ``objects`` that the workers may not be able to import: neither
    ``__main__`` (pickled by value anyway), nor installed (under ``sys.prefix``), nor ours."""
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    out = set()
    for obj in objects:
        obj = getattr(obj, "func", obj)  # functools.partial
        obj = getattr(obj, "__func__", obj)  # bound method
        name = getattr(obj, "__module__", None) or type(obj).__module__
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if module is None or name == "__main__" or file is None or name.split(".")[0] in _OWN:
            continue
        path = Path(file).resolve()
        if any(path.is_relative_to(prefix) for prefix in prefixes):
            continue
        out.add(name)
    return out


class ship:
    """Context manager: the payload in the Ray object store, user modules pickled by value.

    ``with ship(model, calib, evaluate, evaluate_test) as ref:`` — Ray must be running.
    """

    def __init__(self, model, calib, evaluate, evaluate_test) -> None:
        self.payload = (model, calib, evaluate, evaluate_test)
        objects = [*(type(m) for m in model.modules()), evaluate, evaluate_test]
        self.modules = _user_modules([o for o in objects if o is not None])
        self.registered: list[str] = []

    def __enter__(self):
        import ray
        from ray import cloudpickle

        for name in sorted(self.modules):
            if name not in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.register_pickle_by_value(sys.modules[name])
                self.registered.append(name)
        try:
            return ray.put(self.payload)
        except Exception:
            self._unregister()
            raise

    def __exit__(self, *exc: object) -> None:
        self._unregister()

    def _unregister(self) -> None:
        from ray import cloudpickle

        for name in self.registered:
            cloudpickle.unregister_pickle_by_value(sys.modules[name])
        self.registered = []
