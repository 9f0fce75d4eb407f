"""Host CPU calibration: measure this CPU through ONNX Runtime and write an hwsim profile.

The host model is measured, not typed by hand (``lowbit calibrate-host``):

* from the OS: CPU flags (AVX-512, VNNI), clock (``/proc/cpuinfo``), cache sizes
  (``/sys/devices/system/cpu/cpu0/cache``), SIMD width (16 int32/fp32 lanes with AVX-512F,
  8 with AVX2);
* memory bandwidth of DRAM and of each cache level (numpy copies of buffers sized for it);
* ONNX Runtime (1 thread) on chains of identical layers, INT8 QDQ and FP32: conv and GEMM
  layers shaped like the zoo's, and tiny layers (:mod:`models.hostbench`). Two chain depths
  give the per-layer cost and the intercept: the fixed cost of one ``Run`` call, written as
  ``overheads.run_cycles`` (median over the batch-1 INT8 chains: the deployed graphs are
  INT8 and their Run call quantizes the input and dequantizes the output too);
* ONNX Runtime on chains of a tiny Add (the dispatch cost of one operator, written as
  ``overheads.layer_cycles``) and of LayerNorm/Softmax/GELU/Add/Relu/MaxPool on zoo-sized
  tensors (per-element costs, written as ``[overheads.elementwise_cycles_per_element]``;
  ``embedding`` -- class token + positions -- is one Add pass and takes Add's cost).

Fitted on the per-layer costs by least squares of log(simulated) − log(measured), simulating
the same layers with hwsim: the fixed cost of one GEMM operator (dominates tiny layers;
written as ``layer_cycles`` = the measured dispatch cost, which FP32 operators pay alone,
plus ``gemm_cycles`` = the rest, which integer GEMMs pay: requantization setup, weight
packing; a low-rank layer's two GEMMs pay it twice), the
INT8 and FP32 ``macs_per_pe_per_cycle`` (effective throughput) and ``compute.cols`` among
1, 2 or 4 SIMD registers (the N blocking of the kernels: MLAS's INT8 convolutions cost
about the same for 16 or 32 output channels). Weights are stored as int8 whatever their
grid (no native INT4 compute, no packed low-bit kernels in the export), so
``weight_storage = "promoted"``.
Energies are the built-in ``cpu-x86-avx2`` estimates. Everything measured is also written
to a JSON sidecar (``<profile>.json``).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import LowbitError

from ._hostcal_toml import PROFILE_NAME, profile_toml
from .hostbench import (
    DEPTHS,
    FULL_SHAPES,
    QUICK_SHAPES,
    bench_chains,
    copy_bandwidth,
    elementwise_costs,
    glue_op_s,
)

__all__ = [
    "PROFILE_NAME",
    "Calibration",
    "cpu_flags",
    "cpu_info",
    "default_profile_path",
    "calibrate",
    "load_or_calibrate",
    "overheads",
    "profile_toml",
    "write",
]

log = logging.getLogger(__name__)

_KiB = 1024

#: ONNX Runtime's direct INT8 (NHWC) convolution takes input and output channels in
#: multiples of 4 and at least 16 output channels; other convolutions run its generic
#: im2col + GEMM path at a fixed extra cost per output pixel (fitted). Found by sweeping a
#: 3x3 conv's channels (1-64 in, 4-64 out) on this host: 8->8, 2->16, 16->15, 16->17 are
#: slow, 4->16, 12->20 and 16->24 are not.
CONV_CHANNEL_MULTIPLE = 4
CONV_MIN_OUT_CHANNELS = 16

#: ONNX operator timed by :func:`models.hostbench.elementwise_costs` -> the hwsim kinds
#: (:data:`hwsim.workload.ELEMENTWISE_KINDS`) that take its per-element cost
ORT_KINDS = {
    "Add": ("add", "embedding"), "Relu": ("relu",), "LayerNormalization": ("layernorm",),
    "Softmax": ("softmax",), "Gelu": ("gelu",), "MaxPool": ("maxpool",),
}  # fmt: skip


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where unavailable)."""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": _KiB, "M": _KiB**2, "G": _KiB**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG") or 0) * scale


