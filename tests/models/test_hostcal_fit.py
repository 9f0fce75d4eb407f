"""The host fit recovers known costs: measurements simulated from a profile with known
parameters are fitted back to those parameters (a round trip through hwsim)."""

from __future__ import annotations

import pytest

from lowbit.hwsim.profiles import load_profile_data
from lowbit.models.hostcal._fit import fit, with_params
from lowbit.models.hostcal._fit_sim import chain_layer_s, gemm_kernel_s, sweep_kernel_s

DEPTHS = (1, 5)
TRUE = {
    "gemm": 1300.0,
    "mac": 1 / 8.0,
    # the GEMM library (Gemm layers, generic convs) 1.5x the direct conv kernel's rate
    "lib": 1 / 12.0,
    "conv_px": 14.0,
    # the per-image cost is held by a prior (10 %) around 100 cycles: the data barely
    # determine it (~3 % of a batch-64 conv), so a host's lies near it
    "conv_img": 110.0,
    "generic": 0.4,
    "copy": 6.0,
    "requant": 0.25,
    # a linear layer's or matmul's int32 output requantized in a pass of its own
    "libreq": 1.5,
    # ...and the library's packing of each row of the first operand
    "librow": 30.0,
    # a Gemm's (QGemm's) own bias and column scales per output column and per output, over
    # a bare MatMul's: single Gemms and MatMuls of unequal sides tell them apart
    "fbcol": 12.0,
    "fbout": 0.3,
    # weights beyond L2 stream from L3 at 8 bytes per cycle, not hidden
    "stream": 1 / 8.0,
    # a product of two activations: a fifth of the direct kernel's rate, 1100 cycles a head
    "amac": 5 / 8.0,
    "ainst": 1100.0,
    "m32": 2.0,
    # float linear layers and matmuls (SGEMM) at 1.3x the float conv kernel's rate
    "lib32": 1.3,
    # convs with uint8 weights: the u8·u8 library at 0.75x the direct kernel's rate
    "u8mac": 1 / 6.0,
}
GLUE = 550.0


def _base(cols: int = 16) -> dict:
    data = load_profile_data("cpu-x86-avx2")
    data["compute"].update(rows=1, cols=cols, cores=1)
    for key in ("tunables", "area"):
        data.pop(key, None)
    return data


def _rows(cols: int = 16):
    """Measurements simulated from TRUE on a target of ``cols`` lanes' blocking."""
    chains = [
        {"kind": kind, "size": size, "spatial": spatial, "batch": batch, "precision": prec}
        for kind, size, spatial, batch in (
            ("conv", 8, 8, 1), ("conv", 16, 8, 16), ("conv", 32, 8, 64), ("conv", 16, 4, 64),
            ("conv", 64, 4, 16),  # four 16-lane blocks: a full pass of the float conv kernel
            ("gemm", 16, 1, 1), ("gemm", 128, 1, 64), ("gemm", 256, 1, 64),
            ("gemm", 32, 1, 1088),  # many narrow rows: the per-row cost apart from the rest
            ("conv", 512, 4, 1), ("gemm", 1536, 1, 1),  # 2.4 MB of weights: beyond L2
            ("matmul", 32, 1, 4), ("matmul", 64, 1, 4), ("matmul", 64, 1, 16),  # attention
        )
        for prec in ("int8", "fp32")
    ]  # fmt: skip
    base = _base(cols)
    sweep = [
        {"in_c": cin, "out_c": cout, "k": k, "spatial": s, "batch": b, "groups": g}
        for cin, cout, k, s, g, b in (
            (1, 16, 3, 8, 1, 64), (1, 16, 3, 4, 1, 64), (16, 16, 3, 8, 1, 64),
            (16, 16, 3, 4, 1, 64), (16, 32, 3, 8, 1, 64), (32, 32, 3, 4, 1, 64),
            (6, 8, 3, 8, 1, 64), (16, 12, 3, 4, 1, 64), (4, 16, 1, 8, 1, 64),
            (16, 32, 1, 8, 1, 64), (1, 64, 3, 8, 1, 64), (6, 32, 3, 4, 1, 64),
            (64, 64, 3, 8, 2, 64), (64, 64, 3, 4, 8, 64),
            (16, 16, 3, 8, 1, 8), (32, 32, 3, 8, 1, 8), (64, 64, 3, 8, 1, 8),
        )
    ]  # fmt: skip
    gemms = [
        {"rows": m, "in_features": k, "out_features": n, "form": form}
        for form in ("gemm", "matmul")
        for m, k, n in (
            (1, 256, 1024), (1, 1024, 256), (4, 1024, 64), (16, 64, 1024),
            (64, 64, 1024), (64, 1024, 64), (64, 256, 256), (128, 512, 512),
        )
    ]  # fmt: skip
    truth = with_params(base, TRUE, GLUE)
    int8 = [r for r in chains if r["precision"] == "int8"]
    fp32 = [r for r in chains if r["precision"] == "fp32"]
    for rows, sim in (
        (int8, chain_layer_s(int8, truth, DEPTHS)),
        (fp32, chain_layer_s(fp32, truth, DEPTHS)),
    ):
        for row, s in zip(rows, sim, strict=True):
            row["layer_s"] = float(s)
    for rows, sim in ((sweep, sweep_kernel_s(sweep, truth)), (gemms, gemm_kernel_s(gemms, truth))):
        for row, s in zip(rows, sim, strict=True):
            row["kernel_s"] = float(s)
    return chains, sweep, gemms


