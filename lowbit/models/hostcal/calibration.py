"""Host CPU calibration: measure this CPU through ONNX Runtime and write an hwsim profile.

The host model is measured, not typed by hand (``lowbit calibrate-host``):

* from the OS: CPU flags (AVX-512, VNNI), cache sizes
  (``/sys/devices/system/cpu/cpu0/cache``), SIMD width (16 int32/fp32 lanes with AVX-512F,
  8 with AVX2);
* the clock the core runs one thread at (:mod:`lowbit.models.hostcal.clock`: a chain of
  dependent adds; ``/proc/cpuinfo`` where it cannot run);
* memory bandwidth of DRAM and of each cache level (numpy copies of buffers sized for it);
* ONNX Runtime (1 thread) on chains of identical layers, INT8 QDQ and FP32: conv and GEMM
  layers shaped like the zoo's, and tiny layers (:mod:`lowbit.models.hostcal.bench`). Two chain
  depths
  give the per-layer cost and the intercept: one ``Run`` call and the operators at the
  chain's border (its input quantize, output dequantize, layout changes; a float chain's
  reorders), which the ONNX importer charges as layers of their own -- so the Run call
  alone, ``overheads.run_cycles``, is the median over the small batch-1 INT8 chains of the
  intercept less those layers (:mod:`lowbit.models.hostcal._run_call`), and
  ``overheads.float_run_cycles`` the same over the FP32 chains;
* ONNX Runtime on chains of a tiny Add (the dispatch cost of one operator, written as
  ``overheads.layer_cycles``) and of LayerNorm/Softmax/GELU/Add/Relu/MaxPool on zoo-sized
  tensors (per-element costs, written as ``[overheads.elementwise_cycles_per_element]``;
  ``embedding`` -- class token + positions -- is one Add pass and takes Add's cost);
* ONNX Runtime's per-node profiler on single INT8 convs shaped like compressed networks'
  (stems, pruned and unaligned channel counts, 1x1 low-rank factors, grouped convs:
  :mod:`lowbit.models.hostcal.conv`), on single INT8 linear layers of unequal sides, each
  as a Gemm and as a MatMul (:mod:`lowbit.models.hostcal.gemm`: what a Gemm's own bias
  and column scales cost apart from the GEMM library's per-output cost)
  and on the uint8 NHWC MaxPool between two INT8 convs (``maxpool``, with
  ``pool_channel_block`` = the uint8 lanes of one SIMD register: the deployed graphs are
  INT8).

On a shared virtual machine a slow spell (another tenant on the core or its cache) lasts up
to seconds and slows whatever runs in it by 30-80 %. So every chain, single conv and
element-wise shape is measured once in each of several passes over all of them
(:func:`lowbit.models.hostcal.bench.least_disturbed`): the single convs keep the least
of three as timed (each timing is converted to the reference clock by a reading beside it,
and the least of several converted timings would be the one whose conversion erred
lowest), the layer chains, the depthwise chains and the element-wise shapes the median of
five, the single GEMMs the median of three in each of eight rounds; the
few measurements that take milliseconds (a tiny operator's dispatch, the INT8 softmax)
are taken at two or three points seconds apart, the least kept, each of them the median of
its own rounds; the data movement's sessions (and the ReLU6 pass's pairs of chains) of
its three rounds are pooled, the median kept (a session whose buffers landed badly is one
of many).

The GEMM and convolution costs are fitted on the INT8 chains and single convs by weighted
non-negative least squares (:mod:`lowbit.models.hostcal._fit`): an INT8 GEMM operator's fixed cost
(``gemm_cycles``, on top of the measured dispatch every operator pays), cycles per MAC of
the direct conv kernel and of the GEMM library (``gemm_library_speedup``: Gemm/MatMul
layers and generic-path convs; ONNX Runtime's MlasGemm uses AMX tiles where the CPU has
them, its direct conv kernel VNNI), the rate at which weights that overflow L2 stream from
the largest cache at every run, not hidden behind the arithmetic (that level's bandwidth,
``double_buffered = false``; chains of 2.4-3 MB layers measure it), the rate and per-head
cost of a product of two activations (attention's QLinearMatMul: chains of x·x on 4-16
heads),
per-pixel and per-image costs of k x k convs, the generic path's extra per pixel, per
output and per im2col copy, the requantization cost per output, and ``compute.cols``
among 1, 2 or 4 SIMD registers (the kernels' N blocking); the FP32 rate on the FP32
chains. Weights are stored as int8 whatever their grid (no native INT4 compute, no packed
low-bit kernels in the export), so ``weight_storage = "promoted"``.
Energies are the built-in ``cpu-x86-avx2`` estimates. Everything measured is also written
to a JSON sidecar (``<profile>.json``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from lowbit.hwsim.errors import LowbitError, ProfileError
from lowbit.models._host import u8s8_saturates
from lowbit.models.cache import cache_dir
from lowbit.models.hostcal._fit import CONV_CHANNEL_MULTIPLE, CONV_MIN_OUT_CHANNELS
from lowbit.models.hostcal._overheads import (  # noqa: F401  (re-exported)
    _RECOMPUTED,
    ORT_KINDS,
    RUN_CHAIN_LAYER_S,
    overheads,
    run_call_s,
)
from lowbit.models.hostcal._toml import PROFILE_NAME, profile_toml
from lowbit.models.hostcal._version import CALIBRATION_VERSION
from lowbit.models.hostcal.bench import (
    DEPTHS,
    FULL_SHAPES,
    QUICK_SHAPES,
    bench_chains,
    copy_bandwidth,
    glue_op_slope,
    streaming_shapes,
)
from lowbit.models.hostcal.cache_share import footprint_timings
from lowbit.models.hostcal.clock import clock_track, with_clock_track, with_running_clock
from lowbit.models.hostcal.conv import (
    CONV_SWEEP,
    GROUPED_SWEEP,
    QUICK_CONV_SWEEP,
    U8_CONV_SWEEP,
    conv_sweep,
    int8_maxpool_s_per_element,
    profiler_overhead_s,
)
from lowbit.models.hostcal.elementwise import elementwise_costs, middle_round
from lowbit.models.hostcal.gemm import GEMM_ROUNDS, GEMM_SWEEP, gemm_sweep, merged_rounds
from lowbit.models.hostcal.isa import cpu_flags, cpu_info
from lowbit.models.hostcal.kernels import (
    DEPTHWISE_SWEEP,
    QUICK_DEPTHWISE_SWEEP,
    depthwise_sweep,
    int8_softmax_s_per_element,
)
from lowbit.models.hostcal.movement import merged_spots, spot_costs
from lowbit.models.hostcal.profile_fit import Calibration, from_measurements
from lowbit.models.hostcal.quality import CalibrationError, MeasurementError, fit_problems
from lowbit.models.hostcal.quiet import faster_rows, least_quiet, retry_budget, timed_quiet
from lowbit.models.hostcal.timing import PhaseClock

__all__ = [
    "CALIBRATION_VERSION",
    "CONV_CHANNEL_MULTIPLE",
    "CONV_MIN_OUT_CHANNELS",
    "PROFILE_NAME",
    "Calibration",
    "CalibrationError",
    "calibration_version_of",
    "default_profile_path",
    "calibrate",
    "load_or_calibrate",
    "overheads",
    "profile_toml",
    "write",
]

log = logging.getLogger(__name__)

_KiB = 1024

#: the extra passes over timings no pass caught on a quiet core may take this share of the
#: rest of the calibration's time, plus RETRY_FLOOR_S (quiet.retry_budget): on a busy AMD Zen 3
#: under KVM they took 54-75 s of 170-190, where a quiet hour's whole calibration took 106-130
RETRY_SHARE = 0.1
RETRY_FLOOR_S = 3.0


def default_profile_path() -> Path:
    """``$LOWBIT_CACHE/host/host-cpu.toml`` (``~/.cache/lowbit`` without the variable)."""
    return cache_dir() / "host" / f"{PROFILE_NAME}.toml"


#: the progress callback of the calibration running in this context (:func:`calibrate`)
_PROGRESS: ContextVar[Callable[[str, float], None] | None] = ContextVar(
    "calibration_progress", default=None
)


def calibrate(
    *,
    quick: bool = False,
    attempts: int = 2,
    progress: Callable[[str, float], None] | None = None,
) -> Calibration:
    """Measure this CPU (module docstring) and fit a host profile; validated, not written.

    ``quick`` uses four layer shapes and few repeats (for tests; coarser numbers). A fit
    that fails the quality gates (:func:`lowbit.models.hostcal.quality.fit_problems`) is
    measured again, up to ``attempts`` times, then refused with :class:`CalibrationError`.
    ``progress(phase, seconds)`` is called as each phase of the measuring starts, with the
    seconds since the attempt began (``lowbit calibrate-host`` shows it).
    """
    token = _PROGRESS.set(progress)
    try:
        return _attempts(quick=quick, attempts=attempts)
    finally:
        _PROGRESS.reset(token)


def _attempts(*, quick: bool, attempts: int) -> Calibration:
    problems: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            calibration = _calibrate_once(quick=quick)
        except ProfileError as err:  # a fitted constant outside what a profile may hold
            problems = [f"the fitted profile is invalid: {err}"]
        except MeasurementError as err:  # a timing gone wrong (never fitted)
            problems = [str(err)]
        else:
            m = calibration.measurements
            problems = fit_problems(calibration.data, m["fit"], isa=m["cpu"]["isa"])
        if not problems:
            m["attempts"] = attempt
            return calibration
        log.warning(
            "calibration attempt %d/%d failed its quality gates: %s",
            attempt,
            attempts,
            "; ".join(problems),
        )
    raise CalibrationError(
        f"host calibration refused after {attempts} attempts: {'; '.join(problems)} "
        "(no profile written; retry on a quiet machine)"
    )


def _calibrate_once(*, quick: bool) -> Calibration:
    measurements = _measure(quick=quick)
    begin = time.perf_counter()
    calibration = from_measurements(measurements)
    # the fit's own seconds beside the phases' (~10 s of an AMD Zen 3's calibration; a
    # refit of the sidecar leaves them as they were)
    measurements["phase_seconds"]["fit"] = round(time.perf_counter() - begin, 1)
    return calibration


def _measure(*, quick: bool) -> dict[str, Any]:
    """Everything a calibration times on this CPU (the sidecar's measurements, before any
    fit): :func:`from_measurements` turns them into a profile."""
    import onnxruntime as ort

    phase = PhaseClock(on_phase=_PROGRESS.get())
    with phase("clock"):
        info = with_running_clock(cpu_info())
    # every timing is converted to the clock read at the start, by the clock read beside it
    # (the clock moves 10-20 % within a calibration on a shared machine)
    with (
        clock_track(reference_hz=info["clock_hz"]) as track,
        retry_budget(share=RETRY_SHARE, floor_s=RETRY_FLOOR_S) as budget,
    ):
        repeats = 10 if quick else 60
        caches = info["caches_bytes"]
        with phase("copy bandwidth"):
            bandwidth = {
                "DRAM": copy_bandwidth(
                    max(64 * _KiB**2, 2 * caches.get("L3", 0)), repeats=2 if quick else 4
                )
            }
            if not quick:
                for level, size in caches.items():
                    # source and destination together fill half the level (not all of it)
                    bandwidth[level] = copy_bandwidth(size // 4, repeats=20)
        # how much of the reported L3 keeps this core's weights (cache_share): a shared
        # L3 gives a core far less than its size (a quick calibration leaves it as reported)
        footprints = []
        if not quick and "L3" in caches:
            with phase("cache share"):
                footprints = footprint_timings(cache_bytes=caches["L3"], repeats=20)
        spill = []
        if "L2" in caches:
            # source and destination twice the L2 each: a layer's activations that overflow it.
            # L3 is shared with other cores: measured here and again at the end, the faster kept
            # (two calibrations a minute apart measured 21.5 and 28.4 GB/s once each)
            with phase("copy bandwidth"):
                spill.append(copy_bandwidth(2 * caches["L2"], repeats=2 if quick else 10))
        # a tiny operator's dispatch, measured at three points seconds apart (a slow spell of
        # a shared machine disturbs one of them), the least quiet one kept (on an AMD
        # Zen 3 under KVM two calibrations' took 2284 and 1435 cycles without it; with two
        # points, before and after the chains, one still took 2820 against 1478)
        with phase("dispatch"):
            glue = [timed_quiet(lambda: glue_op_slope(repeats=repeats))]
        # data movement and the INT8 softmax take about a second: measured here, after the conv
        # sweep and at the end, the least per operator (one calibration's came out 20-60 % high;
        # with two rounds a transpose's cost per row still moved 5-10 % between calibrations)
        with phase("data movement"):
            spots = [spot_costs(repeats=repeats)]
        # the elementwise operators (~1 s) too: here, after the sweep and at the end, the
        # middle round per operator (elementwise.middle_round)
        with phase("elementwise"):
            elementwise_rounds = [elementwise_costs(repeats=repeats)]
        # single Gemms and MatMuls (none in a quick calibration: its profiler's cost is one
        # difference of two timings, not fitted; a few small kernels less it moved the GEMM
        # library's fitted rate 0.2-5x between quick calibrations), in GEMM_ROUNDS rounds
        # spread over the calibration, merged at the end
        gemm_rounds = []

        def gemm_round() -> None:
            if not quick:
                with phase("gemm sweep"):
                    gemm_rounds.append(gemm_sweep(GEMM_SWEEP, repeats=4 * repeats))

        gemm_round()
        with phase("dispatch"):
            glue.append(timed_quiet(lambda: glue_op_slope(repeats=repeats)))
        with phase("layer chains"):
            rows = bench_chains(QUICK_SHAPES if quick else FULL_SHAPES, repeats=repeats)
        gemm_round()
        with phase("dispatch"):
            glue.append(timed_quiet(lambda: glue_op_slope(repeats=repeats)))
            op_s = least_quiet(
                glue, key=lambda slope: slope.long_s, again=lambda: glue_op_slope(repeats=repeats)
            ).per_layer_s
        # the per-node profiler adds its own time to every kernel it reports: taken off
        with phase("profiler"):
            profiler_s = profiler_overhead_s(repeats=repeats, op_s=op_s)
        gemm_round()
        with phase("conv sweep"):
            sweep = conv_sweep(
                QUICK_CONV_SWEEP if quick else CONV_SWEEP + GROUPED_SWEEP,
                repeats=4 * repeats,
                profiler_s=profiler_s,
            )
            # convs with uint8 weights, where the export stores 8-bit weights so (_fit_u8)
            u8_sweep = (
                conv_sweep(U8_CONV_SWEEP, repeats=4 * repeats, profiler_s=profiler_s, u8=True)
                if not quick and u8s8_saturates(cpu_flags())
                else []
            )
        gemm_round()
        with phase("data movement"):
            spots.append(spot_costs(repeats=repeats))
        with phase("elementwise"):
            elementwise_rounds.append(elementwise_costs(repeats=repeats))
        gemm_round()
        # the deployed graphs are INT8: their MaxPool runs on uint8 NHWC between INT8 convs, a
        # pixel's channels in one SIMD register (64 uint8 with AVX-512) -- 8 channels cost what
        # 64 do -- not at the FP32 chain's per-element cost (kept in the sidecar). Measured at
        # one register's worth of channels: the cost per element of a full block; the
        # profiler's own time is taken off again with the fit's value of it
        with phase("maxpool"):
            pool = int8_maxpool_s_per_element(
                channels=4 * info["simd_lanes_32bit"],
                batch=16 if quick else 64,
                repeats=2 * repeats,
                profiler_s=profiler_s,
            )
        gemm_round()
        with phase("data movement"):
            spots.append(spot_costs(repeats=repeats))
        movement, softmax = merged_spots(spots)
        with phase("elementwise"):
            elementwise_rounds.append(elementwise_costs(repeats=repeats))
        elementwise, per_row = middle_round(elementwise_rounds)
        movement["QLinearSoftmax"] = int8_softmax_s_per_element(repeats=0, op_s=op_s, slope=softmax)
        gemm_round()
        with phase("depthwise chains"):
            depthwise = depthwise_sweep(
                QUICK_DEPTHWISE_SWEEP if quick else DEPTHWISE_SWEEP,
                repeats=max(2 * repeats // 3, 10),
            )
        if not quick and "L2" in caches:
            # INT8 GEMM chains streaming their weights from the shared L3 (its rate moves with
            # other tenants' load for minutes), timed again: the faster kept (3 s; the convs'
            # would take 5 s more). The stream rate is fitted on INT8 chains only; the FP32
            # ones keep their one timing
            streaming = streaming_shapes(FULL_SHAPES, cache_bytes=caches["L2"], depth=max(DEPTHS))
            again = tuple(shape for shape in streaming if shape[0] == "gemm")
            with phase("layer chains"):
                rows = faster_rows(rows, bench_chains(again, repeats=repeats, precisions=(True,)))
        if spill:
            with phase("copy bandwidth"):
                spill.append(copy_bandwidth(2 * caches["L2"], repeats=2 if quick else 10))
            bandwidth["L2 spill"] = max(spill)
        for _ in range(GEMM_ROUNDS - len(gemm_rounds)):
            gemm_round()
        gemms = merged_rounds(gemm_rounds, profiler_s=profiler_s)
    if track is not None:
        info = with_clock_track(info, track)
        info["clock_track"]["retries"] = budget.summary()
    return {
        "calibration_version": CALIBRATION_VERSION,
        "cpu": info,
        "onnxruntime": ort.__version__,
        "threads": 1,
        "quick": quick,
        "bandwidth_bytes_per_s": bandwidth,
        "weight_footprints": footprints,
        "chains": rows,
        "conv_sweep": sweep,
        "u8_conv_sweep": u8_sweep,
        "gemm_sweep": gemms,
        "int8_maxpool": pool,
        "depthwise": depthwise,
        # the small chains' intercepts: a Run call and their border operators (the profile's
        # run cycles are these less the border, hostcal._run_call)
        "run_overhead_s": run_call_s(rows, int8=True),
        "float_run_overhead_s": run_call_s(rows, int8=False),
        "op_overhead_s": op_s,
        "profiler_overhead_s": profiler_s,
        "elementwise_s_per_element": elementwise,
        "elementwise_s_per_row": per_row,
        "movement_s_per_element": movement,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        # wall seconds per phase (the fit's own added by _calibrate_once)
        "phase_seconds": phase.summary(),
    }


def write(calibration: Calibration, path: str | Path) -> Path:
    """Write the TOML profile and its JSON sidecar atomically; re-load it to check."""
    from lowbit.hwsim.fileio import atomic_write_bytes
    from lowbit.hwsim.profiles import load_profile

    path = Path(path)
    if path.suffix != ".toml":
        raise LowbitError(f"{path}: the profile file must end in .toml")
    atomic_write_bytes(path, profile_toml(calibration).encode())
    sidecar = path.with_suffix(".json")
    atomic_write_bytes(sidecar, (json.dumps(calibration.measurements, indent=2) + "\n").encode())
    load_profile(path)
    return path


def calibration_version_of(path: str | Path) -> int | None:
    """The :data:`CALIBRATION_VERSION` a profile was calibrated with (its JSON sidecar's;
    0 for a calibration's sidecar from before the key: it has the measurements, ``cpu`` and
    ``chains``), or None when it has none (not written by :func:`write`: a profile a user
    wrote by hand, maybe beside a JSON of their own -- which must not make
    :func:`load_or_calibrate` recalibrate over their TOML)."""
    from lowbit.hwsim.errors import InputFileError
    from lowbit.hwsim.fileio import read_json

    try:  # the one reader: a damaged sidecar (binary, deep, 1e400) is as good as none
        data = read_json(Path(path).with_suffix(".json"), what="calibration sidecar")
    except InputFileError:
        return None
    if not isinstance(data, dict):
        return None
    version = data.get("calibration_version")
    if version is None:
        return (
            0
            if isinstance(data.get("cpu"), dict) and isinstance(data.get("chains"), list)
            else None
        )
    return version if type(version) is int and version > 0 else None


def load_or_calibrate(path: str | Path | None = None, *, quick: bool = False):
    """The host profile at ``path`` (default :func:`default_profile_path`); calibrated and
    written first if the file is missing or was calibrated by an older method (its sidecar's
    ``calibration_version``: an old profile lacks costs the simulator now models)."""
    from lowbit.hwsim.profiles import load_profile

    path = Path(path) if path is not None else default_profile_path()
    version = calibration_version_of(path) if path.is_file() else None
    if not path.is_file():
        log.warning(
            "no host profile at %s: calibrating this CPU (about two minutes on a quiet "
            "machine, longer on a busy one)",
            path,
        )
        write(calibrate(quick=quick), path)
    elif version is not None and version < CALIBRATION_VERSION:
        log.warning(
            "host profile %s is from calibration v%d (now v%d): recalibrating",
            path,
            version,
            CALIBRATION_VERSION,
        )
        write(calibrate(quick=quick), path)
    return load_profile(path)