def cpu_info() -> dict[str, Any]:
    """Model name, clock, SIMD lanes, VNNI, and data/unified cache sizes per level (bytes)."""
    text = _read("/proc/cpuinfo")
    field = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        field.setdefault(key.strip(), value.strip())
    mhz = float(field.get("cpu MHz") or 3000.0)
    caches: dict[int, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        kind = _read(str(index / "type")).strip()
        if kind in ("Data", "Unified"):
            caches[int(_read(str(index / "level")) or 0)] = _size(_read(str(index / "size")))
    flags = cpu_flags()
    meminfo = _read("/proc/meminfo").split()
    memory = _size(meminfo[1] + "K") if meminfo[:1] == ["MemTotal:"] else 0
    return {
        "model": field.get("model name", platform.processor() or "unknown"),
        "clock_hz": mhz * 1e6,
        "simd_lanes_32bit": 16 if "avx512f" in flags else 8 if "avx2" in flags else 4,
        "vnni": bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags),
        "flags": sorted(f for f in flags if f.startswith(("avx", "fma", "amx", "sse4"))),
        "caches_bytes": {f"L{k}": v for k, v in sorted(caches.items())},
        "memory_bytes": memory,
    }


def default_profile_path() -> Path:
    """``$LOWBIT_CACHE/host/host-cpu.toml`` (``~/.cache/lowbit`` without the variable)."""
    from models.train import cache_dir

    return cache_dir() / "host" / f"{PROFILE_NAME}.toml"


def _layers(row: dict[str, Any], depth: int):
    """The hwsim layers of a chain (for fitting)."""
    from hwsim.workload import Compression, Conv2d, Linear, Workload

    bits = 8 if row["precision"] == "int8" else 32
    comp = Compression(w_bits=bits, a_bits=bits)
    n, s = row["size"], row["spatial"]
    if row["kind"] == "conv":
        make = lambda i: Conv2d(  # noqa: E731
            name=f"l{i}", compression=comp, in_h=s, in_w=s, in_c=n, out_c=n, k_h=3, k_w=3,
            out_h=s, out_w=s, batch=row["batch"],
        )  # fmt: skip
    else:
        make = lambda i: Linear(  # noqa: E731
            name=f"l{i}", compression=comp, in_features=n, out_features=n, tokens=row["batch"]
        )
    return Workload("chain", tuple(make(i) for i in range(depth)))


def _simulated_layer_s(rows, data: dict[str, Any]) -> np.ndarray:
    import hwsim
    from hwsim.profiles import profile_from_dict

    profile = profile_from_dict(data, source="host calibration")
    out = []
    for row in rows:
        t = [hwsim.simulate(_layers(row, d), profile).latency_s for d in DEPTHS]
        out.append((t[1] - t[0]) / (DEPTHS[1] - DEPTHS[0]))
    return np.array(out)


def _with(
    data: dict[str, Any], gemm_op: float, m8: float, m32: float, unaligned: float, glue: float
) -> dict[str, Any]:
    """``data`` with the fitted parameters: ``gemm_op`` is an INT8 GEMM operator's fixed
    cost, of which ``glue`` (the measured dispatch) every operator pays."""
    new = json.loads(json.dumps(data))
    layer = min(int(round(glue)), int(round(gemm_op)))
    new["overheads"] = {
        "layer_cycles": layer,
        "gemm_cycles": int(round(gemm_op)) - layer,
        # a sub-8-bit activation is clamped by one more (Clip) operator: one dispatch
        "narrow_activation_cycles": layer,
        "conv_channel_multiple": CONV_CHANNEL_MULTIPLE,
        "conv_min_out_channels": CONV_MIN_OUT_CHANNELS,
        "unaligned_conv_cycles_per_pixel": float(f"{unaligned:.4g}"),
    }
    for mode in new["compute"]["precision"]:
        mode["macs_per_pe_per_cycle"] = float(f"{m8 if mode['w_bits'] == 8 else m32:.6g}")
    return new


def lanes_of(data: dict[str, Any]) -> int:
    return int(data["compute"]["cols"])


def _with_cols(data: dict[str, Any], cols: int) -> dict[str, Any]:
    new = json.loads(json.dumps(data))
    new["compute"]["cols"] = int(cols)
    return new


