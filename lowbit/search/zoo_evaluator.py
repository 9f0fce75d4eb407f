"""The zoo evaluator: a trained zoo model, its data, and what one trial measures.

Per request (:class:`ZooEvaluator`): compress the trained model with the trial's plan (low
rank → prune → quantize; activations calibrated on the fixed calibration subset of val,
:mod:`lowbit.search.fidelity`); at the full rung recover with ``finetune_steps`` QAT steps on
the train split (deterministic, seeded with ``qat_seed``, default the training seed) and
measure accuracy on the whole requested split; at the cheap rung measure the fixed cheap
subset of val, without QAT. Then build the hwsim workload of the base model under the same
plan (``models.bridge.to_workload``) and simulate it (analytic engine) for latency and
energy, exact at every rung. Model size = stored weight bits after pruning/low rank
(:func:`lowbit.search.evaluator.weight_bytes`).

Shared once: :func:`share_zoo_data` puts the trained model and the val/test tensors into
Ray's object store (the driver trained or loaded the model); each worker fetches them when
it builds its evaluator, so workers read neither the dataset files nor the model cache (QAT
still reads the train split itself, in ``models.finetune``). A spec without a payload (built
by hand) makes each worker load both itself.

A worker keeps the compressed model of its last cheap-rung request: the driver sends a
promotion to the worker that has just measured the trial's cheap rung, which then skips
``compress`` (deterministic: it is the model compress would build again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lowbit.hwsim import DEFAULT_ENGINE
from lowbit.hwsim.profile import HardwareProfile

from .codesign import HARDWARE_KEY, CoDesign
from .evaluator import (
    SPLITS,
    Evaluator,
    Reference,
    TrialOutcome,
    TrialRequest,
    layer_costs,
    measured_outcome,
)
from .fidelity import CHEAP, Fidelity, Measurement

if TYPE_CHECKING:
    from lowbit.hwsim.result import SimResult
    from lowbit.hwsim.workload import Workload

__all__ = ["ZooData", "ZooEvaluatorSpec", "ZooEvaluator", "load_zoo_data", "share_zoo_data"]


@dataclass(frozen=True, slots=True)
class ZooData:
    """The trained model and its val/test inputs (shaped as the model takes them) + labels."""

    model: Any
    val: tuple[Any, Any]
    test: tuple[Any, Any]


def load_zoo_data(model: str, *, seed: int) -> ZooData:
    """Load (training if needed) zoo ``model`` and read its val and test splits."""
    from lowbit import models
    from lowbit.models.accuracy import as_model_input
    from lowbit.models.data import load_split

    base = models.load_trained(model, seed=seed)
    data = {}
    for split in SPLITS:
        x, y = load_split(base.dataset, split)
        data[split] = (as_model_input(base, x), y)
    return ZooData(model=base, val=data["val"], test=data["test"])


@dataclass(frozen=True, slots=True)
class ZooEvaluatorSpec:
    """How to build a :class:`ZooEvaluator` in a worker (small and picklable).

    ``fidelity`` gives the rungs and the two val subsets; ``qat_seed`` seeds the QAT steps
    (None: ``seed``); ``payload`` is the object-store reference of a :class:`ZooData`
    (:func:`share_zoo_data`; None: the worker loads it), left out of summary.json.
    """

    model: str
    profile: HardwareProfile
    seed: int = 0
    pin_first_last: bool = False
    engine: str = DEFAULT_ENGINE
    threads: int = 1
    finetune_steps: int = 0
    #: the hardware parameters of a co-design search (variants of ``profile``)
    codesign: CoDesign | None = None
    fidelity: Fidelity = field(default_factory=Fidelity)
    qat_seed: int | None = None
    payload: Any = field(default=None, compare=False, repr=False, metadata={"summary": False})

    def build(self) -> ZooEvaluator:
        return ZooEvaluator(self)


def share_zoo_data(spec: ZooEvaluatorSpec) -> ZooEvaluatorSpec:
    """``spec`` with its model and data in Ray's object store (Ray must be running)."""
    from dataclasses import replace

    import ray

    return replace(spec, payload=ray.put(load_zoo_data(spec.model, seed=spec.seed)))