@pytest.fixture
def no_prior(monkeypatch):
    """The data alone: every parameter is determined by them (exact recovery); the weak
    prior that steadies noisy measurements (tested below) would pull TRUE, 25-40 % from its
    start, a few % towards it."""
    from lowbit.models.hostcal import _fit

    monkeypatch.setattr(_fit, "_PRIOR", {})


@pytest.fixture
def blockings_tried(monkeypatch) -> list[int]:
    """The N blockings (cols) the fit tries, in order."""
    from lowbit.models.hostcal import _fit

    tried, linear_fit = [], _fit._linear_fit

    def recorded(int8, sweep, gemms, data, **kw):
        tried.append(data["compute"]["cols"])
        return linear_fit(int8, sweep, gemms, data, **kw)

    monkeypatch.setattr(_fit, "_linear_fit", recorded)
    return tried


def test_fit_recovers_the_parameters_it_was_simulated_with(no_prior, blockings_tried):
    chains, sweep, gemms = _rows()
    data = _base()  # the lane count, 16: the fit tries 16, then 32, fitting worse: no more
    fitted, summary = fit(chains, sweep, data, glue_cycles=GLUE, depths=DEPTHS, gemms=gemms)
    o = fitted["overheads"]
    assert summary["cols"] == 16 and blockings_tried == [16, 32]
    assert summary["mean_abs_pct_error_int8"] < 1.0 and summary["mean_abs_pct_error_fp32"] < 1.0
    # integer cycles and ceilings in the simulation: within a few percent
    assert o["gemm_cycles"] == pytest.approx(TRUE["gemm"], rel=0.05)
    assert summary["int8_macs_per_pe_per_cycle"] == pytest.approx(1 / TRUE["mac"], rel=0.05)
    assert o["gemm_library_speedup"] == pytest.approx(TRUE["mac"] / TRUE["lib"], rel=0.05)
    assert summary["stream_bytes_per_cycle"] == pytest.approx(1 / TRUE["stream"], rel=0.05)
    assert o["activation_gemm_speedup"] == pytest.approx(TRUE["mac"] / TRUE["amac"], rel=0.05)
    assert o["activation_gemm_cycles"] == pytest.approx(TRUE["ainst"], rel=0.05)
    l3 = next(m for m in fitted["memory"] if m["name"] == "l3")
    assert not l3["double_buffered"]  # the streamed level: its reads are not hidden
    assert o["conv_cycles_per_pixel"] == pytest.approx(TRUE["conv_px"], rel=0.05)
    assert o["conv_cycles_per_image"] == pytest.approx(TRUE["conv_img"], rel=0.1)
    # the generic conv path runs the GEMM library, which packs each row (a pixel's) at its
    # own cost (GENERIC_IS_LIBRARY); its int32 pass per output: convs with 8 to 64 outputs
    assert o["unaligned_conv_cycles_per_pixel"] == o["library_cycles_per_row"]
    assert o["unaligned_conv_cycles_per_output"] == pytest.approx(TRUE["generic"], rel=0.1)
    # the im2col's copies: 3 per pixel ungrouped, 9 per pixel and group in grouped convs
    assert o["im2col_copy_cycles"] == pytest.approx(TRUE["copy"], rel=0.1)
    assert o["requant_cycles_per_output"] == pytest.approx(TRUE["requant"], rel=0.1)
    assert o["library_requant_cycles_per_output"] == pytest.approx(TRUE["libreq"], rel=0.1)
    assert o["library_cycles_per_row"] == pytest.approx(TRUE["librow"], rel=0.1)
    assert o["fused_bias_cycles_per_column"] == pytest.approx(TRUE["fbcol"], rel=0.1)
    assert o["fused_bias_cycles_per_output"] == pytest.approx(TRUE["fbout"], rel=0.1)
    assert summary["fused_bias_cycles_per_column"] == o["fused_bias_cycles_per_column"]
    assert summary["fp32_macs_per_pe_per_cycle"] == pytest.approx(TRUE["m32"], rel=0.05)
    assert o["float_gemm_library_speedup"] == pytest.approx(TRUE["lib32"], rel=0.05)
    assert o["layer_cycles"] == GLUE
    for row in chains + sweep + gemms:  # every row carries its simulated value
        measured = row.get("layer_s", row.get("kernel_s"))
        assert row["simulated_s"] == pytest.approx(measured, rel=0.02)


