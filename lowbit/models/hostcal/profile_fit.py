"""A host profile from a calibration's measurements (:func:`from_measurements`): the fit of
the chains and single convs (:mod:`lowbit.models.hostcal._fit`), the depthwise fit and the
measured per-element costs, on the built-in ``cpu-x86-avx2`` profile with the host's caches,
bandwidths and clock. No timing here: a sidecar's measurements refitted give the profile
the current model makes of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lowbit.hwsim.profile import DEPTHWISE_KEYS
from lowbit.models._host import u8s8_saturates
from lowbit.models.hostcal._fit import fit
from lowbit.models.hostcal._overheads import _RECOMPUTED, overheads
from lowbit.models.hostcal._run_call import run_call_cycles
from lowbit.models.hostcal._toml import PROFILE_NAME
from lowbit.models.hostcal.bench import DEPTHS
from lowbit.models.hostcal.cache_share import weight_share_bytes, with_weight_share
from lowbit.models.hostcal.clock import seconds_clock_hz
from lowbit.models.hostcal.conv import without_profiler
from lowbit.models.hostcal.isa import PEAK_MACS_PER_CYCLE, Isa
from lowbit.models.hostcal.kernels import fit_depthwise
from lowbit.models.hostcal.movement import transpose_s_per_row
from lowbit.models.hostcal.quality import MeasurementError, measurement_problems

__all__ = ["Calibration", "from_measurements"]


@dataclass(frozen=True, slots=True)
class Calibration:
    """A calibrated host profile (raw TOML data, validated) and what was measured."""

    data: dict[str, Any]
    measurements: dict[str, Any]

    def profile(self):
        from lowbit.hwsim.profiles import profile_from_dict

        return profile_from_dict(self.data, source=f"{PROFILE_NAME} calibration")


def _base_data(info: dict[str, Any], bandwidth: dict[str, float]) -> dict[str, Any]:
    """Profile data from the built-in cpu-x86-avx2 with the host's measured numbers."""
    from lowbit.hwsim.profiles import load_profile_data

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
    # activations that overflow a core's L2 move through L3 at the rate of a copy twice the
    # L2's size (calibrations before v20 did not measure it: none)
    spill = bandwidth.get("L2 spill")
    data["overheads"] = (
        {
            "activation_cache_bytes": int(info["caches_bytes"]["L2"]),
            "activation_spill_bytes_per_cycle": round(spill / clock, 3),
        }
        if spill and "L2" in info["caches_bytes"]
        else {}
    )
    # the integer conv kernels' output-channel block, from the ISA (the fit's N blocking is
    # the GEMM library's too: 8 lanes fit it best on an AMD Zen 3, where a conv of 24 outputs
    # took what one of 32 did)
    data["overheads"]["conv_out_channel_block"] = _isa(info).conv_out_channel_block
    return data


def _isa(info: dict[str, Any]) -> Isa:
    """The :class:`Isa` a sidecar's CPU record names (its best ISA and SIMD lanes)."""
    return Isa(info["isa"], info["simd_lanes_32bit"])