def _coordinate_search(loss, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """Minimise ``loss`` over positive parameters: coordinate search on a log grid (the loss
    is piecewise constant in places: integer cycles, ceilings), the grid shrinking each
    sweep."""
    best = loss(theta)
    for sweep in range(4):
        for i in range(len(theta)):
            for factor in 2.0 ** (np.linspace(-3, 3, 13) / (sweep + 1)):
                trial = theta.copy()
                trial[i] *= factor
                value = loss(trial)
                if value < best:
                    best, theta = value, trial
    return best, theta


def _fit(
    rows, data: dict[str, Any], *, glue_cycles: float
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit an INT8 GEMM operator's fixed cost (``glue_cycles`` of it is the dispatch every
    operator pays), the INT8/FP32 rates, the unaligned-conv cost per pixel and the
    output-lane count (the N blocking of the kernels: 1, 2 or 4 SIMD registers) to the
    measured per-layer costs."""
    measured = np.log([r["layer_s"] for r in rows])
    int8 = np.array([r["precision"] == "int8" for r in rows])

    def loss(theta: np.ndarray, base: dict[str, Any]) -> float:
        sim = _simulated_layer_s(rows, _with(base, *theta, glue_cycles))
        return float(np.mean((np.log(np.maximum(sim, 1e-12)) - measured) ** 2))

    tiny = float(np.exp(measured.min()))
    best, theta, cols = math.inf, None, None
    for lanes in (lanes_of(data), 2 * lanes_of(data), 4 * lanes_of(data)):
        trial_data = _with_cols(data, lanes)
        value, fit = _coordinate_search(
            lambda th, d=trial_data: loss(th, d),
            np.array([max(tiny * data["clock_hz"], 1.0), 4.0, 1.0, 32.0]),
        )
        if value < best:
            best, theta, cols = value, fit, lanes
    data = _with_cols(data, cols)
    fitted = _with(data, *theta, glue_cycles)
    sim = _simulated_layer_s(rows, fitted)
    for row, s in zip(rows, sim, strict=True):
        row["simulated_layer_s"] = float(s)
    errors = np.abs(sim / np.exp(measured) - 1)
    return fitted, {
        # an INT8 GEMM operator's whole fixed cost (layer_cycles + gemm_cycles)
        "layer_cycles": fitted["overheads"]["layer_cycles"] + fitted["overheads"]["gemm_cycles"],
        "int8_macs_per_pe_per_cycle": float(theta[1]),
        "fp32_macs_per_pe_per_cycle": float(theta[2]),
        "unaligned_conv_cycles_per_pixel": fitted["overheads"]["unaligned_conv_cycles_per_pixel"],
        "cols": int(cols),
        "rms_log_error": math.sqrt(best),
        "mean_abs_pct_error": float(errors.mean() * 100),
        "mean_abs_pct_error_int8": float(errors[int8].mean() * 100),
    }


def overheads(
    *,
    gemm_op_cycles: float,
    run_s: float,
    op_s: float,
    elementwise: dict[str, float],
    clock_hz: float,
    conv: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``[overheads]`` table from the measurements: ``gemm_op_cycles`` (the fitted fixed
    cost of one GEMM operator) splits into ``layer_cycles`` = the dispatch cost every
    operator pays (``op_s``, at most the whole) and ``gemm_cycles`` = the rest; the Run
    call's and the per-element costs (seconds) become cycles at ``clock_hz``; ``conv``: the
    unaligned-convolution keys, copied."""
    layer = min(int(round(op_s * clock_hz)), int(round(gemm_op_cycles)))
    conv = conv or {}
    per_element = {}
    for op, seconds in sorted(elementwise.items()):
        for kind in ORT_KINDS.get(op, ()):
            per_element[kind] = float(f"{seconds * clock_hz:.4g}")
    return {
        "layer_cycles": layer,
        "gemm_cycles": int(round(gemm_op_cycles)) - layer,
        "narrow_activation_cycles": layer,
        "run_cycles": int(round(run_s * clock_hz)),
        **conv,
        "elementwise_cycles_per_element": dict(sorted(per_element.items())),
    }


@dataclass(frozen=True, slots=True)
class Calibration:
    """A calibrated host profile (raw TOML data, validated) and what was measured."""

    data: dict[str, Any]
    measurements: dict[str, Any]

    def profile(self):
        from hwsim.profiles import profile_from_dict

        return profile_from_dict(self.data, source=f"{PROFILE_NAME} calibration")


def _base_data(info: dict[str, Any], bandwidth: dict[str, float]) -> dict[str, Any]:
    """Profile data from the built-in cpu-x86-avx2 with the host's measured numbers."""
    from hwsim.profiles import load_profile_data

    data = load_profile_data("cpu-x86-avx2")
    clock = info["clock_hz"]
    data["name"] = PROFILE_NAME
    data["description"] = f"this host: {info['model']}, 1 thread, ONNX Runtime INT8 QDQ / FP32"
    data["clock_hz"] = clock
    data["weight_storage"] = "promoted"
    data["compute"].update(rows=1, cols=info["simd_lanes_32bit"], cores=1)
    levels = {"dram": ("DRAM", bandwidth["DRAM"])}
    for level in ("L3", "L2", "L1"):
        if level in info["caches_bytes"]:
            levels[level.lower()] = (level, bandwidth.get(level, bandwidth["DRAM"]))
    memory = []
    for mem in data["memory"]:
        if mem["name"] not in levels:
            continue
        key, bw = levels[mem["name"]]
        if mem["name"] != "dram":
            mem["size_bytes"] = int(info["caches_bytes"][key])
        elif info.get("memory_bytes"):
            mem["size_bytes"] = int(info["memory_bytes"])
        mem["bandwidth_bytes_per_cycle"] = round(bw / clock, 3)
        memory.append(mem)
    data["memory"] = memory
    for key in ("tunables", "area"):  # nothing to tune on a measured host; area unknown
        data.pop(key, None)
    return data


def calibrate(*, quick: bool = False) -> Calibration:
    """Measure this CPU (module docstring) and fit a host profile; validated, not written.

    ``quick`` uses four layer shapes and few repeats (for tests; coarser numbers).
    """
    import onnxruntime as ort

    info = cpu_info()
    repeats = 10 if quick else 60
    caches = info["caches_bytes"]
    bandwidth = {
        "DRAM": copy_bandwidth(
            max(64 * _KiB**2, 2 * caches.get("L3", 0)), repeats=2 if quick else 4
        )
    }
    if not quick:
        for level, size in caches.items():
            bandwidth[level] = copy_bandwidth(size // 2, repeats=20)
    rows = bench_chains(QUICK_SHAPES if quick else FULL_SHAPES, repeats=repeats)
    op_s = glue_op_s(repeats=repeats)
    data, fit = _fit(rows, _base_data(info, bandwidth), glue_cycles=op_s * info["clock_hz"])
    batch1 = [r["run_s"] for r in rows if r["batch"] == 1 and r["precision"] == "int8"]
    run_s = float(np.median(batch1 or [r["run_s"] for r in rows]))
    elementwise = elementwise_costs(repeats=repeats)
    data["overheads"] = overheads(
        gemm_op_cycles=fit["layer_cycles"], run_s=run_s, op_s=op_s, elementwise=elementwise,
        clock_hz=data["clock_hz"], conv={k: v for k, v in data["overheads"].items()
                                          if k.startswith(("conv_", "unaligned_"))},
    )  # fmt: skip
    measurements = {
        "cpu": info, "onnxruntime": ort.__version__, "threads": 1, "quick": quick,
        "bandwidth_bytes_per_s": bandwidth, "chains": rows, "fit": fit,
        "run_overhead_s": run_s, "op_overhead_s": op_s,
        "elementwise_s_per_element": elementwise, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    calibration = Calibration(data, measurements)
    calibration.profile()  # validated here: a profile that fails validation is a bug
    return calibration


def write(calibration: Calibration, path: str | Path) -> Path:
    """Write the TOML profile and its JSON sidecar atomically; re-load it to check."""
    from hwsim.fileio import atomic_write_bytes
    from hwsim.profiles import load_profile

    path = Path(path)
    if path.suffix != ".toml":
        raise LowbitError(f"{path}: the profile file must end in .toml")
    atomic_write_bytes(path, profile_toml(calibration).encode())
    sidecar = path.with_suffix(".json")
    atomic_write_bytes(sidecar, (json.dumps(calibration.measurements, indent=2) + "\n").encode())
    load_profile(path)
    return path


def load_or_calibrate(path: str | Path | None = None, *, quick: bool = False):
    """The host profile at ``path`` (default :func:`default_profile_path`); calibrated and
    written first if the file is missing."""
    from hwsim.profiles import load_profile

    path = Path(path) if path is not None else default_profile_path()
    if not path.is_file():
        log.warning("no host profile at %s: calibrating this CPU (about a minute)", path)
        write(calibrate(quick=quick), path)
    return load_profile(path)
