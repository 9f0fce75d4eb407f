"""The data-movement probes (:mod:`lowbit.models.hostcal.movement`): each is the kernel ONNX
Runtime runs, computes what it names, and is measured per element on this CPU."""

from __future__ import annotations

import numpy as np
import pytest


def test_the_inward_transpose_reads_channels_last_and_writes_nchw():
    from lowbit.models.export.ort import ort_session
    from lowbit.models.hostcal.movement import _input_for, _movement_model

    shape = (8, 6, 6)  # timed as (32, 3, 3): as many elements, 4x the channels
    x = _input_for("TransposeInward", shape)
    (y,) = ort_session(_movement_model("TransposeInward", shape)).run(None, {"x": x})
    assert x.shape == (1, 3, 3, 32) and x.size == np.prod(shape)
    assert np.array_equal(y, x.transpose(0, 3, 1, 2))


def test_the_narrow_inward_transpose_writes_32_channels_back_to_nchw():
    from lowbit.hwsim._memory_op_costs import INWARD_CHANNELS
    from lowbit.models.export.ort import ort_session
    from lowbit.models.hostcal.movement import _input_for, _movement_model

    shape = (64, 4, 6)  # as many elements at 32 channels: (4, 12, 32)
    x = _input_for("TransposeInwardNarrow", shape)
    (y,) = ort_session(_movement_model("TransposeInwardNarrow", shape)).run(None, {"x": x})
    assert x.shape == (1, 4, 12, INWARD_CHANNELS[0]) and x.size == np.prod(shape)
    assert np.array_equal(y, x.transpose(0, 3, 1, 2))


def test_movement_costs_are_measured_per_element_on_this_cpu():
    from lowbit.models.hostcal.clock import clock_track
    from lowbit.models.hostcal.movement import movement_session_costs, pooled_costs

    # three calls pooled (the median per operator, as a calibration's three rounds), under a
    # clock track (whose probe leaves out the rounds timed on a shared core): in one call
    # of eight on an AMD Zen 3 a slow spell made Concat 10x its usual cost, above the
    # QLinearConcat's
    with clock_track(reference_hz=3e9):
        costs = pooled_costs([movement_session_costs(repeats=5, rounds=2) for _ in range(3)])
    assert set(costs) == {
        "QuantizeLinear", "DequantizeLinear", "Transpose", "TransposeInward",
        "TransposeInwardNarrow", "TransposeRows",
        "TransposeStrided", "Concat", "QLinearConcat", "Split", "QLinearAdd", "QLinearMul",
        "ReorderInput", "ReorderOutput",
    }  # fmt: skip
    assert all(v >= 0 for v in costs.values())
    # a byte copy costs well under a microsecond per element on any CPU this runs on
    assert all(v < 1e-6 for v in costs.values())
    # element by element (the innermost axis moved) is slower than a layout change, which
    # moves one axis with contiguous runs (~60x on an Intel Xeon with AMX-INT8)
    assert costs["TransposeStrided"] > 2 * costs["Transpose"]
    # runs of 32 bytes, one copy each: dearer per element than the layout change's
    assert costs["TransposeRows"] > costs["Transpose"]
    # requantizing each element (inputs on other grids than the output's) is slower than
    # copying it (~10x on an Intel Xeon with AVX-512)
    assert costs["QLinearConcat"] > 2 * costs["Concat"]


