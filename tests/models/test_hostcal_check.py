"""The held-out host check: its networks are the published architectures, it never shares a
shape with the calibration, and it measures and simulates end to end."""

from __future__ import annotations

import inspect

import onnx
import pytest

from lowbit.hwsim.onnx_workload import import_onnx
from lowbit.models.hostcal import _fit, bench, calibration, conv, gemm, heldout
from lowbit.models.hostcal.check import TIE, CheckRow, check, summarize, table
from lowbit.models.hostcal.graphs import quantize_int8


@pytest.mark.parametrize(
    ("build", "published_mmac"),
    [
        # torchvision's model cards (GFLOPS there are multiply-accumulates) and the papers
        (heldout.resnet18, 1814.1),  # ResNet-18: 1.81 G
        (heldout.mobilenet_v2, 300.8),  # MobileNetV2 1.0: 300 M (Sandler et al., Table 4)
        (heldout.shufflenet_v2, 144.9),  # ShuffleNetV2 1.0x: 146 M (Ma et al.), tv 0.14 G
    ],
)
def test_networks_have_the_published_size_at_224(build, published_mmac, tmp_path):
    model = build(224)
    onnx.checker.check_model(model)
    onnx.save(model, tmp_path / "m.onnx")
    macs = import_onnx(tmp_path / "m.onnx").workload.macs
    assert macs / 1e6 == pytest.approx(published_mmac, rel=0.01)


def test_every_heldout_case_builds_and_imports(tmp_path):
    for case in heldout.cases():
        model = case.build()
        onnx.checker.check_model(model)
        path = tmp_path / "case.onnx"
        onnx.save(model, path)
        assert import_onnx(path).workload.macs > 0, case.name


def test_the_check_shares_no_shape_with_the_fit():
    sweep = conv.CONV_SWEEP + conv.GROUPED_SWEEP + conv.QUICK_CONV_SWEEP
    # (in, out, kernel, spatial, groups): the grouped rows carry their groups last
    fitted_convs = {(cin, cout, k, s, (*g, 1)[0]) for cin, cout, k, s, _, *g in sweep}
    fitted_convs |= {
        (n, n, 3, s, 1)
        for kind, n, s, _ in bench.FULL_SHAPES + bench.QUICK_SHAPES
        if kind == "conv"
    }
    fitted_gemms = {
        (b, n, n) for kind, n, _, b in bench.FULL_SHAPES + bench.QUICK_SHAPES if kind == "gemm"
    } | set(gemm.GEMM_SWEEP)
    for case in heldout.HELDOUT_LAYERS:
        graph = case.build().graph
        (node,) = [n for n in graph.node if n.op_type in ("Conv", "MatMul")]
        dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        weight = next(i for i in graph.initializer if i.name == node.input[1])
        if node.op_type == "Conv":
            cout, _, k, _ = weight.dims
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            assert (dims[1], cout, k, dims[2], groups) not in fitted_convs, case.name
            assert (dims[1], cout, k, dims[2], 1) not in fitted_convs, case.name
        else:
            assert (dims[1], weight.dims[0], weight.dims[1]) not in fitted_gemms, case.name
    # and the fitting code never sees the held-out module
    for module in (bench, conv, gemm, _fit, calibration):
        assert "heldout" not in inspect.getsource(module)


def test_quantize_int8_writes_an_ort_qdq_model(tmp_path):
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(heldout.vgg(16), fp32)
    int8 = onnx.load(quantize_int8(fp32, tmp_path / "int8.onnx"))
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert import_onnx(tmp_path / "int8.onnx").quantized


def _row(name: str, int8: tuple[float, float], fp32: tuple[float, float], kind="layer"):
    return CheckRow(
        name=name,
        kind=kind,
        macs=1,
        int8_measured_s=int8[0],
        int8_simulated_s=int8[1],
        fp32_measured_s=fp32[0],
        fp32_simulated_s=fp32[1],
    )


def test_summary_counts_hits_and_speedup_directions():
    rows = [
        _row("a", (1.0, 1.1), (2.0, 2.0)),  # within 15 %, INT8 faster in both
        _row("b", (2.0, 1.0), (1.5, 1.6)),  # 50 % off; measured INT8 slower, simulated faster
        _row("c", (3.0, 3.3), (4.0, 4.1), kind="network"),
    ]
    assert [r.direction_right for r in rows] == [True, False, True]
    s = summarize(rows)
    assert s["layer"]["count"] == 2 and s["all"]["count"] == 3
    assert s["all"]["within_int8"] == pytest.approx(2 / 3)
    assert s["layer"]["direction_right"] == pytest.approx(0.5)
    assert s["all"]["mape_int8_pct"] == pytest.approx((10 + 50 + 10) / 3)
    assert s["all"]["spearman_int8"] == pytest.approx(0.5)  # ranks (0,2,1) vs (0,1,2)
    text = table(rows, cpu_label="test CPU")
    assert "test CPU" in text and "WRONG" in text


