"""The calibration's quality gates: a runaway or garbage fit is refused, never written."""

from __future__ import annotations

import copy

import pytest

from lowbit.models.hostcal import calibration as hostcal
from lowbit.models.hostcal.isa import PEAK_MACS_PER_CYCLE, detect_isa
from lowbit.models.hostcal.profile_fit import from_measurements
from lowbit.models.hostcal.quality import (
    CalibrationError,
    MeasurementError,
    fit_problems,
    measurement_problems,
)


@pytest.fixture(scope="module")
def good() -> hostcal.Calibration:
    return hostcal.calibrate(quick=True)


def test_a_real_quick_calibration_passes_its_gates(good):
    m = good.measurements
    assert fit_problems(good.data, m["fit"], isa=m["cpu"]["isa"]) == []
    assert m["attempts"] >= 1
    rates = {
        mode["w_bits"]: mode["macs_per_pe_per_cycle"] * good.data["compute"]["cols"]
        for mode in good.data["compute"]["precision"]
    }
    peak_int8, peak_fp32 = PEAK_MACS_PER_CYCLE[m["cpu"]["isa"]]
    assert 0 < rates[8] <= peak_int8 and 0 < rates[32] <= peak_fp32


def test_garbage_fits_are_named(good):
    data = copy.deepcopy(good.data)
    for mode in data["compute"]["precision"]:
        if mode["w_bits"] == 8:
            mode["macs_per_pe_per_cycle"] = 4100.0  # the runaway seen once on an AMX host
    data["overheads"]["conv_cycles_per_pixel"] = float("nan")
    fitted = {**good.measurements["fit"], "mean_abs_pct_error_int8": 764.7}
    problems = fit_problems(data, fitted, isa="avx512-vnni")
    assert any(p.startswith("INT8 rate") and "physical peak" in p for p in problems)
    assert any("int8 fit: mean |error| 764.7%" in p for p in problems)
    assert any(p.startswith("overheads.conv_cycles_per_pixel = nan") for p in problems)


def test_every_isa_has_peaks_that_order_sensibly():
    assert set(PEAK_MACS_PER_CYCLE) >= {"generic"} | {
        detect_isa(flags).name
        for flags in (
            {"avx2"},
            {"avx512_vnni", "avx512bw"},
            {"amx_int8", "amx_tile", "avx512f"},
            {"asimddp"},
            {"i8mm", "asimddp"},
            {"asimd"},
            {"sse4_1"},
        )
    }
    assert PEAK_MACS_PER_CYCLE["amx-int8"][0] > PEAK_MACS_PER_CYCLE["avx512-vnni"][0]
    assert PEAK_MACS_PER_CYCLE["avx512-vnni"][0] > PEAK_MACS_PER_CYCLE["avx-vnni"][0]


