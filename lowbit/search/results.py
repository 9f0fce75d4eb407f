"""The run directory's files, all written atomically (temp file + ``os.replace``).

``trials.csv``      one row per trial of every method (params and values as JSON cells)
``pareto.csv``      each method's final Pareto configurations, val and test accuracy
``summary.json``    methods, hypervolumes, speed-ups, reference point, seeds, versions
``configs/<id>.json`` one deployment configuration per Pareto point (:class:`DeploymentConfig`)

The journal (``study.journal``) is the source of truth: at the end of every run these files
are rebuilt from it for the methods of that run (a resumed run rewrites them complete; a
rerun with fewer methods leaves the other studies in the journal but not in the files).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.fileio import atomic_write_text

from .evaluator import LayerCost
from .storage import FAIL_REASON_ATTR

__all__ = [
    "CONFIG_SCHEMA_VERSION",
    "TRIAL_COLUMNS",
    "PARETO_COLUMNS",
    "ConfigError",
    "DeploymentConfig",
    "atomic_write_text",
    "write_json",
    "write_csv",
    "trial_rows",
    "load_config",
    "versions",
]

CONFIG_SCHEMA_VERSION = 1
CONFIG_KIND = "lowbit-deployment-config"
TRIAL_COLUMNS = (
    "method", "study", "number", "state", "accuracy_val", "latency_ms", "energy_mj",
    "size_kib", "values", "params", "duration_s", "fail_reason", "feasible",
)  # fmt: skip
PARETO_COLUMNS = (
    "method", "config_id", "number", "accuracy_val", "accuracy_test", "latency_ms",
    "latency_vs_w8a8", "energy_mj", "size_kib", "params",
)  # fmt: skip


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KINDS = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_int,
    "number": lambda v: _is_int(v) or isinstance(v, float),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


class ConfigError(LowbitError):
    """A deployment configuration file is malformed (every problem listed)."""


def write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return atomic_write_text(path, buf.getvalue())


def trial_rows(study: optuna.Study, method: str) -> list[dict[str, Any]]:
    """One CSV row per trial of ``study`` (any state)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        feasible = all(v <= 0 for v in t.constraints.values()) if t.constraints else True
        rows.append(
            {
                "method": method,
                "study": study.study_name,
                "number": t.number,
                "state": t.state.name,
                "accuracy_val": attrs.get("accuracy", ""),
                "latency_ms": attrs.get("latency_ms", ""),
                "energy_mj": attrs.get("energy_mj", ""),
                "size_kib": attrs.get("size_kib", ""),
                "values": json.dumps(t.values) if t.state == TrialState.COMPLETE else "",
                "params": json.dumps(t.params, sort_keys=True),
                "duration_s": attrs.get("duration_s", ""),
                "fail_reason": attrs.get(FAIL_REASON_ATTR, ""),
                "feasible": feasible if t.state == TrialState.COMPLETE else "",
            }
        )
    return rows


def versions() -> dict[str, str]:
    """Installed versions of lowbit and the libraries that shape results."""
    out = {}
    for name in ("lowbit", "optuna", "ray", "torch", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


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
    schema_version: int = CONFIG_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": CONFIG_KIND,
            "id": self.id,
            "model": self.model,
            "dataset": self.dataset,
            "seed": self.seed,
            "hardware": {"name": self.hardware, "content_hash": self.hardware_hash},
            "method": self.method,
            "study": self.study,
            "trial_number": self.trial_number,
            "plan": self.plan,
            "accuracy": {
                "val": self.accuracy_val,
                "test": self.accuracy_test,
                "fp32_val": self.fp32_val,
                "fp32_test": self.fp32_test,
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
        return atomic_write_text(path, self.to_json())

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
        if version is not None and version != CONFIG_SCHEMA_VERSION:
            problems.append(f"schema_version: unsupported {version} (supported: 1)")
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
        layers = []
        raw_layers = get("simulation.layers", "array") or []
        names = [f.name for f in fields(LayerCost)]
        for i, raw in enumerate(raw_layers):
            if not isinstance(raw, dict) or set(raw) != set(names):
                problems.append(f"simulation.layers[{i}]: must have exactly the keys {names}")
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
        return cls(layers=tuple(layers), schema_version=version, **values)


def load_config(path: str | Path) -> DeploymentConfig:
    """Read and validate a deployment configuration written by a search run."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    return DeploymentConfig.from_dict(data, source=str(path))