def test_movement_layers_are_free_unless_the_profile_prices_them():
    from dataclasses import replace

    from lowbit import hwsim
    from lowbit.hwsim.profiles import load_profile
    from lowbit.hwsim.workload import (
        FLOAT_LAYOUT_KINDS,
        FLOAT_PASS_KINDS,
        MOVEMENT_KINDS,
        Compression,
        Elementwise,
    )

    cpu = load_profile("cpu-x86-avx2")
    for kind in MOVEMENT_KINDS:
        layer = Elementwise(
            name=kind, elements=200_704, kind=kind, compression=Compression(w_bits=8, a_bits=8)
        )
        free = hwsim.simulate_layer(layer, cpu)
        assert free.total_cycles == 0 and free.dram_read_bytes == 0
        priced = replace(
            cpu, overheads=replace(cpu.overheads, elementwise_cycles_per_element=((kind, 0.25),))
        )
        cost = hwsim.simulate_layer(layer, priced)
        if kind in FLOAT_PASS_KINDS:
            # a float kernel's own pass: free at 8 bits (the integer graph folds it), and
            # inside its conv's operator at float (no dispatch of its own)
            assert cost.total_cycles == 0
            wide = replace(layer, compression=Compression(w_bits=None, a_bits=None))
            cost = hwsim.simulate_layer(wide, priced)
            assert cost.overhead_cycles == cpu.overheads.tile_cycles  # no layer_cycles
            assert cost.compute_cycles == 0.25 * 200_704
        elif kind in FLOAT_LAYOUT_KINDS:
            # the float layout's reorders: free at 8 bits, an operator of their own at float
            assert cost.total_cycles == 0
            wide = replace(layer, compression=Compression(w_bits=None, a_bits=None))
            cost = hwsim.simulate_layer(wide, priced)
            assert cost.total_cycles >= 0.25 * 200_704 + cpu.overheads.layer_cycles
        else:
            assert cost.total_cycles >= 0.25 * 200_704 + cpu.overheads.layer_cycles


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
def test_the_integer_elementwise_probe_is_the_kernel_onnx_runtime_runs(op):
    """The QLinearAdd / QLinearMul probe of :func:`movement_session_costs` runs as that kernel on
    uint8 and computes it: x + x (or x * x) requantized on the same grid."""
    import numpy as np

    from lowbit.models.export.ort import kernel_census, ort_session
    from lowbit.models.hostcal.movement import _input_for, _movement_model

    model = _movement_model(op, (4, 3, 3))
    assert kernel_census(model).get(op) == 1
    x = _input_for(op, (4, 3, 3))
    (y,) = ort_session(model).run(None, {"x": x})
    real = (x.astype(np.float64) - 128) * 0.05
    expected = real + real if op == "QLinearAdd" else real * real
    codes = np.clip(np.round(expected / 0.05) + 128, 0, 255)
    assert y.dtype == np.uint8
    assert np.abs(y.astype(int) - codes).max() <= 1


def test_the_requantizing_concat_probe_is_the_kernel_onnx_runtime_runs():
    """The QLinearConcat probe of :func:`movement_session_costs` joins its input twice, each copy
    requantized from the input's grid (step 0.05) to the output's (step 0.07)."""
    import numpy as np

    from lowbit.models.export.ort import kernel_census, ort_session
    from lowbit.models.hostcal.movement import _input_for, _movement_model

    model = _movement_model("QLinearConcat", (4, 3, 3))
    assert kernel_census(model).get("QLinearConcat") == 1
    x = _input_for("QLinearConcat", (4, 3, 3))
    (y,) = ort_session(model).run(None, {"x": x})
    real = (x.astype(np.float64) - 128) * 0.05
    codes = np.clip(np.round(real / 0.07) + 128, 0, 255)
    assert y.shape == (1, 8, 3, 3) and y.dtype == np.uint8
    assert np.abs(y.astype(int) - np.concatenate([codes, codes], axis=1)).max() <= 1


def test_the_reorder_output_probe_undoes_the_reorder_input_probe():
    # each reorder is timed alone: the output one reads the graph's input as a blocked
    # tensor, which is what the input one writes
    from lowbit.models.export.ort import ort_session
    from lowbit.models.hostcal.movement import _has_blocked_layout, _input_for, _movement_model

    if not _has_blocked_layout():  # Arm: no blocked layout to reorder into (priced 0)
        return
    shape = (32, 5, 5)
    x = _input_for("ReorderInput", shape)
    (blocked,) = ort_session(_movement_model("ReorderInput", shape)).run(None, {"x": x})
    assert blocked.shape[1] % 8 == 0 and not np.array_equal(blocked.ravel(), x.ravel())
    (y,) = ort_session(_movement_model("ReorderOutput", shape)).run(None, {"x": blocked})
    assert np.array_equal(y, x)


def test_the_head_split_probe_transposes_runs_and_prices_each_run():
    from lowbit.models.export.ort import ort_session
    from lowbit.models.hostcal.movement import (
        ROW_RUN,
        _input_for,
        _movement_model,
        transpose_s_per_row,
    )

    shape = (8, 4, 4)  # 128 elements: 1 token x 4 heads x 32... timed as (1, 1, 4, 32)
    x = _input_for("TransposeRows", shape)
    (y,) = ort_session(_movement_model("TransposeRows", shape)).run(None, {"x": x})
    assert x.shape == (1, 1, 4, ROW_RUN) and np.array_equal(y, x.transpose(0, 2, 1, 3))
    # each run's cost: what the probe costs per element beyond the layout change, per run
    per_element = {"Transpose": 0.1e-9, "TransposeRows": 0.5e-9}
    assert transpose_s_per_row(per_element) == pytest.approx(0.4e-9 * ROW_RUN)
    assert transpose_s_per_row({"Transpose": 0.5e-9, "TransposeRows": 0.1e-9}) == 0.0
    assert transpose_s_per_row({}) == 0.0  # a sidecar from before the probe