def test_a_calibration_that_keeps_failing_is_refused_and_writes_nothing(
    good, monkeypatch, tmp_path, capsys
):
    from lowbit.cli import main

    bad = copy.deepcopy(good)
    bad.measurements["fit"]["mean_abs_pct_error_int8"] = 900.0
    calls = []
    monkeypatch.setattr(hostcal, "_calibrate_once", lambda quick: calls.append(quick) or bad)
    with pytest.raises(CalibrationError, match="refused after 2 attempts.*900.0%"):
        hostcal.calibrate(quick=True)
    assert len(calls) == 2
    out = tmp_path / "host.toml"
    assert main(["calibrate-host", "--quick", "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("lowbit: error: ") and "refused after 2 attempts" in message
    assert "no profile written" in message
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_a_fit_outside_what_a_profile_may_hold_is_retried_then_refused(good, monkeypatch):
    """A fitted constant the profile schema rejects (a GEMM library 27x slower than the
    direct conv kernel: speedup 0.037, below the 0.05 a profile may hold) is a failed
    attempt like a bad fit, retried, then refused with one clear error -- not a traceback
    from the profile's validation."""
    from lowbit.hwsim.errors import ProfileError

    results = [ProfileError("host calibration", ["overheads.gemm_library_speedup: 0.037"])]
    results.append(copy.deepcopy(good))

    def once(quick):
        found = results.pop(0)
        if isinstance(found, Exception):
            raise found
        return found

    monkeypatch.setattr(hostcal, "_calibrate_once", once)
    assert hostcal.calibrate(quick=True).measurements["attempts"] == 2
    results[:] = [ProfileError("host calibration", ["overheads.gemm_library_speedup: 0.037"])] * 2
    with pytest.raises(CalibrationError, match="refused after 2 attempts.*invalid.*speedup"):
        hostcal.calibrate(quick=True)


def test_the_real_measurements_are_plausible_timings(good):
    assert measurement_problems(good.measurements) == []


def test_implausible_timings_are_refused_every_one_named(good):
    """A sidecar whose timings no CPU could produce -- a GEMM of 1e308 s, a negative chain
    layer, a NaN cost per element, a zero bandwidth -- is refused before any fit, each bad
    value named by its key path (the fit weighs rows by their relative error: one absurd
    row alone would have been fitted silently)."""
    m = copy.deepcopy(good.measurements)
    m["gemm_sweep"] = [{"kernel_s": 1e308, "profiled_kernel_s": 2e-5}] + m.get("gemm_sweep", [])
    m["chains"][0]["layer_s"] = -3e-6
    m["movement_s_per_element"]["Transpose"] = float("nan")
    m["bandwidth_bytes_per_s"]["L2"] = 0.0
    m["run_overhead_s"] = "fast"
    problems = measurement_problems(m)
    assert len(problems) == 5
    for path in (
        "gemm_sweep[0].kernel_s: 1e+308 s is longer than 1e+00 s",
        "chains[0].layer_s: -3e-06 s is not a positive finite time",
        "movement_s_per_element.Transpose: nan s",
        "bandwidth_bytes_per_s.L2: 0.0 is not a positive rate",
        "run_overhead_s: 'fast' is not a number of seconds",
    ):
        assert any(p.startswith(path) for p in problems), (path, problems)
    with pytest.raises(MeasurementError, match=r"5 implausible timing\(s\).*gemm_sweep\[0\]"):
        from_measurements(m)


def test_a_zero_kernel_time_is_refused_but_a_zero_slope_is_not(good):
    """A kernel that ran took time (zero is a broken timer); a cost per element is a slope
    between two sizes and may be nil (a Split that only moves pointers)."""
    m = copy.deepcopy(good.measurements)
    m["conv_sweep"][0]["kernel_s"] = 0.0
    m["movement_s_per_element"]["Split"] = 0.0
    assert [p.split(":")[0] for p in measurement_problems(m)] == ["conv_sweep[0].kernel_s"]
    # nor can a kernel take 1e-308 s (it drove the fit out of what a profile may hold),
    # while a cost per element that small is only a cheap operator
    m["conv_sweep"][0]["kernel_s"] = 1e-308
    m["movement_s_per_element"]["Split"] = 1e-308
    assert [p.split(": ", 1) for p in measurement_problems(m)] == [
        ["conv_sweep[0].kernel_s", "1e-308 s is shorter than 1e-08 s"]
    ]


def test_the_uint8_weight_convs_timings_are_gated_as_the_others(good):
    # (timed only where u8·s8 kernels saturate): a sidecar's row of 1e-308 s had reached
    # the fit as an SVD that did not converge, one of 1e308 s had been fitted silently
    m = copy.deepcopy(good.measurements)
    row = {"in_c": 16, "out_c": 16, "k": 3, "spatial": 8, "batch": 64, "weights": "u8"}
    m["u8_conv_sweep"] = [
        {**row, "kernel_s": 1e-308, "profiled_kernel_s": 2e-4},
        {**row, "kernel_s": 2e-4, "profiled_kernel_s": 1e308},
    ]
    assert [p.split(": ", 1) for p in measurement_problems(m)] == [
        ["u8_conv_sweep[0].kernel_s", "1e-308 s is shorter than 1e-08 s"],
        ["u8_conv_sweep[1].profiled_kernel_s", "1e+308 s is longer than 1e+00 s"],
    ]
    with pytest.raises(MeasurementError, match=r"u8_conv_sweep\[0\]"):
        from_measurements(m)


def test_a_live_calibration_with_a_broken_timing_is_retried_then_refused(good, monkeypatch):
    """Live measurements go through the same gate: a broken timing fails the attempt like a
    bad fit, then the calibration is refused with one clear error."""
    broken = copy.deepcopy(good.measurements)
    broken["depthwise"][0]["layer_s"] = float("inf")
    monkeypatch.setattr(hostcal, "_measure", lambda *, quick: copy.deepcopy(broken))
    with pytest.raises(CalibrationError, match=r"refused after 2 attempts.*depthwise\[0\]"):
        hostcal.calibrate(quick=True)


def test_a_chain_that_never_timed_positive_is_measured_again(good, monkeypatch):
    """A microbenchmark whose per-layer time stayed non-positive through its retries (a
    busy machine: once a quick calibration's 16-feature FP32 chain in `make test`) fails
    the attempt, which is measured again -- not a crash of the whole calibration; twice:
    refused with one clear error."""
    from lowbit.models.hostcal import bench

    def busy(*, quick):
        raise bench.MeasurementError("fp32 gemm chain 16x1 b1: did not come out positive")

    results = [busy, lambda *, quick: copy.deepcopy(good.measurements)]
    monkeypatch.setattr(hostcal, "_measure", lambda *, quick: results.pop(0)(quick=quick))
    assert hostcal.calibrate(quick=True).measurements["attempts"] == 2
    monkeypatch.setattr(hostcal, "_measure", busy)
    with pytest.raises(CalibrationError, match="refused after 2 attempts.*16x1 b1"):
        hostcal.calibrate(quick=True)
