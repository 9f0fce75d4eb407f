"""The host profile's fitted parameters (split from :mod:`lowbit.models.hostcal.calibration`).

Three kinds of measurement are fitted, each simulated with hwsim on the profile being fitted:

* layer chains (:func:`lowbit.models.hostcal.bench.bench_chains`): the per-layer cost of identical
  C→C conv / GEMM layers, dispatch included, INT8 and FP32;
* the INT8 conv sweep (:func:`lowbit.models.hostcal.conv.conv_sweep`): the kernel time of single
  3x3 and 1x1 convs with the channel counts compressed networks have (stems, pruned, unaligned),
  compared with the simulated layer minus its dispatch (``layer_cycles``);
* single INT8 GEMMs of unequal sides (:func:`lowbit.models.hostcal.gemm.gemm_sweep`), the
  same way.

The INT8 parameters -- an INT8 GEMM operator's fixed cost beyond the measured dispatch
(``gemm_cycles``), the INT8 cycles per MAC of the direct conv kernel and of the GEMM library
(``gemm_library_speedup``), the cycles per byte of weights streamed from the largest cache
when they overflow L2 (its bandwidth; the level written single-buffered: the kernels do not
hide that read -- on an Intel Xeon with AMX-INT8, a 512->512 3x3 conv on a 4x4 map took its
compute plus its 2.4 MB weight read at ~24 GB/s), the per-pixel and per-image costs of every
INT8 k×k conv (``conv_cycles_per_pixel``, ``conv_cycles_per_image``: two map sizes tell them
apart), the generic path's extra per pixel (``unaligned_conv_cycles_per_pixel``) and per
output element (``unaligned_conv_cycles_per_output``: its int32 accumulators written and
requantized in a second pass; the sweep's generic convs have 4 to 64 outputs per pixel,
which tell the two apart; where the GEMM chains give the library's own cost per row, the
generic path's per pixel is that, :data:`GENERIC_IS_LIBRARY`) and per copy of its
im2col (``im2col_copy_cycles``: a window row
at once in an ungrouped conv, a tap at a time in a grouped one -- the sweep's grouped
convs), the requantization cost per output element of every INT8 GEMM
(``requant_cycles_per_output``) and the extra of a GEMM the library runs, a linear layer's
or a matmul's (``library_requant_cycles_per_output``: its int32 output requantized in a pass
of its own; the conv and GEMM chains tell the two apart) and per row of its first operand
(``library_cycles_per_row``: packing; GEMM chains of 1 to 1,088 rows), and what a Gemm
(QGemm: bias and column scales applied in the GEMM) costs per output column and per output
more than a bare MatMul (``fused_bias_cycles_per_column``, ``fused_bias_cycles_per_output``:
single Gemms and MatMuls of unequal sides, :mod:`lowbit.models.hostcal.gemm`) -- and the
time ONNX Runtime's per-node profiler adds to each single kernel it reports (every single
conv pays it, no chain does: ~100 rows fit it more steadily than the difference of two
timings the sweep started from; the single GEMMs their own) -- are fitted on the INT8
measurements alone, by weighted non-negative least squares of the relative error (chains,
single convs and single GEMMs weighted equally; Huber's loss: a row far off pulls no
harder than one at :data:`ROBUST_ERROR`). hwsim's CPU cost is nearly linear in each
of them, so the fit is linearised around the estimate and solved again a few times
(Gauss-Newton): deterministic, with no search over starting points. ``compute.cols`` (the
kernels' N blocking: 1, 2 or 4 SIMD registers) is the one that fits best. The FP32 MAC rate
is then fitted on the FP32 chains with the rest fixed: the deployed graphs are INT8, so FP32
layers must not pull the fit; its convs with channels off the SIMD block (another kernel,
plus a reorder per layer) or of fewer than four blocks (narrower passes of the blocked
kernel, :data:`~lowbit.models.hostcal._fit_fp32.FP32_FULL_PASS_BLOCKS`) are reported, not
fitted (:mod:`lowbit.models.hostcal._fit_fp32`)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from lowbit.hwsim._warm_cache import WARM_SHARE
from lowbit.models.export._onnx_pad import CONV_CHANNEL_MULTIPLE, CONV_MIN_OUT_CHANNELS
from lowbit.models.hostcal._fit_fp32 import fit_fp32, full_pass_chains
from lowbit.models.hostcal._fit_sim import chain_layer_s, gemm_kernel_s, sweep_kernel_s
from lowbit.models.hostcal._fit_u8 import fit_u8
from lowbit.models.hostcal._gauss_newton import _gauss_newton, log_error
from lowbit.models.hostcal.bench import chain_weight_bytes
from lowbit.models.hostcal.conv import without_profiler

#: the INT8 parameters, each fitted as the coefficient of its simulated feature
INT8_PARAMS = (
    "gemm", "mac", "lib", "conv_px", "conv_img", "unaligned", "generic", "copy", "requant",
    "libreq", "librow", "fbcol", "fbout", "stream", "amac", "ainst",
)  # fmt: skip


#: the measured keys of the base profile's ``[overheads]`` a fit keeps (ActivationSpill's)
SPILL_KEYS = ("activation_cache_bytes", "activation_spill_bytes_per_cycle")
#: ``[overheads]`` keys set from the CPU's ISA before the fit (profile_fit._base_data)
ISA_KEYS = ("conv_out_channel_block",)

#: ONNX Runtime's generic conv path (an unaligned or grouped integer conv) is an im2col and
#: the GEMM library its Gemm and MatMul run (MlasGemm), which packs each row of its first
#: operand (a pixel's) the same way: where the GEMM chains fit that cost (``librow``), the
#: generic path's per-pixel cost is it, not a parameter of its own. Its requantization stays
#: its own (``generic``: the conv's GEMM requantizes each tile as it writes it, ~0.4 cycles
#: an output on an Intel Xeon, where a linear layer's pass of its own costs ~1.1 more). On
#: that Xeon the fit came out as close (rms log error 0.149) with one parameter fewer; six
#: earlier calibrations refitted, 31 constants of their consecutive pairs moved more than
#: 5 % against 41 (the per-row cost 2-5 % apart, was 15-71 %; the library's MAC rate 1-25 %,
#: was 12-50 %); tying the per-output cost too gave 41, and a stem conv 1.21x measured
GENERIC_IS_LIBRARY = "librow"


def _generic_costs(params: dict[str, float]) -> tuple[float, float]:
    """(per pixel, per output) of the generic conv path: the library's per-row cost
    (:data:`GENERIC_IS_LIBRARY`) when fitted, else its own per-pixel parameter."""
    library = GENERIC_IS_LIBRARY in params
    per_pixel = params[GENERIC_IS_LIBRARY] if library else params["unaligned"]
    return per_pixel, params.get("generic", 0.0)


def with_params(data: dict[str, Any], params: dict[str, float], glue: float) -> dict[str, Any]:
    """``data`` with the INT8 parameters (:data:`INT8_PARAMS`; ``mac``: cycles per MAC per
    lane, the inverse of the rate) and ``m32`` (the FP32 rate); ``glue`` is the measured
    dispatch every operator pays (``layer_cycles``)."""
    new = json.loads(json.dumps(data))
    layer = int(round(glue))
    per_pixel, per_output = _generic_costs(params)
    new["overheads"] = {
        "layer_cycles": layer,
        "gemm_cycles": int(round(params["gemm"])),
        "activation_gemm_cycles": int(round(params.get("ainst", 0.0))),
        # a sub-8-bit activation is clamped by one more (Clip) operator: one dispatch
        "narrow_activation_cycles": layer,
        "conv_channel_multiple": CONV_CHANNEL_MULTIPLE,
        "conv_min_out_channels": CONV_MIN_OUT_CHANNELS,
        "unaligned_conv_cycles_per_pixel": float(f"{per_pixel:.4g}"),
        "unaligned_conv_cycles_per_output": float(f"{per_output:.4g}"),
        "im2col_copy_cycles": float(f"{params.get('copy', 0.0):.4g}"),
        # the GEMM library's rate over the direct conv kernel's (both fitted per MAC)
        "gemm_library_speedup": float(f"{params['mac'] / params.get('lib', params['mac']):.4g}"),
        "activation_gemm_speedup": float(
            f"{params['mac'] / params.get('amac', params['mac']):.4g}"
        ),
        # the float GEMM library's (SGEMM) rate over the float conv kernel's
        "float_gemm_library_speedup": float(f"{params.get('lib32', 1.0):.4g}"),
        # the u8·u8 GEMM library's (uint8 weights, :mod:`._fit_u8`); 0: not fitted
        "u8_gemm_library_speedup": float(
            f"{params['mac'] / params['u8mac'] if 'u8mac' in params else 0.0:.4g}"
        ),
        "conv_cycles_per_pixel": float(f"{params['conv_px']:.4g}"),
        "conv_cycles_per_image": float(f"{params['conv_img']:.4g}"),
        "requant_cycles_per_output": float(f"{params['requant']:.4g}"),
        "library_requant_cycles_per_output": float(f"{params.get('libreq', 0.0):.4g}"),
        "library_cycles_per_row": float(f"{params.get('librow', 0.0):.4g}"),
        "fused_bias_cycles_per_column": float(f"{params.get('fbcol', 0.0):.4g}"),
        "fused_bias_cycles_per_output": float(f"{params.get('fbout', 0.0):.4g}"),
        # measured in steady state: a small model's weights stay in the last-level cache
        "warm_cache": True,
        # measured, not fitted (profile_fit._base_data): activations beyond L2 spill to L3
        **{k: v for k, v in data.get("overheads", {}).items() if k in SPILL_KEYS + ISA_KEYS},
    }
    if "stream" in params:
        # weights that overflow L2 stream from the largest cache (or DRAM) at every run, at
        # the fitted rate, and the kernels do not hide that read behind their arithmetic
        outer = _weight_caches(new)[-1]
        outer["bandwidth_bytes_per_cycle"] = float(f"{1.0 / params['stream']:.4g}")
        outer["double_buffered"] = False
    for mode in new["compute"]["precision"]:
        rate = 1.0 / params["mac"] if mode["w_bits"] == 8 else params.get("m32", 1.0)
        mode["macs_per_pe_per_cycle"] = float(f"{rate:.6g}")
    return new


def _with_cols(data: dict[str, Any], cols: int) -> dict[str, Any]:
    new = json.loads(json.dumps(data))
    new["compute"]["cols"] = int(cols)
    return new


def _simulate(int8, sweep, gemms, data, depths) -> np.ndarray:
    """Simulated seconds of the INT8 chains' layers, then the conv sweep's kernels, then the
    single GEMMs' kernels."""
    return np.concatenate(
        [
            chain_layer_s(int8, data, depths),
            sweep_kernel_s(sweep, data),
            gemm_kernel_s(gemms, data),
        ]
    )