def test_times_at_the_profiles_clock_are_reported_beside_the_times_as_timed():
    """The check compares times converted to the profile's clock; the table names that clock
    and the range the core ran at (from each time's conversion), and summarizes the times as
    timed too."""
    from dataclasses import replace

    rows = [
        # at 3 GHz 1.0 ms; timed 1.1 ms with the core at 2.73 GHz: 10 % off as timed
        replace(_row("a", (1.0, 1.0), (2.0, 2.0)), int8_timed_s=1.1, fp32_timed_s=2.0),
        replace(_row("b", (1.0, 1.05), (2.0, 2.0)), int8_timed_s=0.8, fp32_timed_s=1.6),
    ]
    s = summarize(rows)["all"]
    assert s["within_int8"] == 1.0 and s["mape_int8_pct"] == pytest.approx(2.5)
    assert s["mape_int8_as_timed_pct"] == pytest.approx((100 * abs(1 / 1.1 - 1) + 31.25) / 2)
    assert s["within_int8_as_timed"] == 0.5
    text = table(rows, cpu_label="test CPU", clock_hz=3e9)
    assert "times at the profile's clock, 3.00 GHz (the core ran at 2.73-3.75 GHz" in text
    assert "as timed: layer INT8 50% within ±15%" in text
    assert "profile's clock" not in table(rows, cpu_label="test CPU")  # no clock given
    untimed = [_row("c", (1.0, 1.0), (2.0, 2.0))]  # not converted: as timed = as measured
    assert untimed[0].int8_timed_ratio == 1.0
    assert "as timed" not in table(untimed, cpu_label="test CPU", clock_hz=3e9)


def test_a_measured_tie_has_no_direction_only_a_size():
    """INT8 and FP32 measured within TIE of each other: a simulation that calls them close
    (either way) is right, one that predicts a large speed-up or slow-down is not."""
    close = 1 + TIE / 2
    rows = [
        _row("slower by a hair", (1.0, 1.05), (close, 1.0)),  # simulated INT8 5 % slower
        _row("faster by a hair", (close, 1.0), (1.0, 1.05)),
        _row("tie, predicted 1.5x", (1.0, 1.0), (close, 1.5)),
        _row("tie, predicted 0.7x", (1.0, 1.0), (close, 0.7)),
    ]
    assert [r.tie for r in rows] == [True] * 4
    assert [r.direction_right for r in rows] == [True, True, False, False]
    lines = table(rows, cpu_label="test CPU").splitlines()
    verdicts = [line.split()[-1] for line in lines if line.startswith(("slower", "faster", "tie,"))]
    assert verdicts == ["tie", "tie", "WRONG", "WRONG"]


@pytest.mark.slow
def test_quick_check_runs_end_to_end(tmp_path):
    from lowbit.hwsim.profiles import load_profile

    profile = load_profile("cpu-x86-avx2")
    seen = []
    rows = check(profile, quick=True, progress=lambda i, n, name: seen.append((i, n, name)))
    assert len(rows) == len(seen) == len(heldout.cases(quick=True))
    for row in rows:
        assert row.int8_measured_s > 0 and row.fp32_measured_s > 0
        assert row.int8_simulated_s > 0 and row.fp32_simulated_s > 0
        assert row.as_dict()["int8_ratio"] == pytest.approx(
            row.int8_simulated_s / row.int8_measured_s
        )


def test_every_model_is_timed_once_per_pass_over_all_and_the_least_kept(monkeypatch):
    """A slow spell of the machine lasts longer than one model's rounds: each pass times
    every model once (one round each), and a model keeps its least time."""
    from lowbit.models.hostcal import check as hostcheck

    calls = []
    slow = {("a", 0): 9.0, ("b", 1): 7.0}

    def fake(path, *, repeats, rounds, seconds):
        assert rounds == 1 and seconds == pytest.approx(0.5 / 3)
        done = calls.count(path)
        calls.append(path)
        seconds = slow.get((path, done), {"a": 2.0, "b": 3.0}[path])
        return hostcheck.Measured(seconds, 1.1 * seconds)

    monkeypatch.setattr(hostcheck, "measure_s", fake)
    kept = hostcheck.measure_all(["a", "b"], repeats=5, passes=3)
    assert [m.at_clock_s for m in kept] == [2.0, 3.0]
    assert [m.timed_s for m in kept] == pytest.approx([2.2, 3.3])
    assert calls == ["a", "b"] * 3