def test_movement_costs_take_the_median_round_not_the_luckiest(monkeypatch):
    """Each size's time is the median over the rounds: one round faster than the rest (a
    clock reading that erred) and one slower (a disturbance) both leave the slope alone;
    the sessions are pooled (a session's buffers can make it slower throughout)."""
    from lowbit.models.hostcal import movement, timing
    from lowbit.models.hostcal.movement import (
        MOVEMENT_SHAPES,
        movement_session_costs,
        pooled_costs,
    )

    timed_ops = [op for op in movement.MOVEMENT_OPS if not op.startswith("Reorder")]
    monkeypatch.setattr(movement, "_has_blocked_layout", lambda: False)

    def fake(per_round, per_session):
        calls = []

        def times(session, *, binding, runs):
            # round by round, operator by operator, session by session, the smaller size first
            n = len(calls)
            calls.append(n)
            per_op = 2 * len(per_session)
            scale = per_round[n // (per_op * len(timed_ops))] * per_session[n % per_op // 2]
            return np.full(runs, scale * (1e-5 if n % 2 == 0 else 3e-5))

        monkeypatch.setattr(timing, "run_times_s", times)
        monkeypatch.setattr(movement, "MOVEMENT_SESSIONS", len(per_session))
        monkeypatch.setattr(movement, "SESSIONS", {})  # every operator in as many
        rounds = len(per_round) * len(per_session)
        costs = pooled_costs([movement_session_costs(repeats=1, rounds=rounds)])
        assert len(calls) == 2 * len(timed_ops) * len(per_round) * len(per_session)
        return costs

    elements = [int(np.prod(shape)) for shape in MOVEMENT_SHAPES]
    slope = 2e-5 / (elements[1] - elements[0])
    costs = fake([1.0, 0.6, 1.0, 1.7, 1.0], [1.0])
    assert costs["Transpose"] == pytest.approx(slope)
    assert costs["QLinearConcat"] == pytest.approx(slope / 2)  # a Concat writes twice
    assert costs["ReorderInput"] == 0.0  # no blocked layout: not timed
    # two sessions, one 20 % slower in every round: their median, the mean of the two
    costs = fake([1.0, 0.6, 1.0], [1.0, 1.2])
    assert costs["Transpose"] == pytest.approx(1.1 * slope)


def test_the_pooled_cost_is_the_median_session_of_all_rounds():
    """Rounds of per-session costs merge to the median of every session: a round timed in
    a slow spell (all of its sessions 1.6x) and one session whose buffers landed badly
    (2x) move it less than a mean or the least round's mean would."""
    from lowbit.models.hostcal.movement import pooled_costs

    quiet = {"Transpose": [1.0, 1.02, 0.98], "Split": [0.0, -1e-12, 0.0]}
    spell = {"Transpose": [1.6, 1.63, 1.58], "Split": [0.0, 0.0, 0.0]}
    placed = {"Transpose": [0.99, 2.0, 1.01], "Split": [0.0, 0.0, 0.0]}
    pooled = pooled_costs([quiet, spell, placed])
    assert pooled["Transpose"] == pytest.approx(1.02)  # the 5th of 9 sorted
    assert pooled["Split"] == 0.0  # never below zero
    assert pooled_costs([quiet]) == {"Transpose": 1.0, "Split": 0.0}
    with pytest.raises(ValueError, match="at least one round"):
        pooled_costs([])


def test_sessions_are_timed_per_operator_and_the_head_split_in_more():
    from lowbit.models.hostcal import movement

    sessions = movement.movement_session_costs(repeats=5, rounds=3)
    counts = {op: len(each) for op, each in sessions.items() if each != [0.0]}
    assert counts["TransposeRows"] == movement.SESSIONS["TransposeRows"] > 3
    assert counts["Transpose"] == counts["QuantizeLinear"] == movement.MOVEMENT_SESSIONS
    # pooled, never below zero; runs of 32 bytes dearer per element than the layout change
    costs = movement.pooled_costs([sessions])
    assert all(v >= 0 for v in costs.values())
    assert costs["TransposeRows"] > costs["Transpose"]
