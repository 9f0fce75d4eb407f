"""Deployment configs for the firmware team: one JSON file per compressed model.

:func:`firmware_config` reads a compressed model (``models.compress`` output) and the hwsim
result of its workload on a target, and returns a JSON-ready dict (schema in
docs/firmware-config.md, ``schema_version`` :data:`FIRMWARE_SCHEMA_VERSION`):

- ``layers`` (:mod:`lowbit.models.export._firmware_layers`): per compute layer, in module
  order — its precision (``w_bits``/``a_bits``,
  null = float), the channels it kept (``kept_out_channels`` / ``kept_in_channels``: the
  original indices, null when unpruned), sparsity, low rank (``rank``), and one entry per
  weight tensor it runs (two for a low-rank layer: ``<name>.first`` and ``<name>.second``)
  with the weight shape, the conv geometry and the quantization grids: weights per output
  channel (``scale``/``zero_point`` lists), the input activation per tensor.
  A tensor that runs on integer kernels (``runs_as: "int8"``,
  :func:`lowbit.models.compression._intbias.runs_integer`) is described in its deployed integer
  form, the one
  the fake-quant model computes and :mod:`lowbit.models.export.deploy` writes into
  ``model.int8.onnx``
  (:func:`lowbit.models.compression._intbias.integer_layer`): the BatchNorm reading its output
  folded in
  (``folded_batchnorm``), per-channel int8 weight scales and zero points after folding and
  refinement, and the bias as int32 codes on the accumulator grid ``s_x·s_w[c]``. Other
  tensors (``runs_as: "float"``) keep their trained grids and float bias.
- ``targets``: per target family (``npu``, ``fpga``, ``cpu``) and profile, the expected
  latency and energy from the simulator, per layer and in total.
- ``artifacts`` (optional): the export's files beside the config (``model.int8.onnx``,
  ``model.int8.tflite``, Vela's compiled model, ...) with their SHA-256, so one directory is
  everything a firmware team needs and a changed file is detected.

:func:`add_target` adds another target's numbers to a config; :func:`write_firmware_config`
writes atomically (temp file + ``os.replace``) after validating; :func:`load_firmware_config`
validates a file and reports every problem with its key path (a file of another schema
version, e.g. 1 with its scales before BatchNorm folding, is refused with the reason).

Example:
    >>> small = models.compress(base, plan, calib=x_val)                  # doctest: +SKIP
    >>> sim = hwsim.simulate(models.to_workload(base, plan), profile)     # doctest: +SKIP
    >>> write_firmware_config("fw.json", small, plan=plan, profile=profile,
    ...                       sim_result=sim, model_name="digits-cnn")   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from lowbit.hwsim.errors import InputFileError, LowbitError
from lowbit.hwsim.fileio import atomic_write_text, read_json
from lowbit.hwsim.profile import HardwareProfile
from lowbit.hwsim.result import SimResult
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export._firmware_layers import layer_entries
from lowbit.models.export._firmware_schema import (
    FIRMWARE_KIND,
    FIRMWARE_SCHEMA_VERSION,
    validate_firmware_config,
)

__all__ = [
    "FIRMWARE_KIND",
    "FIRMWARE_SCHEMA_VERSION",
    "FirmwareConfigError",
    "add_target",
    "artifact_entries",
    "firmware_config",
    "load_firmware_config",
    "validate_firmware_config",
    "write_firmware_config",
    "write_zoo_firmware_config",
]


class FirmwareConfigError(LowbitError):
    """A firmware config is malformed; ``problems`` lists every problem by key path."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


def _target(profile: HardwareProfile, sim: SimResult) -> dict[str, Any]:
    if sim.hardware != profile.name:
        raise ValueError(f"sim_result is for {sim.hardware!r}, not the profile {profile.name!r}")
    ms = 1e3 / sim.clock_hz
    return {
        "profile": profile.name,
        "content_hash": profile.content_hash(),
        "clock_hz": float(sim.clock_hz),
        "engine": sim.engine,
        "total": {
            "latency_ms": sim.latency_s * 1e3,
            "energy_mj": sim.energy_j * 1e3,
            "cycles": int(sim.total_cycles),
        },
        "layers": [
            {
                "name": r.name,
                "op": r.op,
                "w_bits": r.w_bits,
                "a_bits": r.a_bits,
                "macs": int(r.macs),
                "cycles": int(r.total_cycles),
                "latency_ms": r.total_cycles * ms,
                "energy_mj": r.energy_j * 1e3,
                "bound": r.bound,
            }
            for r in sim.layers
        ],
    }