def test_the_least_time_is_chosen_as_timed_not_after_the_clock_conversion(monkeypatch):
    """Three steady timings of one model, one converted by a clock reading that erred low:
    the least as timed is kept (with its own conversion), not the one the error made least."""
    from lowbit.models.hostcal import check as hostcheck

    passes = iter([(0.501, 0.96), (0.499, 1.01), (0.506, 1.04)])  # (as timed, clock factor)

    def fake(path, **_):
        timed, factor = next(passes)
        return hostcheck.Measured(timed * factor, timed)

    monkeypatch.setattr(hostcheck, "measure_s", fake)
    (kept,) = hostcheck.measure_all(["m"], repeats=5, passes=3)
    assert kept.timed_s == 0.499 and kept.at_clock_s == pytest.approx(0.499 * 1.01)


def test_one_case_is_checked_like_the_whole_set(monkeypatch):
    """``check_case`` is ``check`` of one case: the row of that case, timed and simulated."""
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.hostcal import check as hostcheck

    monkeypatch.setattr(hostcheck, "measure_s", lambda path, **_: hostcheck.Measured(1e-3, 1e-3))
    case = heldout.cases(networks=False, layers=True, quick=True)[0]
    row = hostcheck.check_case(case, load_profile("cpu-x86-avx2"), repeats=5)
    assert row.name == case.name and row.int8_measured_s == row.fp32_measured_s == 1e-3
    assert row.int8_simulated_s > 0 and row.macs > 0


def test_cases_never_timed_on_a_quiet_core_are_flagged_and_summarized_apart(monkeypatch):
    """Under a clock track with a vector probe, a case whose INT8 or FP32 model no pass timed
    quiet (the probe read below QUIET_SHARE of a quiet core's ratio in every pass, and in the
    extra ones) is marked contended; the table flags it and summarizes the quiet cases on
    their own line beside the summary of all."""
    from contextlib import contextmanager
    from dataclasses import replace

    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.hostcal import check as hostcheck
    from lowbit.models.hostcal import clock, quiet
    from lowbit.models.hostcal.clock import ClockTrack

    monkeypatch.setattr(clock, "_REMEMBERED", {"quiet_ratio": 0.0})
    track = ClockTrack(reference_hz=3e9, chain=lambda n: n)
    track.ratios += [4.0] * 20  # a quiet core reads 4 vector adds a cycle

    @contextmanager
    def fake_track(*, reference_hz):
        yield track

    monkeypatch.setattr(quiet, "active_track", lambda: track)
    monkeypatch.setattr(hostcheck, "clock_track", fake_track)
    monkeypatch.setattr(ClockTrack, "wait_quiet", lambda self, timeout_s: None)
    busy = {"b.fp32"}  # every timing of this one model ran on a shared core

    def fake(path, **_):
        track.ratios.append(2.0 if path in busy else 4.0)
        return hostcheck.Measured(1e-3, 1e-3)

    monkeypatch.setattr(hostcheck, "measure_s", fake)
    prepared = [
        hostcheck.Prepared(name, "layer", 10**6, f"{name}.int8", 1e-3, f"{name}.fp32", 1e-3)
        for name in ("a", "b")
    ]
    rows = hostcheck.timed_rows(load_profile("cpu-x86-avx2"), prepared, repeats=5)
    assert [r.contended for r in rows] == [False, True]
    assert summarize(rows)["all"]["contended"] == 1
    rows = [rows[0], replace(rows[1], int8_simulated_s=2e-3)]  # the busy one 2x off
    text = table(rows, cpu_label="test CPU")
    (line_b,) = [line for line in text.splitlines() if line.startswith("b ")]
    assert line_b.endswith("WRONG *")
    assert "* 1 of 2 cases were never timed on a quiet core" in text
    assert "the cases timed quiet (1): INT8 100% within ±15%" in text
    assert "all: 2 cases; INT8 Spearman nan, 50% within" in text
    # all quiet: no flag, no extra lines
    quiet_rows = [replace(r, contended=False) for r in rows]
    assert "*" not in table(quiet_rows, cpu_label="test CPU")