def test_the_profilers_own_cost_is_fitted_from_every_sweep_row(no_prior):
    """The single kernels are what ONNX Runtime's profiler reported: the true kernel plus
    the profiler's cost. Started from a wrong estimate of that cost (1 us against 3 us for
    the convs, 1.5 us for the GEMMs), the fit recovers both, the other constants as before,
    and each row's kernel time."""
    chains, sweep, gemms = _rows()
    data = _base()
    # what a profiled kernel costs beyond a chain's layer: 3 us for a conv, 1.5 us for a
    # QGemm or QLinearMatMul (each fitted on its own)
    profiler_s, gemm_profiler_s = 3e-6, 1.5e-6
    for rows, extra in ((sweep, profiler_s), (gemms, gemm_profiler_s)):
        for row in rows:
            row["true_kernel_s"] = row["kernel_s"]
            row["profiled_kernel_s"] = row["kernel_s"] + extra
            row["kernel_s"] = row["profiled_kernel_s"] - 1e-6  # the separate, wrong estimate
    fitted, summary = fit(chains, sweep, data, glue_cycles=GLUE, depths=DEPTHS, gemms=gemms)
    assert summary["profiler_overhead_s"] == pytest.approx(profiler_s, rel=0.05)
    assert summary["gemm_profiler_overhead_s"] == pytest.approx(gemm_profiler_s, rel=0.05)
    o = fitted["overheads"]
    assert o["gemm_cycles"] == pytest.approx(TRUE["gemm"], rel=0.05)
    assert o["conv_cycles_per_pixel"] == pytest.approx(TRUE["conv_px"], rel=0.05)
    assert o["unaligned_conv_cycles_per_pixel"] == pytest.approx(TRUE["librow"], rel=0.05)
    assert o["fused_bias_cycles_per_column"] == pytest.approx(TRUE["fbcol"], rel=0.1)
    for row in sweep + gemms:
        assert row["kernel_s"] == pytest.approx(row["true_kernel_s"], rel=0.03)


def test_a_weak_prior_settles_costs_the_data_cannot_tell_apart():
    """Two costs that always appear summed (per pixel and per output of the same layers)
    are confounded; the prior splits them the same way on two noisy measurements, and
    leaves the predictions where the data put them."""
    import numpy as np

    from lowbit.models.hostcal._fit import _gauss_newton

    x = np.array([1.0, 2.0, 3.0, 5.0, 8.0])

    def simulate(th):
        return x * (th["a"] + th["b"]) + 0.5 * th["c"]

    start = {"a": 1.0, "b": 1.0, "c": 1.0}
    fits = []
    for noise in (1.0, 1.01):
        measured = (x * 4.0 + 0.5 * 2.0) * noise
        theta = _gauss_newton(simulate, measured, 1 / measured, start, prior={"a": 0.03, "b": 0.03})
        fits.append(theta)
        assert np.allclose(simulate(theta), measured, rtol=0.02)
    # the split of a + b follows the prior (equal shares), the same in both runs
    for key in ("a", "b"):
        assert fits[0][key] == pytest.approx(fits[1][key], rel=0.05)
    assert fits[0]["a"] == pytest.approx(fits[0]["b"], rel=0.05)