#: where the Gauss-Newton iterations start (cycles; ``mac``: cycles per MAC per lane)
_START = {
    "gemm": 1000.0,
    "mac": 0.125,
    "lib": 0.125,
    "conv_px": 10.0,
    "conv_img": 100.0,
    "unaligned": 20.0,
    "generic": 0.3,
    "copy": 8.0,
    "requant": 0.2,
    "libreq": 0.5,
    "librow": 5.0,
    "fbcol": 10.0,
    "fbout": 0.3,
    "stream": 0.1,
    "amac": 0.5,
    "ainst": 1000.0,
}

#: the least start of the profiler's fitted cost (a Gauss-Newton step is a share of it)
_MIN_PROFILER_START_CYCLES = 500.0

#: a weak prior on the conv costs that trade off against each other (per pixel, per image,
#: per output, the generic path's extra): a deviation of 100 % from ``_START`` weighs like a
#: 3 % error of one measurement group, which settles the directions the data leave open
#: (two calibrations in a row otherwise differed by 10-28 % there, with equal predictions);
#: the per-image cost, ~3 % of a batch-64 conv and the least determined, like a 10 % error
#: (with the generic path's per-output and im2col costs it wandered 133-215 cycles in
#: consecutive calibrations at 3 %; 107-109 at 10 %, with the same fit error). Stronger
#: priors on the generic path's costs steady them further but bias a host whose costs lie
#: far from ``_START`` (a fit of synthetic data 40 % away missed by 2 % at 10 %). A Gemm's
#: own costs per output column and per output (``fbcol``, ``fbout``) too: they rest on the
#: differences between a single Gemm and a MatMul of the same shape, a fifth of each
#: kernel's time, so a 2 % move of one timing moves them by ~10 %. Refitted, 22 calibrations
#: of an Intel Xeon (AMX-INT8; eleven consecutive pairs) had the per-output cost over 5 %
#: apart in 8 of 11 pairs without the prior, 4 with it (0.13-0.30 -> 0.20-0.31 cycles; all
#: constants: 31 -> 27 of 385 over 5 %), every held-out network and layer predicted within
#: 0.2 % of before.
_PRIOR = {"conv_img": 0.1} | dict.fromkeys(
    ("conv_px", "requant", "unaligned", "generic", "copy", "fbcol", "fbout"), 0.03
)
#: the INT8 fit's loss is Huber's on each row's relative error: quadratic up to this, linear
#: beyond. A few single kernels sit 10-30 % off any fit (the AMX GEMM's cost follows its
#: weight tiles, not its MACs), and one shape a shared machine slowed by 10 % for a whole
#: calibration moved the GEMM library's speedup by 15 % under squared error. Refitted, 28
#: calibrations of an Intel Xeon (AMX-INT8; 14 consecutive pairs) had 36 of their 490 pair
#: constants over 5 % apart under squared error, 33 with Huber's at 10 %, 29 at 5 %, 30 at
#: 3 %; the held-out networks and layers came out within 2 % of the squared error's
#: predictions
ROBUST_ERROR = 0.05
#: a larger N blocking is taken only when it lowers the fit's mean squared log error by
#: more than this share: two calibrations in a row took 1 and 2 registers for errors 1 %
#: apart, which moved every other constant by 10-40 %; at 5 %, an Intel Xeon (AMX-INT8)
#: took 2 registers for fits 4.6 % and 8.8 % better in consecutive calibrations, and the
#: held-out layers and networks came out 5-10 % further off with 2 than with 1
BLOCKING_MARGIN = 0.15


