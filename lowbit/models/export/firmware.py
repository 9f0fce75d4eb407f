"""Deployment configs for the firmware team: one JSON file per compressed model.

:func:`firmware_config` reads a compressed model (``models.compress`` output) and the hwsim
result of its workload on a target, and returns a JSON-ready dict (schema in
docs/firmware-config.md, ``schema_version`` :data:`FIRMWARE_SCHEMA_VERSION`):

- ``layers``: per compute layer, in module order — its precision (``w_bits``/``a_bits``,
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

import torch
from torch import nn

from lowbit.hwsim.errors import InputFileError, LowbitError
from lowbit.hwsim.fileio import atomic_write_text, read_json
from lowbit.hwsim.profile import HardwareProfile
from lowbit.hwsim.result import SimResult
from lowbit.models.compression._intbias import integer_layer, runs_integer
from lowbit.models.compression.lowrank import LOWRANK_LAYERS, LowRankConv, LowRankLinear
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.compression.quant import QuantLayer, QuantMatMul
from lowbit.models.export._firmware_schema import (
    FIRMWARE_KIND,
    FIRMWARE_SCHEMA_VERSION,
    INT8_QMAX,
    INT8_QMIN,
    validate_firmware_config,
)
from lowbit.models.graph import COMPUTE_LAYERS, MatMulSite

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


def _indices(value: Any) -> list[int] | None:
    return None if value is None else [int(i) for i in torch.as_tensor(value).reshape(-1)]


def _floats(value: torch.Tensor) -> list[float]:
    return [float(v) for v in value.detach().reshape(-1)]


def _weight_grid(layer: nn.Module) -> dict[str, Any] | None:
    """The trained weight grid of a QuantLayer (per channel or per tensor), or None."""
    if not isinstance(layer, QuantLayer) or layer.w_bits is None:
        return None
    return {
        "bits": layer.w_bits,
        "granularity": "per_channel" if layer.per_channel else "per_tensor",
        "symmetric": layer.symmetric,
        "qmin": int(layer.weight_qmin),
        "qmax": int(layer.weight_qmax),
        "scale": _floats(layer.weight_scale),
        "zero_point": [int(v) for v in layer.weight_zero_point.reshape(-1)],
    }


def _int8_zero_points(levels: torch.Tensor, name: str) -> torch.Tensor:
    """Per-channel zero points storing ``levels`` (output channels first) as int8: 0 unless
    a channel's levels need a shift to fit (a −128 code negated by a folded BatchNorm, an
    asymmetric 8-bit grid), the rule ``models.onnx_quant`` stores ``s8`` weights by."""
    flat = levels.reshape(levels.shape[0], -1)
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    if int((hi - lo).max()) > INT8_QMAX - INT8_QMIN:
        raise ValueError(f"{name}: weight levels span more than 8 bits")
    zero = torch.zeros_like(lo)
    return torch.minimum(torch.maximum(zero, INT8_QMIN - lo), INT8_QMAX - hi)


def _integer_form(name: str, layer: nn.Module, names: dict[int, str]) -> dict[str, Any]:
    """Weight grid, int32 bias and folded BatchNorm of a layer that runs on integer kernels,
    as deployed (:func:`lowbit.models.compression._intbias.integer_layer`, the form the exporter
    writes)."""
    bn = layer.folded_batchnorm
    if bn is not None and id(bn) not in names:
        raise ValueError(f"{name}: its folded BatchNorm is not a module of the model")
    form = integer_layer(layer, batchnorm=bn)
    zero_points = _int8_zero_points(form.codes, name)
    weight = {
        "bits": layer.w_bits,
        "granularity": "per_channel",
        "symmetric": layer.symmetric,
        "qmin": INT8_QMIN,
        "qmax": INT8_QMAX,
        "scale": _floats(form.weight_scales),
        "zero_point": [int(v) for v in zero_points],
    }
    bias = None
    if form.bias_codes is not None:
        # the accumulator grid s_x·s_w[c] in float32, as models.onnx_quant writes the bias
        # scale (and models._intbias rounds the bias to it)
        step = (layer.act_scale.detach().float().double() * form.weight_scales.double()).float()
        bias = {"bits": 32, "scale": _floats(step), "codes": [int(v) for v in form.bias_codes]}
    return {
        "runs_as": "int8",
        "folded_batchnorm": None if bn is None else names[id(bn)],
        "weight": weight,
        "bias": bias,
    }


def _act_grid(bits, scale, zero_point, qmin, qmax) -> dict[str, Any] | None:
    """An activation grid (per tensor), or None when float or not calibrated."""
    if bits is None or scale is None:
        return None
    return {
        "bits": bits,
        "qmin": int(qmin),
        "qmax": int(qmax),
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def _tensor(name: str, layer: nn.Module, names: dict[int, str]) -> dict[str, Any]:
    """One weight tensor a layer runs: shape, geometry, how it runs, grids and bias."""
    entry: dict[str, Any] = {"name": name, "weight_shape": list(layer.weight.shape)}
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        entry.update(
            kernel_size=list(layer.kernel_size), stride=list(layer.stride),
            padding=list(layer.padding) if not isinstance(layer.padding, str) else layer.padding,
            dilation=list(layer.dilation), groups=layer.groups,
        )  # fmt: skip
    quant = isinstance(layer, QuantLayer)
    if quant and runs_integer(layer):
        entry.update(_integer_form(name, layer, names))
    else:  # float compute: the trained grid (if any) and the float bias stay as they are
        entry.update(runs_as="float", folded_batchnorm=None, weight=_weight_grid(layer), bias=None)
    entry["input"] = (
        _act_grid(layer.a_bits, layer.act_scale, layer.act_zero_point, layer.act_qmin,
                  layer.act_qmax) if quant else None
    )  # fmt: skip
    return entry


def _kind(layer: nn.Module) -> str:
    if isinstance(layer, (nn.Linear, LowRankLinear)):
        return "linear"
    inner = layer.first if isinstance(layer, LowRankConv) else layer
    return "conv1d" if isinstance(inner, nn.Conv1d) else "conv2d"


def _sparsity(parts: list[nn.Module], spec_nm) -> dict[str, Any]:
    masks = [p.weight_mask for p in parts if getattr(p, "weight_mask", None) is not None]
    if not masks:
        return {"nm": None, "density": 1.0}
    kept = sum(float(m.sum()) for m in masks)
    return {
        "nm": list(spec_nm) if spec_nm else None,
        "density": kept / sum(m.numel() for m in masks),
    }


def _layers(model: nn.Module, plan: CompressionPlan) -> list[dict[str, Any]]:
    out, inside = [], set()
    names = {id(m): n for n, m in model.named_modules()}
    for name, module in model.named_modules():
        if not name or any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(module, MatMulSite):
            a_bits = getattr(module, "a_bits", None)
            grids = (None, None)
            if isinstance(module, QuantMatMul):
                grids = (
                    _act_grid(a_bits, module.act_scale, module.act_zero_point,
                              module.act_qmin, module.act_qmax),
                    _act_grid(a_bits, module.b_scale, module.b_zero_point,
                              module.b_qmin, module.b_qmax),
                )  # fmt: skip
            out.append({
                "name": name, "kind": "matmul", "w_bits": a_bits, "a_bits": a_bits,
                "tensors": [{
                    "name": name,
                    "runs_as": "int8" if None not in grids else "float",
                    "input": grids[0], "input_b": grids[1],
                }],
            })  # fmt: skip
            continue
        if not isinstance(module, (*COMPUTE_LAYERS, *LOWRANK_LAYERS)):
            continue
        inside.add(name)
        parts = (
            [(f"{name}.first", module.first), (f"{name}.second", module.second)]
            if isinstance(module, LOWRANK_LAYERS)
            else [(name, module)]
        )
        first, last = parts[0][1], parts[-1][1]
        out.append(
            {
                "name": name,
                "kind": _kind(module),
                "w_bits": getattr(first, "w_bits", None),
                "a_bits": getattr(first, "a_bits", None),
                "in_channels": int(first.weight.shape[1] * getattr(first, "groups", 1)),
                "out_channels": int(last.weight.shape[0]),
                "kept_out_channels": _indices(getattr(module, "kept_out_channels", None)),
                "kept_in_channels": _indices(getattr(module, "kept_in_channels", None)),
                "low_rank": (
                    {"rank": int(module.rank)} if isinstance(module, LOWRANK_LAYERS) else None
                ),
                "sparsity": _sparsity([p for _, p in parts], plan.resolve(name).nm),
                "tensors": [_tensor(part_name, part, names) for part_name, part in parts],
            }
        )
    return out


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
            }  # fmt: skip
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
        "layers": _layers(compressed_model, plan),
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
        out[kind] = {"path": str(rel), "sha256": hashlib.sha256(data).hexdigest(),
                     "bytes": len(data)}  # fmt: skip
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
        compressed_model, plan=plan, profile=profile, sim_result=sim_result,
        model_name=model_name, artifacts=entries,
    )  # fmt: skip
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
    sim = hwsim.simulate(to_workload(base, plan, name=model), profile)
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