def test_parameters_no_measurement_determines_are_left_out_of_the_fit():
    """A quick calibration measures no attention product and no layer whose weights
    overflow L2: those costs keep their neutral values (no per-head cost, the library's
    own rate, the largest cache double-buffered at its measured bandwidth), never a value
    the optimizer wandered to."""
    chains, sweep, gemms = _rows()
    small = [r for r in chains if r["kind"] != "matmul" and r["size"] <= 128]
    data = _base()
    # the single GEMMs' square ones only, as Gemms only: the cost per output column is the
    # per-output cost there, and without a MatMul beside them a Gemm's own costs are too (a
    # sidecar from before v25 has no single GEMMs)
    square = [r for r in gemms if r["in_features"] == r["out_features"]]
    square_gemms = [r for r in square if r["form"] == "gemm"]
    fitted, summary = fit(small, sweep, data, glue_cycles=GLUE, depths=DEPTHS, gemms=square_gemms)
    o = fitted["overheads"]
    assert o["fused_bias_cycles_per_column"] == o["fused_bias_cycles_per_output"] == 0.0
    assert o["activation_gemm_cycles"] == 0 and o["activation_gemm_speedup"] == 1.0
    assert summary["stream_bytes_per_cycle"] == 0.0
    before = {m["name"]: m for m in data["memory"]}
    for m in fitted["memory"]:
        assert m["double_buffered"] == before[m["name"]].get("double_buffered", False)
        assert m["bandwidth_bytes_per_cycle"] == before[m["name"]]["bandwidth_bytes_per_cycle"]


def test_fp32_convs_off_the_simd_block_are_reported_not_fitted():
    """ONNX Runtime runs a float conv whose channels are not whole SIMD blocks with another
    kernel and a reorder per layer (2-3x the blocked rate): such a chain, here three times
    its blocked time, leaves the FP32 rate where the blocked chains put it, and shows in the
    FP32 error it is reported with."""
    chains, sweep, gemms = _rows()
    data = _base()
    odd = {"kind": "conv", "size": 12, "spatial": 8, "batch": 16, "precision": "fp32"}
    truth = with_params(_base(), TRUE, GLUE)
    odd["layer_s"] = 3 * float(chain_layer_s([odd], truth, DEPTHS)[0])
    fitted, summary = fit([*chains, odd], sweep, data, glue_cycles=GLUE, depths=DEPTHS, gemms=gemms)
    assert summary["fp32_macs_per_pe_per_cycle"] == pytest.approx(TRUE["m32"], rel=0.05)
    assert odd["simulated_s"] == pytest.approx(odd["layer_s"] / 3, rel=0.05)
    # its 2/3 error, averaged over the FP32 chains, is in the reported FP32 error
    fp32_chains = 1 + sum(r["precision"] == "fp32" for r in chains)
    assert summary["mean_abs_pct_error_fp32"] >= 0.9 * 100 * (2 / 3) / fp32_chains


def test_huber_loss_keeps_one_disturbed_row_from_pulling_the_fit():
    """Ten rows of a two-cost line, one measured 25 % slow: under squared error the cost per
    unit moves ~4 %; under Huber's loss at 5 % the row pulls no harder than one 5 % off,
    and the costs move less than a third of that (~1 %), the other rows within 1 %."""
    import numpy as np

    from lowbit.models.hostcal._fit import ROBUST_ERROR, _gauss_newton

    x = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0])

    def simulate(th):
        return th["fixed"] + x * th["per_unit"]

    truth = {"fixed": 10.0, "per_unit": 2.0}
    measured = simulate(truth)
    measured[6] *= 1.25
    start = {"fixed": 5.0, "per_unit": 1.0}
    squared = _gauss_newton(simulate, measured, 1 / measured, start)
    huber = _gauss_newton(simulate, measured, 1 / measured, start, robust=ROBUST_ERROR)
    assert squared["per_unit"] / truth["per_unit"] - 1 > 0.03
    for key, value in truth.items():
        assert abs(huber[key] / value - 1) < abs(squared[key] / value - 1) / 3
    rel = simulate(huber) / measured - 1
    assert np.abs(np.delete(rel, 6)).max() < 0.01
    assert rel[6] < -0.18  # the disturbed row is left off, nearly all of its 25 %


