"""time_configs: round-robin timing of exported models (real tiny ONNX Runtime sessions)."""

from __future__ import annotations

import numpy as np

from lowbit.models.export.ort import ort_session
from lowbit.models.hostcal.bench import chain_model
from lowbit.models.hostcal.measure import Prepared, time_configs


def _prepared(depth: int) -> Prepared:
    sessions = {
        kind: ort_session(chain_model("gemm", 16, 1, depth, kind == "int8"))
        for kind in ("int8", "fp32")
    }
    row = {"config_id": f"chain-{depth}", "simulated_ms_b1": 0.01, "simulated_ms_b4": 0.02}
    x = np.ones((4, 16), np.float32)
    return Prepared(row, sessions, {1: x[:1], 4: x})


def test_rows_get_medians_and_two_independent_halves():
    prepared = [_prepared(1), _prepared(3)]
    halves = time_configs(prepared, repeats=6, warmup=1, rounds=4)
    for p in prepared:
        row = p.row
        assert row["timed_runs"] == 4 * 2  # 4 rounds of ceil(6 / 4) runs
        for batch in (1, 4):
            measured = row[f"measured_int8_ms_b{batch}"]
            assert measured > 0 and row[f"iqr_int8_ms_b{batch}"] >= 0
            assert (
                row[f"int8_speedup_vs_fp32_b{batch}"]
                == row[f"measured_fp32_ms_b{batch}"] / measured
            )
            assert (
                row[f"sim_error_pct_b{batch}"]
                == (row[f"simulated_ms_b{batch}"] / measured - 1) * 100
            )
    for batch in (1, 4):  # even and odd rounds: one median per configuration each
        even, odd = halves[batch]
        assert len(even) == len(odd) == 2 and min(even + odd) > 0


def test_one_round_has_no_repeatability():
    halves = time_configs([_prepared(1)], repeats=1, warmup=0, rounds=4)
    assert halves == {1: None, 4: None}


def _shared_core(monkeypatch, contended) -> list:
    """A clock track whose vector probe reads a quiet core (4 adds a cycle) except beside
    the Run loops ``contended(session, earlier sessions)`` says were shared (2 adds a
    cycle, timed 9 ms a run against 1 ms); returns the sessions in the order timed."""
    from lowbit.models.hostcal import clock, quiet, timing
    from lowbit.models.hostcal.clock import ClockTrack

    monkeypatch.setattr(clock, "_REMEMBERED", {"quiet_ratio": 0.0})
    track = ClockTrack(reference_hz=3e9, chain=lambda n: n)
    track.ratios += [4.0] * 20
    monkeypatch.setattr(clock, "active_track", lambda: track)
    monkeypatch.setattr(quiet, "active_track", lambda: track)
    monkeypatch.setattr(ClockTrack, "wait_quiet", lambda self, *, timeout_s: None)
    seen: list = []

    def fake_runs(session, *, binding, runs):
        shared = contended(session, seen)
        seen.append(session)
        track.ratios.append(2.0 if shared else 4.0)
        return np.full(runs, 9e-3 if shared else 1e-3)

    monkeypatch.setattr(timing, "run_times_s", fake_runs)
    return seen


def _first_round_of(prepared: Prepared):
    """contended(): the first round of ``prepared``'s model (2 kinds x 2 batches)."""
    mine = {id(s) for s in prepared.sessions.values()}
    return lambda session, seen: id(session) in mine and sum(id(x) in mine for x in seen) < 4


def test_only_rounds_timed_on_a_quiet_core_count(monkeypatch):
    """Under a track with a vector probe, a round timed on a shared core (its probe ratio
    low) is left out of a model's median: here every model's first round ran at 9x."""
    first_round = 2 * 2 * 2  # models x kinds x batches
    seen = _shared_core(monkeypatch, lambda session, seen: len(seen) < first_round)
    prepared = [_prepared(1), _prepared(2)]
    halves = time_configs(prepared, repeats=2, warmup=0, rounds=2)
    assert len(seen) == 2 * first_round  # every round quiet after the first: none again
    for p in prepared:
        for kind in ("int8", "fp32"):
            for batch in (1, 4):
                assert p.row[f"measured_{kind}_ms_b{batch}"] == 1.0
    # one quiet round each: the halves of all rounds (the first, contended, and the second)
    assert halves == {1: ([9.0, 9.0], [1.0, 1.0]), 4: ([9.0, 9.0], [1.0, 1.0])}


def test_a_model_with_a_single_quiet_round_takes_its_halves_from_all(monkeypatch):
    """A model whose rounds but one ran on a shared core, beside one whose rounds were all
    quiet: both timed from their quiet rounds; the first's repeatability halves from all its
    rounds (it once failed here: the first model's None taken for the second's lists)."""
    prepared = [_prepared(1), _prepared(2)]
    _shared_core(monkeypatch, _first_round_of(prepared[0]))
    halves = time_configs(prepared, repeats=2, warmup=0, rounds=2)
    for p in prepared:
        assert p.row["measured_int8_ms_b1"] == p.row["measured_fp32_ms_b4"] == 1.0
    for batch in (1, 4):  # the first model's even round contended, its odd one quiet
        assert halves[batch] == ([9.0, 1.0], [1.0, 1.0])


def test_one_round_each_but_one_model_timed_again_leaves_no_halves(monkeypatch):
    """rounds=1: a model whose one round ran on a shared core is timed again (two rounds),
    the other keeps its one: no model set has halves at any batch, and nothing crashes
    (the second model's None once met the first one's lists)."""
    prepared = [_prepared(1), _prepared(2)]
    _shared_core(monkeypatch, _first_round_of(prepared[1]))
    halves = time_configs(prepared, repeats=1, warmup=0, rounds=1)
    assert halves == {1: None, 4: None}
    assert prepared[1].row["measured_int8_ms_b1"] == 1.0  # its quiet re-timing