def firmware_config(
    compressed_model: nn.Module,
    *,
    plan: CompressionPlan,
    profile: HardwareProfile,
    sim_result: SimResult,
    model_name: str,
    artifacts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The firmware config of ``compressed_model`` (made by ``compress(base, plan)``) on
    ``profile``; ``sim_result`` is ``hwsim.simulate(to_workload(base, plan), profile)``;
    ``artifacts`` (:func:`artifact_entries`) lists the files exported with it.

    Raises:
        ValueError: ``sim_result`` was simulated on another profile.
    """
    config = {
        "schema_version": FIRMWARE_SCHEMA_VERSION,
        "kind": FIRMWARE_KIND,
        "model": model_name,
        "plan": plan.to_dict(),
        "layers": layer_entries(compressed_model, plan),
        "targets": {},
    }
    if artifacts:
        config["artifacts"] = artifacts
    return add_target(config, profile=profile, sim_result=sim_result)


def artifact_entries(directory: str | Path, files: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{kind: {"path", "sha256", "bytes"}}`` of ``files`` (kind → path relative to
    ``directory``, e.g. ``{"tflite": "model.int8.tflite"}``)."""
    out = {}
    for kind, rel in files.items():
        data = (Path(directory) / rel).read_bytes()
        out[kind] = {
            "path": str(rel),
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
    return out


def add_target(
    config: dict[str, Any], *, profile: HardwareProfile, sim_result: SimResult
) -> dict[str, Any]:
    """A copy of ``config`` with ``profile``'s expected latency/energy added (or replaced)
    under its family."""
    out = copy.deepcopy(config)
    out["targets"].setdefault(profile.family, {})[profile.name] = _target(profile, sim_result)
    return out


def write_firmware_config(
    path: str | Path,
    compressed_model: nn.Module,
    *,
    plan: CompressionPlan,
    profile: HardwareProfile,
    sim_result: SimResult,
    model_name: str,
    artifacts: dict[str, str] | None = None,
) -> Path:
    """Validate and atomically write :func:`firmware_config` (same arguments) to ``path``;
    ``artifacts`` maps kinds to files relative to ``path``'s directory (hashed here)."""
    entries = artifact_entries(Path(path).parent, artifacts) if artifacts else None
    config = firmware_config(
        compressed_model,
        plan=plan,
        profile=profile,
        sim_result=sim_result,
        model_name=model_name,
        artifacts=entries,
    )
    problems = validate_firmware_config(config)
    if problems:  # a bug, not a user error: the config was just built
        raise RuntimeError(f"built an invalid firmware config for {path}: {problems}")
    return atomic_write_text(path, json.dumps(config, indent=2) + "\n")


def write_zoo_firmware_config(
    path: str | Path,
    *,
    model: str,
    plan: CompressionPlan,
    profile: HardwareProfile,
    seed: int = 0,
    finetune_steps: int = 0,
) -> Path:
    """The firmware config of zoo ``model`` under ``plan`` on ``profile``, built as the
    search evaluated it (``models.export.build_compressed``) and simulated (analytic)."""
    from lowbit import hwsim
    from lowbit.models.bridge import to_workload
    from lowbit.models.export.deploy import build_compressed

    base, compressed = build_compressed(model, plan, seed=seed, finetune_steps=finetune_steps)
    workload = to_workload(base, plan, name=model, round_trip=profile.overheads.two_grid_round_trip)
    sim = hwsim.simulate(workload, profile)
    return write_firmware_config(
        path, compressed, plan=plan, profile=profile, sim_result=sim, model_name=model
    )


def load_firmware_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a firmware config file.

    Raises:
        FirmwareConfigError: unreadable, not JSON, or not the schema (every problem listed).
    """
    try:
        data = read_json(path, what="firmware config")
    except InputFileError as exc:
        raise FirmwareConfigError(str(path), [exc.problem]) from None
    problems = validate_firmware_config(data)
    if problems:
        raise FirmwareConfigError(str(path), problems)
    return data