def test_gauss_newton_simulates_fresh_features_only_in_its_first_steps():
    """The fit's time is its simulations: each parameter's feature is simulated afresh in
    the first FRESH_JACOBIANS steps only, one simulation per later step -- and a cost that
    is not linear in its parameters (a rate squared here) is still recovered within 0.1 %."""
    import numpy as np

    from lowbit.models.hostcal._gauss_newton import FRESH_JACOBIANS, ITERATIONS, _gauss_newton

    x = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0])
    calls = []

    def simulate(th):
        calls.append(th)
        return th["fixed"] + x * th["per_unit"] + 0.2 * x * th["per_unit"] ** 2

    truth = {"fixed": 10.0, "per_unit": 2.0}
    measured = simulate(truth)
    calls.clear()
    theta = _gauss_newton(simulate, measured, 1 / measured, {"fixed": 5.0, "per_unit": 1.0})
    for key, value in truth.items():
        assert theta[key] == pytest.approx(value, rel=1e-3)
    # one base simulation per step and one last check, the features' only while fresh
    assert len(calls) == ITERATIONS + 1 + FRESH_JACOBIANS * len(truth)
    assert FRESH_JACOBIANS < ITERATIONS


def test_the_uint8_weight_path_is_fitted_last_and_moves_nothing_else(no_prior):
    """Convs with uint8 weights (where the export stores 8-bit weights so) run the generic
    path on the u8·u8 library: its rate is fitted alone, after the rest, which comes out
    exactly as without them."""
    chains, sweep, gemms = _rows()
    u8 = [
        {"in_c": c, "out_c": n, "k": k, "spatial": s, "batch": 64, "groups": 1, "weights": "u8"}
        for c, n, k, s in ((16, 16, 3, 8), (32, 32, 3, 8), (64, 128, 3, 4), (16, 32, 1, 8))
    ]
    for row, sim in zip(u8, sweep_kernel_s(u8, with_params(_base(), TRUE, GLUE)), strict=True):
        row["kernel_s"] = float(sim)
    kwargs = dict(glue_cycles=GLUE, depths=DEPTHS, gemms=gemms)
    without, _ = fit(chains, sweep, _base(), **kwargs)
    fitted, summary = fit(chains, sweep, _base(), u8_sweep=u8, **kwargs)
    o = fitted["overheads"]
    assert without["overheads"]["u8_gemm_library_speedup"] == 0.0  # not fitted: the s8 rate
    assert o["u8_gemm_library_speedup"] == pytest.approx(TRUE["mac"] / TRUE["u8mac"], rel=0.05)
    assert summary["mean_abs_pct_error_u8"] < 2.0
    assert {k: v for k, v in o.items() if k != "u8_gemm_library_speedup"} == {
        k: v for k, v in without["overheads"].items() if k != "u8_gemm_library_speedup"
    }
    for row in u8:
        assert row["simulated_s"] == pytest.approx(row["kernel_s"], rel=0.03)


def test_fit_finds_a_wider_blocking_and_tries_no_wider_than_past_it(no_prior, blockings_tried):
    """Measurements simulated with two registers' N blocking (32 lanes of 16): 32 fits
    better than 16, 64 no better than 32, so the fit stops there and takes 32."""
    chains, sweep, gemms = _rows(cols=32)
    fitted, summary = fit(chains, sweep, _base(), glue_cycles=GLUE, depths=DEPTHS, gemms=gemms)
    assert blockings_tried == [16, 32, 64] and summary["cols"] == 32
    assert summary["int8_macs_per_pe_per_cycle"] == pytest.approx(1 / TRUE["mac"], rel=0.05)


def test_fp32_convs_of_narrow_passes_are_reported_not_fitted():
    """ONNX Runtime's blocked float conv computes up to FP32_FULL_PASS_BLOCKS blocks of
    output channels per pass; a conv of fewer (here 8-32 channels on 16 lanes) runs narrower
    passes at a lower rate: such chains, here 1.4x their full-pass time, leave the FP32 rate
    where the wide chains put it (without the rule they pulled it 10-20 % slow and every
    wide float conv with it) and are reported at their error."""
    chains, sweep, gemms = _rows()
    lanes = _base()["compute"]["cols"]
    narrow = [  # fewer than four blocks of output channels (ONNX Runtime's full pass)
        r
        for r in chains
        if r["precision"] == "fp32" and r["kind"] == "conv" and r["size"] < 4 * lanes
    ]
    assert len(narrow) == 4 and any(
        r["precision"] == "fp32" and r["kind"] == "conv" and r not in narrow for r in chains
    )
    for row in narrow:
        row["layer_s"] *= 1.4
    _, summary = fit(chains, sweep, _base(), glue_cycles=GLUE, depths=DEPTHS, gemms=gemms)
    assert summary["fp32_macs_per_pe_per_cycle"] == pytest.approx(TRUE["m32"], rel=0.05)
    for row in narrow:
        assert row["simulated_s"] == pytest.approx(row["layer_s"] / 1.4, rel=0.05)