def _linear_fit(
    int8, sweep, gemms, data, *, glue: float, depths, min_mac: float, profiler_s: float | None
) -> tuple[float, dict[str, float]]:
    """The INT8 parameters by :func:`_gauss_newton`; rows weighted by 1/measured (the
    relative error) and each group (chains, conv sweep, single GEMMs) by 1/sqrt(its size).
    ``profiler_s``: the profiler's separately measured cost per kernel, the fitted one's start
    (None: what the sweep's rows had subtracted)."""
    # the profiler's own time in each kernel it reports (cycles; every sweep row pays it, no
    # chain does), fitted with the rest when the sweep kept what it reported and has more
    # than one (batch, map size): with one (the quick sweep's) it moves in lockstep with the
    # per-kernel, per-image and per-pixel costs, and the separately measured value stays
    shapes = {(r["batch"], r["spatial"]) for r in sweep}
    profiled = len(shapes) > 1 and all("profiled_kernel_s" in r for r in sweep)
    kernel = "profiled_kernel_s" if profiled else "kernel_s"
    groups = (int8, sweep, gemms)
    measured = np.array(
        [r["layer_s"] for r in int8] + [r[kernel] for r in sweep] + [r[kernel] for r in gemms]
    )
    size = np.concatenate([np.full(len(g), float(len(g))) for g in groups])
    weight = 1.0 / (measured * np.sqrt(size))

    # the profiler's costs are added here, not simulated: a step in either reuses the
    # simulation of the estimate it steps from
    simulated: dict[tuple, np.ndarray] = {}

    def simulate(theta: dict[str, float]) -> np.ndarray:
        key = tuple(sorted((k, v) for k, v in theta.items() if k not in ("prof", "gprof")))
        if key not in simulated:
            if len(simulated) >= 64:  # a Gauss-Newton step's columns (~20), kept whole
                simulated.clear()
            simulated[key] = _simulate(int8, sweep, gemms, with_params(data, theta, glue), depths)
        sim = simulated[key].copy()
        single = len(int8) + len(sweep)
        sim[len(int8) : single] += theta.get("prof", 0.0) / data["clock_hz"]
        sim[single:] += _gemm_profiler_cycles(theta) / data["clock_hz"]
        return sim

    lower = {"mac": min_mac, "lib": min_mac, "amac": min_mac}
    start = {k: v for k, v in _START.items() if k not in _undetermined(int8, gemms, data, depths)}
    if GENERIC_IS_LIBRARY in start:
        del start["unaligned"]  # the generic path's per pixel: the library's per row
    caches = _weight_caches(data)
    if "stream" in start and caches and caches[-1].get("bandwidth_bytes_per_cycle"):
        # from the streamed level's measured copy bandwidth: started at _START's 10 bytes per
        # cycle, an AMD Zen 4's fit stayed there (23-26 fitted from nearby starts, 27-30
        # copied) at twice the error, the GEMM library's rate 25 % off with it
        start["stream"] = 1.0 / caches[-1]["bandwidth_bytes_per_cycle"]
    if profiled:
        # from the separately measured overhead the sweep subtracted (a difference of two
        # ~85 us timings: it moved 1-4 us between calibrations, and every small kernel with it)
        # (not read back from the rows when given: the fit rewrites their kernel time with
        # its own estimate, so a refitted sidecar would start elsewhere)
        found = (
            profiler_s
            if profiler_s is not None
            else np.median([r["profiled_kernel_s"] - r["kernel_s"] for r in sweep])
        )
        start["prof"] = max(float(found) * data["clock_hz"], _MIN_PROFILER_START_CYCLES)
        if gemms:
            # the single GEMMs' own: what a profiled QGemm costs beyond a chain's layer is
            # not what a profiled conv does (on an Intel Xeon one shared value came out at
            # 11-12 thousand cycles, the convs alone had put it at 27 thousand: the convs'
            # difference went into their cost per pixel, 29 -> 32.5 cycles, and a stem conv
            # on a 112-pixel map came out 1.18-1.23x measured, 1.14-1.18x fitted apart)
            start["gprof"] = start["prof"]
    theta = _gauss_newton(
        simulate, measured, weight, start, lower=lower, prior=_PRIOR, robust=ROBUST_ERROR
    )
    return float(np.mean(log_error(simulate(theta), measured))), theta


