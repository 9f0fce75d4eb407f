"""The Ethos-U55 behaviours learnt from Arm Vela: compressed weight storage, NPU convolution
blocking, the pipelined output stage; their profile keys are validated like every other."""

from __future__ import annotations

import pytest

from lowbit import hwsim
from lowbit.hwsim.compression import Compression
from lowbit.hwsim.errors import ProfileError
from lowbit.hwsim.profile import WeightCompression
from lowbit.hwsim.profiles import load_profile, load_profile_data, profile_from_dict
from lowbit.hwsim.workload import Conv2d, Linear

ETHOS = "npu-ethos-u55"


def _ethos_data() -> dict:
    return load_profile_data(ETHOS)


def _errors(data: dict) -> str:
    with pytest.raises(ProfileError) as info:
        profile_from_dict(data, source="bad.toml")
    return str(info.value)


def test_compressed_storage_needs_its_table_and_the_table_needs_it():
    data = _ethos_data()
    del data["weight_compression"]
    msg = _errors(data)
    assert "bad.toml" in msg and "weight_compression: missing" in msg
    data = _ethos_data()
    data["weight_storage"] = "promoted"
    msg = _errors(data)
    assert "weight_compression: only read when" in msg and '"promoted"' in msg


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("stored_bits_per_weight", [1.5, 3.7], "2 entries for 7 w_bits"),
        ("w_bits", [2, 2, 3, 4, 5, 6, 8], "weight_compression.w_bits[1]: 2 listed twice"),
        ("w_bits", [], "weight_compression.w_bits: must not be empty"),
        ("stored_bits_per_weight", [1.5, 2.6, 3.7, 4.9, 6.25, 7.3, -1], "[6]: must be >= 0"),
        ("zero_stored_bits_per_weight", 100, "must be <= 64 bits"),
        ("bytes_per_output_channel", "10", "must be a number"),
        ("bits_per_weight", [8], 'unknown key (did you mean "stored_bits_per_weight"?)'),
    ],
)
def test_bad_weight_compression_is_named_by_file_and_key(key, value, expected):
    data = _ethos_data()
    data["weight_compression"][key] = value
    msg = _errors(data)
    assert "bad.toml" in msg and f"weight_compression.{key}" in msg and expected in msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("conv_in_channel_block", 0),
        ("conv_part_kernel_positions", -1),
        ("conv_part_kernel_channel_block", 0),
        ("output_stage_cycles_per_output", -0.5),
    ],
)
def test_bad_npu_conv_overheads_are_named(key, value):
    data = _ethos_data()
    data["overheads"][key] = value
    msg = _errors(data)
    assert "bad.toml" in msg and f"overheads.{key}: must be >= " in msg


def test_stored_bits_pick_the_next_listed_width_and_price_zeros():
    wc = WeightCompression(
        w_bits=(2, 4, 8), stored_bits_per_weight=(1.5, 3.7, 8.1), zero_stored_bits_per_weight=1.8
    )
    assert wc.stored_bits(w_bits=4) == 3.7
    assert wc.stored_bits(w_bits=3) == 3.7  # a 3-bit grid encodes no worse than a 4-bit one
    assert wc.stored_bits(w_bits=1) == 1.5
    assert wc.stored_bits(w_bits=16) == pytest.approx(8.1 * 2)
    assert wc.stored_bits(w_bits=8, density=0.5) == pytest.approx(0.5 * 8.1 + 0.5 * 1.8)
    # a zero never costs more than a dense weight of the grid
    assert wc.stored_bits(w_bits=2, density=0.0) == 1.5


def _weight_bytes(result) -> int:
    return dict(result.dram_read_bytes_by_operand)["weights"]


def _fc(w_bits: int, **kw) -> Linear:
    return Linear(
        name="fc",
        in_features=512,
        out_features=64,
        compression=Compression(w_bits=w_bits, a_bits=8, **kw),
    )


def test_ethos_weight_bytes_follow_the_encoder():
    """Golden: flash bytes of a 512x64 linear are its weights at the encoder's bits (Vela
    5.2.0 mlw_codec on zoo weights, measured: 8.1 bits at 8, 3.7 at 4, 1.5 at 2) plus 10
    bytes per output channel (Vela's flash bytes - encoded weights, all bench configs)."""
    prof = load_profile(ETHOS)
    for bits, per_weight in ((8, 8.1), (4, 3.7), (2, 1.5)):
        got = _weight_bytes(hwsim.simulate_layer(_fc(bits), prof))
        assert got == pytest.approx(512 * 64 * per_weight / 8 + 64 * 10, abs=1)
    # lower bits are never slower on this flash-bound target, and faster than W8
    cycles = [hwsim.simulate_layer(_fc(b), prof).total_cycles for b in (8, 6, 4, 3, 2)]
    assert cycles == sorted(cycles, reverse=True) and cycles[-1] < cycles[0] / 3


def _conv(in_c: int, out_c: int, k: int, hw: int = 28) -> Conv2d:
    return Conv2d(
        name="c", in_h=hw, in_w=hw, in_c=in_c, out_c=out_c, k_h=k, k_w=k, out_h=hw, out_w=hw
    )


def test_ethos_conv_reduction_is_blocked():
    """Vela's traversals: depth first (32 input channels per kernel position) or part
    kernel first (4 positions x 8 channels), the cheaper."""
    prof = load_profile(ETHOS)

    def compute(layer):
        return hwsim.simulate_layer(layer, prof).compute_cycles

    pixels_x_outputs = (28 * 28 // 4) * (24 // 8)  # M / cores x N / cols
    # 1-channel 3x3 stem: part kernel first, 12 positions x 8 channels = 96 = 12 K-steps
    assert compute(_conv(1, 24, 3)) == pixels_x_outputs * 12
    # 24 channels compute as 32 (depth first, 9 x 32 = 288 = 36 K-steps)
    assert compute(_conv(24, 24, 3)) == pixels_x_outputs * 36
    assert compute(_conv(24, 24, 3)) == compute(_conv(32, 24, 3))
    assert compute(_conv(33, 24, 3)) > compute(_conv(32, 24, 3))


def test_ethos_output_stage_bounds_small_k_convs():
    """A 1x1 conv of 8 input channels needs 1 K-step per output block, but its output stage
    takes 0.25 cycles per output element (Vela's Ethos_U55_256 table)."""
    prof = load_profile(ETHOS)
    layer = _conv(8, 64, 1)
    assert hwsim.simulate_layer(layer, prof).compute_cycles == 28 * 28 * 64 // 4


def test_other_builtins_keep_plain_storage_and_no_npu_conv_costs():
    for name in hwsim.builtin_profile_names():
        if name == ETHOS:
            continue
        prof = load_profile(name)
        o = prof.overheads
        assert prof.weight_storage != "compressed" and prof.weight_compression is None
        assert (o.conv_in_channel_block, o.conv_part_kernel_positions) == (1, 0)
        assert o.output_stage_cycles_per_output == 0.0
