"""Deployment configs: ``configs/<id>.json`` of a run, one per Pareto point.

A deployment config (schema 2) holds everything that rebuilds the measured model: the plan,
the model and its training ``seed``, ``qat`` (steps, seed), ``calibration`` (the split, the
size and seed of its stratified subset and the SHA-256 of its indices), and under
``accuracy`` the rung and split sizes the accuracies come from and the torch threads of the
worker (:meth:`DeploymentConfig.build_kwargs` gives
:func:`lowbit.models.export.deploy.build_compressed`'s arguments). Schema 1 configs (before
rungs) still load: calibrated on the whole val split, QAT steps in the run's summary.json.

A co-design run's config names its chosen hardware under ``hardware`` too
(:attr:`DeploymentConfig.hardware_variant`, from
:func:`lowbit.search.codesign.hardware_variant`): the file is written once, complete.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lowbit.hwsim.errors import InputFileError, LowbitError
from lowbit.hwsim.fileio import read_json

from .checks import LAYER_COSTS, check_ranges, non_negative
from .codesign import HardwareVariant
from .evaluator import LayerCost
from .fidelity import FULL, RUNG_NAMES
from .results import write_json

__all__ = [
    "CONFIG_SCHEMA_VERSION",
    "ConfigError",
    "DeploymentConfig",
    "load_config",
]

CONFIG_SCHEMA_VERSION = 2
CONFIG_KIND = "lowbit-deployment-config"
#: how the calibration subset is drawn (lowbit.models.export.calib_subset.stratified_subset)
CALIB_SELECTION = "stratified by label, numpy default_rng(seed), sorted val indices"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KINDS = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_int,
    "number": lambda v: _is_int(v) or isinstance(v, float),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def _or_null(check: Any) -> Any:
    return lambda v: v is None or check(v)


#: "KIND or null" kinds of schema 2
_KINDS.update({f"{kind}?": _or_null(check) for kind, check in list(_KINDS.items())})


class ConfigError(LowbitError):
    """A deployment configuration file is malformed (every problem listed)."""


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    """Everything needed to deploy (and reproduce) one chosen configuration."""

    id: str
    model: str
    dataset: str
    seed: int
    hardware: str
    hardware_hash: str
    method: str
    study: str
    trial_number: int
    plan: dict[str, Any]
    accuracy_val: float
    accuracy_test: float
    fp32_val: float
    fp32_test: float
    engine: str
    latency_ms: float
    energy_mj: float
    total_cycles: int
    size_kib: float
    layers: tuple[LayerCost, ...]
    lowbit_version: str
    #: the rung the val accuracy comes from, and both splits' sizes (schema 2)
    rung: int = FULL
    val_samples: int | None = None
    test_samples: int | None = None
    #: the cheap rung's accuracy and images (None: not measured)
    accuracy_cheap: float | None = None
    cheap_val_samples: int | None = None
    #: QAT steps and seed (None: not recorded, schema 1: the run's summary.json has the steps)
    qat_steps: int | None = None
    qat_seed: int | None = None
    #: calibration batch: "val" (a subset of it) or "user" (a user model's batch)
    calib_split: str = "val"
    #: images of the val subset (None: the whole val split, schema 1) and its seed
    calib_samples: int | None = None
    calib_seed: int | None = None
    calib_sha256: str | None = None
    #: torch threads of the worker that measured it (float reductions depend on them)
    threads: int | None = None
    #: co-design: the hardware the trial chose (``hardware_hash`` is then the variant's)
    hardware_variant: HardwareVariant | None = None
    schema_version: int = CONFIG_SCHEMA_VERSION

    def build_kwargs(self, *, qat_steps: int = 0) -> dict[str, Any]:
        """Keyword arguments of :func:`lowbit.models.export.deploy.build_compressed` (and
        ``export_plan``) that rebuild this model; ``qat_steps`` is used only when the config
        does not record its own (schema 1).

        Raises:
            ConfigError: a user model's config (its calibration batch is not in the config).
        """
        if self.calib_split != "val":
            raise ConfigError(
                f"config {self.id}: calibrated on a {self.calib_split!r} batch, which the "
                "config does not hold; only zoo-model configs can be rebuilt"
            )
        steps = self.qat_steps if self.qat_steps is not None else qat_steps
        return {
            "seed": self.seed,
            "finetune_steps": steps,
            "qat_seed": self.qat_seed,
            "calib_samples": self.calib_samples,
            "calib_seed": self.calib_seed if self.calib_seed is not None else 0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": CONFIG_KIND,
            "id": self.id,
            "model": self.model,
            "dataset": self.dataset,
            "seed": self.seed,
            "hardware": {
                "name": self.hardware,
                "content_hash": self.hardware_hash,
                **(self.hardware_variant.to_dict() if self.hardware_variant else {}),
            },
            "method": self.method,
            "study": self.study,
            "trial_number": self.trial_number,
            "plan": self.plan,
            "qat": {"steps": self.qat_steps, "seed": self.qat_seed},
            "calibration": {
                "split": self.calib_split,
                "samples": self.calib_samples,
                "seed": self.calib_seed,
                "selection": CALIB_SELECTION if self.calib_split == "val" else None,
                "sha256": self.calib_sha256,
            },
            "accuracy": {
                "val": self.accuracy_val,
                "test": self.accuracy_test,
                "fp32_val": self.fp32_val,
                "fp32_test": self.fp32_test,
                "rung": self.rung,
                "rung_name": RUNG_NAMES[self.rung],
                "val_samples": self.val_samples,
                "test_samples": self.test_samples,
                "cheap_val": self.accuracy_cheap,
                "cheap_val_samples": self.cheap_val_samples,
                "torch_threads": self.threads,
            },
            "simulation": {
                "engine": self.engine,
                "latency_ms": self.latency_ms,
                "energy_mj": self.energy_mj,
                "total_cycles": self.total_cycles,
                "layers": [asdict(layer) for layer in self.layers],
            },
            "size_kib": self.size_kib,
            "lowbit_version": self.lowbit_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> DeploymentConfig:
        """Validate and build; every problem is reported with its key path."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: must be a JSON object, got {type(data).__name__}")
        problems: list[str] = []

        def get(path: str, kind: str) -> Any:
            node: Any = data
            for key in path.split("."):
                if not isinstance(node, dict) or key not in node:
                    problems.append(f"{path}: missing")
                    return None
                node = node[key]
            if not _KINDS[kind](node):
                problems.append(f"{path}: must be {kind}, got {node!r}")
                return None
            return node

        version = get("schema_version", "integer")
        if version is not None and version not in (1, CONFIG_SCHEMA_VERSION):
            problems.append(f"schema_version: unsupported {version} (supported: 1, 2)")
        if data.get("kind") != CONFIG_KIND:
            problems.append(f"kind: must be {CONFIG_KIND!r}, got {data.get('kind')!r}")
        values = {
            "id": get("id", "string"),
            "model": get("model", "string"),
            "dataset": get("dataset", "string"),
            "seed": get("seed", "integer"),
            "hardware": get("hardware.name", "string"),
            "hardware_hash": get("hardware.content_hash", "string"),
            "method": get("method", "string"),
            "study": get("study", "string"),
            "trial_number": get("trial_number", "integer"),
            "plan": get("plan", "object"),
            "accuracy_val": get("accuracy.val", "number"),
            "accuracy_test": get("accuracy.test", "number"),
            "fp32_val": get("accuracy.fp32_val", "number"),
            "fp32_test": get("accuracy.fp32_test", "number"),
            "engine": get("simulation.engine", "string"),
            "latency_ms": get("simulation.latency_ms", "number"),
            "energy_mj": get("simulation.energy_mj", "number"),
            "total_cycles": get("simulation.total_cycles", "integer"),
            "size_kib": get("size_kib", "number"),
            "lowbit_version": get("lowbit_version", "string"),
        }
        if version == CONFIG_SCHEMA_VERSION:
            values.update(
                rung=get("accuracy.rung", "integer"),
                val_samples=get("accuracy.val_samples", "integer?"),
                test_samples=get("accuracy.test_samples", "integer?"),
                accuracy_cheap=get("accuracy.cheap_val", "number?"),
                cheap_val_samples=get("accuracy.cheap_val_samples", "integer?"),
                threads=get("accuracy.torch_threads", "integer?"),
                qat_steps=get("qat.steps", "integer"),
                qat_seed=get("qat.seed", "integer"),
                calib_split=get("calibration.split", "string"),
                calib_samples=get("calibration.samples", "integer"),
                calib_seed=get("calibration.seed", "integer?"),
                calib_sha256=get("calibration.sha256", "string?"),
            )
            if values["rung"] not in (None, *range(len(RUNG_NAMES))):
                problems.append(f"accuracy.rung: must be 0 or 1, got {values['rung']!r}")
        check_ranges(values, problems)
        hardware = data.get("hardware")
        if isinstance(hardware, dict) and "overrides" in hardware:  # a co-design config
            variant = {
                "base_content_hash": get("hardware.base_content_hash", "string"),
                "overrides": get("hardware.overrides", "object"),
                "area_mm2": get("hardware.area_mm2", "number?"),
                "area": get("hardware.area", "object?"),
            }
            values["hardware_variant"] = HardwareVariant(**variant)
        layers = []
        raw_layers = get("simulation.layers", "array") or []
        names = [f.name for f in fields(LayerCost)]
        for i, raw in enumerate(raw_layers):
            if not isinstance(raw, dict) or set(raw) != set(names):
                problems.append(f"simulation.layers[{i}]: must have exactly the keys {names}")
                continue
            bad = [k for k in LAYER_COSTS if not non_negative(raw[k])]
            if bad:
                problems.append(
                    f"simulation.layers[{i}]: {', '.join(bad)} must be finite numbers >= 0"
                )
                continue
            layers.append(LayerCost(**raw))
        if values["plan"] is not None:
            from lowbit.models.compression.plan import CompressionPlan, PlanError

            try:
                CompressionPlan.from_dict(values["plan"])
            except PlanError as exc:
                problems.extend(f"plan.{p}" for p in exc.problems)
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        floats = ("accuracy_val", "accuracy_test", "fp32_val", "fp32_test")
        for key in (*floats, "latency_ms", "energy_mj", "size_kib"):
            values[key] = float(values[key])
        if values.get("accuracy_cheap") is not None:
            values["accuracy_cheap"] = float(values["accuracy_cheap"])
        return cls(layers=tuple(layers), schema_version=version, **values)


def load_config(path: str | Path) -> DeploymentConfig:
    """Read and validate a deployment configuration written by a search run."""
    path = Path(path)
    try:
        data = read_json(path, what="deployment config")
    except InputFileError as exc:
        raise ConfigError(str(exc)) from None
    return DeploymentConfig.from_dict(data, source=str(path))
