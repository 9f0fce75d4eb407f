"""``lowbit calibrate-host``: measure this CPU and write the host hardware profile."""

from __future__ import annotations

import argparse
import json
import sys

from lowbit.hwsim._profile_walk import is_number

HELP = "microbenchmark this CPU (ONNX Runtime, 1 thread) and write a host hardware profile"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        metavar="FILE.toml",
        help="profile to write (default: $LOWBIT_CACHE/host/host-cpu.toml); a .json sidecar "
        "with the raw measurements is written next to it",
    )
    parser.add_argument(
        "--quick", action="store_true", help="few shapes and repeats (seconds; coarser numbers)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="then quantize, time and simulate held-out networks and layers the fit never saw "
        "(about 40 s) and print the error table: how far to trust the profile here",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="run the held-out check on the existing profile (--out or the default) without "
        "calibrating",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lowbit.hwsim.errors import LowbitError
    from lowbit.hwsim.fileio import check_output_file
    from lowbit.models.hostcal.calibration import calibrate, default_profile_path, write

    if args.out == "":  # not the default location: a script's unset variable, most likely
        raise LowbitError("--out: empty path (name a .toml file, or leave --out out)")
    path = Path(args.out) if args.out is not None else default_profile_path()
    if path.suffix != ".toml":  # checked before the minutes of measuring
        raise LowbitError(f"{path}: the profile file must end in .toml")
    if args.check_only:
        return _check(path, args)
    check_output_file(path, flag="--out")
    check_output_file(path.with_suffix(".json"), flag="--out")  # the calibration sidecar

    # measured on an AMD Zen 3 under KVM: 104-129 s quiet, 140-147 s with the fit in a busy
    # hour (quiet.retry_budget bounds the re-timing), --quick 25 s
    takes = "about half a minute" if args.quick else "about two minutes on a quiet core"

    def progress(phase: str, seconds: float) -> None:
        sys.stderr.write(f"\rcalibrating this CPU ({takes}): {phase:18} {seconds:4.0f} s")
        sys.stderr.flush()

    try:
        calibration = calibrate(quick=args.quick, progress=progress)
    finally:
        sys.stderr.write("\n")
    path = write(calibration, path)
    m = calibration.measurements
    if args.format == "json" and not args.check:
        json.dump({"profile": str(path), **m}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    fit, cpu, o = m["fit"], m["cpu"], calibration.data["overheads"]
    bw = ", ".join(f"{k} {v / 1e9:.0f} GB/s" for k, v in m["bandwidth_bytes_per_s"].items())
    caches = _caches_note(cpu["caches_bytes"], fit)
    lines = [
        f"CPU: {cpu.get('label', cpu['model'])}, {cpu['clock_hz'] / 1e9:.2f} GHz"
        f"{_clock_note(cpu)}, {cpu['simd_lanes_32bit']} lanes of 32 bits",
        f"flags: {' '.join(cpu['flags'])}",
        *_sharing_note(cpu),
        f"caches: {caches}; copy bandwidth: {bw}",
        f"fitted on {len(m['chains'])} layer chains + {len(m['conv_sweep'])} single convs + "
        f"{len(m.get('gemm_sweep', []))} single GEMMs: "
        f"{fit['layer_cycles']} cycles per INT8 layer, "
        f"INT8 {fit['int8_macs_per_pe_per_cycle']:.3g} / FP32 "
        f"{fit['fp32_macs_per_pe_per_cycle']:.3g} MACs/lane/cycle, cols {fit['cols']}; "
        f"{fit['conv_cycles_per_pixel']:.3g} (+{fit['unaligned_conv_cycles_per_pixel']:.3g} "
        f"unaligned) cycles per conv pixel; mean |error| INT8 "
        f"{fit['mean_abs_pct_error_int8']:.1f}%, FP32 {fit['mean_abs_pct_error_fp32']:.1f}%",
        f"fixed costs: run_cycles {o['run_cycles']} per inference "
        f"({o['run_cycles'] / calibration.data['clock_hz'] * 1e6:.2f} us per Run call), "
        f"layer_cycles {o['layer_cycles']} "
        f"per operator, gemm_cycles {o['gemm_cycles']} per INT8 GEMM, "
        f"{o['unaligned_conv_cycles_per_pixel']:.3g} cycles/pixel and "
        f"{o['unaligned_conv_cycles_per_output']:.3g} cycles/output for unaligned or grouped "
        "INT8 convs",
        *_phase_note(m.get("phase_seconds")),
        f"wrote {path} (+ {path.with_suffix('.json').name})",
    ]
    if args.format == "table":
        sys.stdout.write("\n".join(lines) + "\n")
    return _check(path, args) if args.check else 0


def _check(path, args: argparse.Namespace) -> int:
    """The held-out check of the profile at ``path``: a table (or JSON) on stdout, the rows
    in ``<profile>.check.json`` beside it."""
    from lowbit.hwsim.fileio import atomic_write_bytes
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.hostcal.check import check, summarize, table
    from lowbit.models.hostcal.isa import cpu_info

    profile = load_profile(path)  # a missing or broken profile: one line naming the file

    def progress(i: int, n: int, name: str) -> None:
        sys.stderr.write(f"\rchecking {i + 1}/{n}: {name:40}")
        sys.stderr.flush()

    rows = check(profile, quick=args.quick, progress=progress)
    sys.stderr.write("\n")
    label = cpu_info()["label"]
    result = {
        "profile": str(path),
        "cpu": label,
        "rows": [r.as_dict() for r in rows],
        "summary": summarize(rows),
    }
    report = path.with_suffix(".check.json")
    atomic_write_bytes(report, (json.dumps(result, indent=2) + "\n").encode())
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(
            table(rows, cpu_label=label, clock_hz=profile.clock_hz) + f"\nwrote {report}\n"
        )
    return 0


def _phase_note(phases: object) -> list[str]:
    """``measured in 131 s, fitted in 10 s: layer chains 38 s, conv sweep 30 s, ...`` (the
    sidecar's ``phase_seconds``, longest first; a sidecar before the fit's own seconds
    leaves them out), or nothing without them."""
    if not isinstance(phases, dict) or not isinstance(phases.get("total"), (int, float)):
        return []
    parts = sorted(
        (
            (float(v), str(k))
            for k, v in phases.items()
            if k not in ("total", "fit") and is_number(v)
        ),
        reverse=True,
    )
    spent = ", ".join(f"{name} {s:.0f} s" for s, name in parts)
    fit = phases.get("fit")
    fitted = f", fitted in {float(fit):.0f} s" if is_number(fit) else ""
    return [f"measured in {float(phases['total']):.0f} s{fitted}: {spent}"]


def _sharing_note(cpu: dict) -> list[str]:
    """A line on the core's sharing while the timings ran (the clock track's vector probe,
    :class:`~lowbit.models.hostcal.clock.ClockTrack`), or none without the probe."""
    track = cpu.get("clock_track")
    if not isinstance(track, dict):
        return []
    numbers = [
        track.get(k)
        for k in ("vector_adds_per_cycle_quiet", "vector_adds_per_cycle_median", "contended")
    ]
    if not all(is_number(v) for v in numbers):
        return []  # no probe here (or a hand-edited sidecar): nothing to say
    quiet, median, contended = numbers
    verdict = (
        "every measurement timed again caught the core quiet"
        if not contended
        else f"{int(contended)} measurement(s) never caught the core quiet (their least timing "
        "kept: the profile runs slow where they weigh -- calibrate again when the machine is "
        "quiet)"
    )
    retries = track.get("retries")
    cut, spent = (retries.get(k) if isinstance(retries, dict) else None for k in ("cut", "spent_s"))
    if is_number(cut) and is_number(spent) and cut > 0:
        verdict += (
            f"; timing again stopped at its budget ({spent:.1f} s) with {int(cut)} "
            "measurement(s) still contended"
        )
    return [
        f"core sharing: vector probe {quiet:.2f} adds/cycle quiet, {median:.2f} median; {verdict}"
    ]


def _caches_note(caches: dict[str, int], fit: dict) -> str:
    """The caches the CPU reports, and the share of its L3 this core's weights keep where
    the calibration measured it (:mod:`lowbit.models.hostcal.cache_share`)."""
    text = ", ".join(f"{k} {v // 1024} KiB" for k, v in caches.items())
    share = fit.get("l3_weight_share_bytes")
    return text + (f" (this core's weights keep {share / 2**20:.1f} MB of it)" if share else "")


def _clock_note(cpu: dict) -> str:
    """`` (measured; the OS says 2.10)`` where the running clock was measured and differs
    from the OS's nominal figure -- with the range of its readings when there were several
    (`` (median of 7 readings, 2.88-3.35; the OS says 2.10)``; a calibration's clock track:
    `` (median of 820 readings beside the timings, 2.88-3.35; ...)``) -- else nothing."""
    nominal = cpu.get("nominal_clock_hz")
    if not nominal or abs(nominal - cpu["clock_hz"]) < 0.01e9:
        return ""
    readings = cpu.get("clock_readings_hz") or []
    os_says = f"the OS says {nominal / 1e9:.2f}"
    track = cpu.get("clock_track")
    if isinstance(track, dict) and track.get("readings", 0) > 1:
        count, low, high, where = (
            track["readings"],
            track["low_hz"],
            track["high_hz"],
            " beside the timings",
        )
    elif len(readings) > 1:
        count, low, high, where = len(readings), min(readings), max(readings), ""
    else:
        return f" (measured; {os_says})"
    return f" (median of {count} readings{where}, {low / 1e9:.2f}-{high / 1e9:.2f}; {os_says})"