class ZooEvaluator(Evaluator):
    """Holds a trained zoo model, its val/test data and the fixed val subsets."""

    def __init__(self, spec: ZooEvaluatorSpec) -> None:
        import torch

        from lowbit.models.export.calib_subset import stratified_subset, subset_sha256

        torch.set_num_threads(spec.threads)
        self.spec = spec
        data = spec.payload
        if data is None:
            data = load_zoo_data(spec.model, seed=spec.seed)
        elif not isinstance(data, ZooData):  # an object-store reference
            import ray

            data = ray.get(data)
        self.base = data.model
        self.dataset = self.base.dataset
        self.data = {"val": data.val, "test": data.test}
        fid = spec.fidelity
        x_val, y_val = data.val
        labels = y_val.numpy()
        if fid.calib_samples is None:
            index = torch.arange(len(labels))
            self.calib = x_val
        else:
            index = torch.from_numpy(
                stratified_subset(labels, samples=fid.calib_samples, seed=fid.calib_seed)
            )
            self.calib = x_val[index]
        self.calib_sha256 = subset_sha256(index.numpy())
        self.cheap = None
        if fid.multi:
            index = torch.from_numpy(
                stratified_subset(labels, samples=fid.cheap_val, seed=fid.cheap_seed)
            )
            self.cheap = (x_val[index], y_val[index])
        self.qat_seed = spec.seed if spec.qat_seed is None else spec.qat_seed
        self._last: tuple[str, Any] | None = None  # (plan JSON, model) of the last cheap rung

    def measurement(self) -> Measurement:
        fid = self.spec.fidelity
        return Measurement(
            val_samples=len(self.data["val"][1]),
            test_samples=len(self.data["test"][1]),
            calib_samples=len(self.calib),
            cheap_val_samples=None if self.cheap is None else len(self.cheap[1]),
            calib_split="val",
            calib_seed=fid.calib_seed if fid.calib_samples is not None else None,
            calib_sha256=self.calib_sha256,
            qat_steps=self.spec.finetune_steps,
            qat_seed=self.qat_seed,
            threads=self.spec.threads,
        )

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

        profile = self.spec.profile if profile is None else profile
        workload = to_workload(
            self.base,
            plan,
            name=self.spec.model,
            round_trip=profile.overheads.two_grid_round_trip,
        )
        return hwsim.simulate(workload, profile, engine=self.spec.engine), workload

    def _accuracy(self, plan, request: TrialRequest) -> tuple[float, int]:
        """(accuracy, images measured) of ``plan`` at the request's rung and split."""
        from lowbit import models
        from lowbit.models.accuracy import accuracy

        key = plan.to_json()
        last, self._last = self._last, None
        if last is not None and last[0] == key:
            compressed = last[1]
        else:
            compressed = models.compress(self.base, plan, calib=self.calib)
        if request.rung == CHEAP:
            if self.cheap is None:
                raise ValueError("this search has no cheap rung (fidelity: full)")
            self._last = (key, compressed)
            x, y = self.cheap
        else:
            if self.spec.finetune_steps:
                compressed = models.finetune(
                    compressed, steps=self.spec.finetune_steps, seed=self.qat_seed
                )
            x, y = self.data[request.split]
        return accuracy(compressed, x, y), len(y)

    def evaluate(self, request: TrialRequest) -> TrialOutcome:
        start = time.perf_counter()
        plan = self._plan(request.settings)
        profile = self._profile(request.settings)
        acc, samples = self._accuracy(plan, request)
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
            samples=samples,
        )

    def reference(self, w8a8: dict[str, dict[str, Any]]) -> Reference:
        from lowbit.models.accuracy import accuracy

        fp32 = {split: accuracy(self.base, *self.data[split]) for split in SPLITS}
        val = self.evaluate(TrialRequest(-1, w8a8, split="val"))
        test = self.evaluate(TrialRequest(-1, w8a8, split="test"))
        return Reference.of_w8a8(
            dataset=self.dataset,
            fp32_val=fp32["val"],
            fp32_test=fp32["test"],
            val=val,
            test=test,
            measurement=self.measurement(),
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