def _gemm_profiler_cycles(theta: dict[str, float]) -> float:
    """The profiler's fitted cost in each single GEMM it reports (cycles): their own
    (``gprof``), else the single convs' (``prof``; 0 without either)."""
    return theta.get("gprof", theta.get("prof", 0.0))


def _weight_caches(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The on-chip memory levels of profile ``data`` that hold weights, smallest first."""
    on_chip = (m for m in data["memory"] if not m.get("off_chip") and "weights" in m["holds"])
    return sorted(on_chip, key=lambda m: m["size_bytes"])


def _undetermined(int8, gemms, data: dict[str, Any], depths: tuple[int, int]) -> set[str]:
    """Parameters no measurement determines (``--quick`` measures few shapes), left out of
    the fit -- the profile keeps their neutral values -- rather than left to wander: the
    products of two activations without a ``matmul`` chain; a Gemm's cost per output
    column without single GEMMs of unequal sides, and its costs of its own without single
    MatMuls beside them (sidecars before v25 have none); the streamed weights unless a
    chain's weights overflow the caches inside the largest (their share
    :data:`~lowbit.hwsim._warm_cache.WARM_SHARE`, as hwsim homes them)."""
    out = set()
    if not any(r["kind"] in ("gemm", "matmul") for r in int8):
        out |= {"libreq", "librow"}
    if not any(r["in_features"] != r["out_features"] for r in gemms):
        out.add("fbcol")
    if len({r.get("form", "gemm") for r in gemms}) < 2:
        # a Gemm's own output costs need a bare MatMul of the same shapes beside it
        out |= {"fbcol", "fbout"}
    if len({r["batch"] for r in int8 if r["kind"] == "gemm"}) < 3:
        # the per-row cost needs GEMMs of three row counts or more to stand apart from the
        # per-output and fixed costs (--quick measures two)
        out.add("librow")
    if not any(r["kind"] == "matmul" for r in int8):
        out |= {"amac", "ainst"}
    caches = [m["size_bytes"] for m in _weight_caches(data)]
    deepest = max((chain_weight_bytes(r["kind"], r["size"], max(depths)) for r in int8), default=0)
    if len(caches) < 2 or deepest <= WARM_SHARE * caches[-2]:
        out.add("stream")
    return out


def fit(
    chains,
    sweep,
    data: dict[str, Any],
    *,
    glue_cycles: float,
    depths: tuple[int, int],
    gemms=(),
    peak_macs_per_cycle: tuple[float, float] = (math.inf, math.inf),
    blockings: tuple[int, ...] = (1, 2, 4),
    profiler_s: float | None = None,
    u8_sweep=(),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit the profile to the chains, the conv sweep and the single GEMMs ``gemms``
    (:func:`lowbit.models.hostcal.gemm.gemm_sweep`; module docstring); returns the
    profile data and the fit's summary. Each row gains its simulated value.
    ``peak_macs_per_cycle``: the core's (INT8, FP32) physical peak: no fitted rate exceeds
    it (the cycles per MAC per lane are bounded below by lanes / peak). ``blockings``: the
    N blockings tried, in SIMD registers (a quick calibration's few shapes cannot tell them
    apart: it takes one register -- it once chose four, and missed FP32 by 70 %); a larger
    one only when it fits clearly better (:data:`BLOCKING_MARGIN`), and the blockings are
    tried from the narrowest until one fits no better than the one before (each fit takes
    7-15 s: the widest had never won where the middle one lost). ``profiler_s``: the
    profiler's measured cost per kernel (:func:`~lowbit.models.hostcal.conv.profiler_overhead_s`),
    where the fit of its own starts. ``u8_sweep``: single convs with uint8 weights
    (:mod:`lowbit.models.hostcal._fit_u8`), fitted last."""
    int8 = [r for r in chains if r["precision"] == "int8"]
    fp32 = [r for r in chains if r["precision"] != "int8"]
    lanes = int(data["compute"]["cols"])
    fits = []
    for n in (lanes * b for b in blockings):
        value, params = _linear_fit(
            int8,
            sweep,
            gemms,
            _with_cols(data, n),
            glue=glue_cycles,
            depths=depths,
            min_mac=n / peak_macs_per_cycle[0],
            profiler_s=profiler_s,
        )
        if fits and value >= fits[-1][0]:
            break  # a wider blocking fitting no better than the narrower: wider still won't
        fits.append((value, params, n))
    # the smallest blocking within the margin of the best fit
    least = min(value for value, _, _ in fits)
    best, theta, cols = next(f for f in fits if f[0] * (1 - BLOCKING_MARGIN) <= least)
    data = _with_cols(data, cols)
    # FP32 cycles per MAC, the rest fixed: the deployed graphs are INT8, FP32 never pulls
    # (_fit_fp32: on the chains of full passes of the blocked float kernel only)
    fp32_best, fp32_params = fit_fp32(
        full_pass_chains(fp32, lanes=lanes),
        data,
        theta,
        with_params=with_params,
        glue=glue_cycles,
        depths=depths,
        min_mac=cols / peak_macs_per_cycle[1],
    )
    theta = {**theta, **fp32_params}
    if "prof" in theta:
        # each single kernel's time: what the profiler reported less its fitted cost
        for rows, cycles in (
            (sweep, theta["prof"]),
            (u8_sweep, theta["prof"]),
            (gemms, _gemm_profiler_cycles(theta)),
        ):
            profiler_s = cycles / data["clock_hz"]
            for row in rows:
                row["kernel_s"] = without_profiler(row["profiled_kernel_s"], profiler_s)
    theta |= fit_u8(
        u8_sweep,
        data,
        theta,
        with_params=with_params,
        glue=glue_cycles,
        min_mac=cols / peak_macs_per_cycle[0],
    )
    fitted = with_params(data, theta, glue_cycles)
    errors: dict[str, list[float]] = {}
    for group, rows, sim, key in (
        ("int8", int8, chain_layer_s(int8, fitted, depths), "layer_s"),
        ("fp32", fp32, chain_layer_s(fp32, fitted, depths), "layer_s"),
        ("int8", sweep, sweep_kernel_s(sweep, fitted), "kernel_s"),
        ("int8", gemms, gemm_kernel_s(gemms, fitted), "kernel_s"),
        ("u8", u8_sweep, sweep_kernel_s(u8_sweep, fitted), "kernel_s"),
    ):
        for row, s in zip(rows, sim, strict=True):
            row["simulated_s"] = float(s)
            errors.setdefault(group, []).append(abs(s / row[key] - 1))
    o = fitted["overheads"]
    return fitted, {
        # an INT8 GEMM operator's whole fixed cost (layer_cycles + gemm_cycles)
        "layer_cycles": o["layer_cycles"] + o["gemm_cycles"],
        "int8_macs_per_pe_per_cycle": 1.0 / theta["mac"],
        "gemm_library_speedup": o["gemm_library_speedup"],
        # 0: not fitted (no chain's weights overflow the inner caches)
        "stream_bytes_per_cycle": 1.0 / theta["stream"] if "stream" in theta else 0.0,
        "activation_gemm_speedup": o["activation_gemm_speedup"],
        "activation_gemm_cycles": o["activation_gemm_cycles"],
        "fp32_macs_per_pe_per_cycle": float(theta["m32"]),
        "float_gemm_library_speedup": o["float_gemm_library_speedup"],
        "u8_gemm_library_speedup": o["u8_gemm_library_speedup"],
        "unaligned_conv_cycles_per_pixel": o["unaligned_conv_cycles_per_pixel"],
        "unaligned_conv_cycles_per_output": o["unaligned_conv_cycles_per_output"],
        "im2col_copy_cycles": o["im2col_copy_cycles"],
        "conv_cycles_per_pixel": o["conv_cycles_per_pixel"],
        "conv_cycles_per_image": o["conv_cycles_per_image"],
        "requant_cycles_per_output": o["requant_cycles_per_output"],
        "library_requant_cycles_per_output": o["library_requant_cycles_per_output"],
        "library_cycles_per_row": o["library_cycles_per_row"],
        "fused_bias_cycles_per_column": o["fused_bias_cycles_per_column"],
        "fused_bias_cycles_per_output": o["fused_bias_cycles_per_output"],
        "cols": int(cols),
        "profiler_overhead_s": theta.get("prof", 0.0) / data["clock_hz"],
        "gemm_profiler_overhead_s": _gemm_profiler_cycles(theta) / data["clock_hz"],
        "rms_log_error_int8": math.sqrt(best),
        "rms_log_error_fp32": math.sqrt(fp32_best),
        "mean_abs_pct_error_int8": float(np.mean(errors.get("int8", [0.0])) * 100),
        "mean_abs_pct_error_fp32": float(np.mean(errors.get("fp32", [0.0])) * 100),
        "int8_measurements": len(errors.get("int8", [])),
        "mean_abs_pct_error_u8": float(np.mean(errors.get("u8", [0.0])) * 100),
    }