def from_measurements(measurements: dict[str, Any]) -> Calibration:
    """The calibration of ``measurements`` (:func:`_measure`'s, or a sidecar's): the fit
    (:func:`lowbit.models.hostcal._fit.fit`) and the measured costs as a profile, validated.
    No timing: a sidecar refitted gives the profile the current model makes of its
    measurements (``measurements`` gains the fit and each row its simulated value).
    Timings no CPU could have produced are refused first, every one named
    (:class:`~lowbit.models.hostcal.quality.MeasurementError`)."""
    m = measurements
    problems = measurement_problems(m)
    if problems:
        raise MeasurementError(
            f"{len(problems)} implausible timing(s) in the measurements: " + "; ".join(problems)
        )
    # the fit turns the seconds into cycles at the clock they are at; the profile runs at the
    # clock the core ran at (the two differ when the timings were converted to a reference)
    info, op_s = {**m["cpu"], "clock_hz": seconds_clock_hz(m["cpu"])}, m["op_overhead_s"]
    data, fitted = fit(
        m["chains"],
        m["conv_sweep"],
        _base_data(info, m["bandwidth_bytes_per_s"]),
        glue_cycles=op_s * info["clock_hz"],
        depths=DEPTHS,
        # single GEMMs of unequal sides (sidecars before v25: none)
        gemms=m.get("gemm_sweep", []),
        peak_macs_per_cycle=PEAK_MACS_PER_CYCLE[info["isa"]],
        blockings=(1,) if m["quick"] else (1, 2, 4),
        profiler_s=m["profiler_overhead_s"],
        u8_sweep=m.get("u8_conv_sweep", []),  # (before v30: none)
    )
    pool = m["int8_maxpool"]
    if "profiled_s" in pool:  # the profiler's own time as the fit found it (every single conv)
        profiler = fitted["profiler_overhead_s"] or m["profiler_overhead_s"]
        pool["s_per_element"] = without_profiler(pool["profiled_s"], profiler) / pool["elements"]
    # LayerNorm's and softmax's rows (calibrations before v19: none); a Transpose's runs
    per_row = dict(m.get("elementwise_s_per_row") or {})
    if "TransposeRows" in m["movement_s_per_element"]:
        per_row["Transpose"] = transpose_s_per_row(m["movement_s_per_element"])
    data["overheads"] = overheads(
        gemm_op_cycles=fitted["layer_cycles"],
        run_s=m["run_overhead_s"],
        float_run_s=m.get("float_run_overhead_s", 0.0),  # (sidecars before v7: none)
        op_s=op_s,
        elementwise={
            **m["elementwise_s_per_element"],
            "MaxPool": pool["s_per_element"],
            **m["movement_s_per_element"],
        },
        clock_hz=data["clock_hz"],
        per_row=per_row,
        fitted={
            **{k: v for k, v in data["overheads"].items() if k not in _RECOMPUTED},
            "pool_channel_block": 4 * info["simd_lanes_32bit"],
            # lowbit's export pads conv channels to the direct kernel's (models._onnx_pad)
            "pad_conv_channels": True,
            # ...and stores 8-bit weights as uint8 where u8·s8 kernels saturate
            "u8_weight_bits": 8 if u8s8_saturates(info.get("flags", ())) else 0,
            # ONNX Runtime fuses one quantizer per tensor: one on two grids runs in float
            "two_grid_round_trip": True,
        },
    )
    o = data["overheads"]
    o["depthwise_channel_multiple"] = _isa(info).depthwise_channel_block
    o["fp32_depthwise_layout_multiple"] = _isa(info).float_layout_channel_multiple
    depthwise_fit = fit_depthwise(
        m["depthwise"],
        clock_hz=data["clock_hz"],
        channel_multiple=o["depthwise_channel_multiple"],
        layout_multiple=o["fp32_depthwise_layout_multiple"],
        fixed_cycles={"int8": o["layer_cycles"] + o["gemm_cycles"], "fp32": o["layer_cycles"]},
    )
    o.update({key: depthwise_fit[key] for key in DEPTHWISE_KEYS})
    # the Run call alone: the chains' intercepts less the border operators the importer
    # charges apart (their input quantize, output dequantize, layout changes)
    fitted_profile = Calibration(data, m).profile()
    for key, int8 in (("run_cycles", True), ("float_run_cycles", False)):
        o[key] = run_call_cycles(m["chains"], fitted_profile, int8=int8, clock_hz=info["clock_hz"])
    errors = {k: v for k, v in depthwise_fit.items() if k.startswith("mean_abs_pct_error")}
    m["fit"] = {**fitted, **errors}
    # after the fit (its chains stay simulated on the reported caches, as they were fitted):
    # the L3 this core's weights really keep (calibrations before v35: as reported)
    share = weight_share_bytes(
        m.get("weight_footprints") or [], dram_bytes_per_s=m["bandwidth_bytes_per_s"]["DRAM"]
    )
    if share is not None and with_weight_share(data, share):
        m["fit"]["l3_weight_share_bytes"] = share
    data["clock_hz"] = m["cpu"]["clock_hz"]
    calibration = Calibration(data, m)
    calibration.profile()  # validated here: a profile that fails validation is a bug
    return calibration
