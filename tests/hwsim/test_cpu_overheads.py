"""The CPU runtime costs a profile may declare: once per inference (``run_cycles``), once per
GEMM (``gemm_cycles``) and per element of memory-only layers by kind
(``elementwise_cycles_per_element``). Their defaults cost nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest
import tomllib

from lowbit import hwsim
from lowbit.hwsim._cost_rules import ElementwiseCosts
from lowbit.hwsim.profile import Overheads, Precision
from lowbit.hwsim.profiles import (
    load_profile,
    load_profile_data,
    profile_from_dict,
    validate_profile_data,
)
from lowbit.hwsim.workload import (
    ELEMENTWISE_KINDS,
    Compression,
    Conv2d,
    Elementwise,
    Linear,
    MatMul,
    Pool,
    Workload,
)

FC = Linear(name="fc", in_features=256, out_features=256)
LOW_RANK = FC.with_compression(Compression(rank=16))


def _with(profile, **overheads):
    return replace(profile, overheads=replace(profile.overheads, **overheads))


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_run_overhead_is_added_once_per_inference(make_target, engine):
    base = make_target(layer_cycles=7)
    costly = _with(base, run_cycles=1000)
    for depth in (1, 3):
        wl = Workload("w", tuple(replace(FC, name=f"fc{i}") for i in range(depth)))
        r0 = hwsim.simulate(wl, base, engine=engine)
        r1 = hwsim.simulate(wl, costly, engine=engine)
        assert r1.total_cycles - r0.total_cycles == 1000  # whatever the depth
        assert r1.run_cycles == 1000 and r0.run_cycles == 0
        assert r1.total_cycles == sum(x.total_cycles for x in r1.layers) + r1.run_cycles
        assert r1.latency_s == pytest.approx(r1.total_cycles / base.clock_hz)
        assert [x.total_cycles for x in r1.layers] == [x.total_cycles for x in r0.layers]
        assert r1.to_dict()["run_cycles"] == 1000


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_low_rank_layer_pays_two_gemm_overheads(make_target, engine):
    base = make_target(layer_cycles=50, tile_cycles=0)
    costly = _with(base, gemm_cycles=300)
    assert len(LOW_RANK.gemms()) == 2 and len(FC.gemms()) == 1
    for layer, gemms in ((FC, 1), (LOW_RANK, 2)):
        r0 = hwsim.simulate_layer(layer, base, engine=engine)
        r1 = hwsim.simulate_layer(layer, costly, engine=engine)
        assert r1.total_cycles - r0.total_cycles == 300 * gemms
        assert r1.overhead_cycles - r0.overhead_cycles == 300 * gemms
        assert r1.total_cycles == r1.compute_cycles + r1.stall_cycles + r1.overhead_cycles
    # a memory-only layer runs no GEMM: layer_cycles only
    add = Elementwise(name="add", elements=1024, inputs=2, kind="add")
    assert (
        hwsim.simulate_layer(add, costly).total_cycles
        == hwsim.simulate_layer(add, base).total_cycles
    )


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_elementwise_cost_is_the_max_of_work_and_traffic(make_target, engine):
    base = make_target(dram_bytes_per_cycle=16.0, layer_cycles=100, tile_cycles=0)
    n = 64 * 1024
    dma = 3 * n // 16  # two inputs read + one output written, 1 byte each
    add = Elementwise(name="add", elements=n, inputs=2, kind="add")
    ln = Elementwise(name="ln", elements=n, kind="layernorm")
    cheap = _with(base, elementwise_cycles_per_element=(("add", 0.125),))
    r = hwsim.simulate_layer(add, cheap, engine=engine)
    assert r.compute_cycles == n // 8 and r.total_cycles == 100 + dma  # traffic hides it
    costly = _with(base, elementwise_cycles_per_element=(("add", 2.0), ("layernorm", 3.0)))
    r = hwsim.simulate_layer(add, costly, engine=engine)
    assert r.compute_cycles == 2 * n and r.total_cycles == 100 + 2 * n  # work dominates
    assert r.bound == "compute" and r.stall_cycles == 0
    assert hwsim.simulate_layer(ln, costly, engine=engine).compute_cycles == 3 * n
    # a kind the profile does not list, or no kind: traffic alone, as before
    plain = Elementwise(name="add", elements=n, inputs=2)
    for layer, profile in ((plain, costly), (ln, cheap)):
        assert hwsim.simulate_layer(layer, profile, engine=engine).compute_cycles == 0
    # pooling is charged per input element
    pool = Pool(name="p", in_elements=4 * n, out_elements=n, kind="maxpool")
    maxpool = _with(base, elementwise_cycles_per_element=(("maxpool", 1.5),))
    assert hwsim.simulate_layer(pool, maxpool, engine=engine).compute_cycles == 6 * n
    # a pool that knows its channels, on a target that pools a pixel's channels in SIMD
    # blocks of 64: 8 channels cost what 64 do; 96 channels take two blocks (128)
    blocked = _with(maxpool, pool_channel_block=64)
    for channels, padded in ((8, 64), (64, 64), (96, 128)):
        px = 16
        layer = Pool(
            name="p",
            in_elements=px * channels,
            out_elements=px * channels // 4,
            kind="maxpool",
            channels=channels,
        )
        r = hwsim.simulate_layer(layer, blocked, engine=engine)
        assert r.compute_cycles == 1.5 * px * padded
        # without the block (or the channels), per element as before
        assert hwsim.simulate_layer(layer, maxpool, engine=engine).compute_cycles == (
            1.5 * px * channels
        )
    assert hwsim.simulate_layer(pool, blocked, engine=engine).compute_cycles == 6 * n
    with pytest.raises(ValueError, match="channels 3 must divide"):
        Pool(name="p", in_elements=16, out_elements=4, channels=3)


def test_overheads_default_to_no_cost():
    o = Overheads()
    assert o.run_cycles == o.gemm_cycles == 0 and o.elementwise_cycles_per_element == ()
    assert o.unaligned_conv_cycles_per_pixel == o.conv_cycles_per_pixel == 0.0
    assert o.conv_cycles_per_image == o.requant_cycles_per_output == 0.0
    assert all(
        ElementwiseCosts.of(o).element_rate(kind, integer=False) == 0.0
        for kind in ELEMENTWISE_KINDS
    )
    for name in hwsim.builtin_profile_names():  # the built-ins are unchanged
        o = hwsim.load_profile(name).overheads
        assert (o.run_cycles, o.gemm_cycles) == (0, 0)
        # only the Ethos-U55 prices its elementwise unit and pooling (Vela's costs)
        assert o.elementwise_cycles_per_element == () or name == "npu-ethos-u55"
        assert o.unaligned_conv_cycles_per_pixel == o.conv_cycles_per_pixel == 0.0


def test_unknown_kind_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="unknown kind 'norm'.*layernorm"):
        Elementwise(name="x", elements=4, kind="norm")
    with pytest.raises(ValueError, match="maxpool"):
        Pool(name="p", in_elements=4, out_elements=1, kind="max")


def test_profile_schema_reads_and_checks_the_new_overheads():
    data = load_profile_data("cpu-x86-avx2")
    data["overheads"] = {
        "run_cycles": 6000,
        "gemm_cycles": 700,
        "conv_channel_multiple": 4,
        "unaligned_conv_cycles_per_pixel": 35.5,
        "conv_cycles_per_pixel": 21.25,
        "conv_cycles_per_image": 180,
        "requant_cycles_per_output": 0.25,
        "elementwise_cycles_per_element": {"layernorm": 2.0, "gelu": 1},
    }
    assert validate_profile_data(data) == []
    o = profile_from_dict(data, source="test").overheads
    assert (o.run_cycles, o.gemm_cycles) == (6000, 700)
    assert (o.conv_channel_multiple, o.conv_min_out_channels) == (4, 1)
    assert (o.unaligned_conv_cycles_per_pixel, o.conv_cycles_per_pixel) == (35.5, 21.25)
    assert (o.conv_cycles_per_image, o.requant_cycles_per_output) == (180.0, 0.25)
    assert o.elementwise_cycles_per_element == (("gelu", 1.0), ("layernorm", 2.0))
    bad = load_profile_data("cpu-x86-avx2")
    bad["overheads"] = {
        "run_cycles": -1,
        "conv_cycles_per_pixel": -2.0,
        "elementwise_cycles_per_element": {"lnorm": 1.0},
    }
    errors = validate_profile_data(bad)
    assert any(e.startswith("overheads.run_cycles:") for e in errors)
    assert any(e.startswith("overheads.conv_cycles_per_pixel:") for e in errors)
    assert any("overheads.elementwise_cycles_per_element.lnorm: unknown key" in e for e in errors)


def test_builtin_workloads_name_their_memory_only_kinds():
    """Every memory-only layer of the built-in workloads says what operator it is."""
    from lowbit.hwsim.workloads import BUILTIN_WORKLOADS

    for name in BUILTIN_WORKLOADS:
        for layer in hwsim.builtin_workload(name).layers:
            if layer.op in ("elementwise", "pool"):
                assert layer.kind in ELEMENTWISE_KINDS, (name, layer.name)


def test_readme_example_keys_parse():
    """The README's table names are TOML keys the schema accepts."""
    text = "[overheads]\nrun_cycles = 1\ngemm_cycles = 2\n"
    text += "[overheads.elementwise_cycles_per_element]\n"
    text += "".join(f"{kind} = 0.5\n" for kind in ELEMENTWISE_KINDS)
    data = load_profile_data("cpu-x86-avx2")
    data["overheads"] = tomllib.loads(text)["overheads"]
    assert validate_profile_data(data) == []


def test_float_gemms_do_not_pay_the_integer_gemm_cost(make_target):
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = make_target(precisions=modes, layer_cycles=50)
    costly = _with(base, gemm_cycles=300)
    fp32 = FC.with_compression(Compression(w_bits=None, a_bits=None))
    assert (
        hwsim.simulate_layer(fp32, costly).total_cycles
        == hwsim.simulate_layer(fp32, base).total_cycles
    )
    int4 = FC.with_compression(Compression(w_bits=4, a_bits=8))  # promoted to INT8: integer
    assert (
        hwsim.simulate_layer(int4, costly).total_cycles
        == hwsim.simulate_layer(int4, base).total_cycles + 300
    )


def _conv(in_c: int, out_c: int, **kw) -> Conv2d:
    return Conv2d(
        name="c", in_h=8, in_w=8, in_c=in_c, out_c=out_c, k_h=3, k_w=3, out_h=8, out_w=8, **kw
    )


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_unaligned_convolutions_pay_per_output_pixel(make_target, engine):
    """ONNX Runtime's direct INT8 conv takes channels in multiples of 4 and >= 16 output
    channels; others pay the generic path's cost per output pixel (8 x 8 x batch)."""
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = make_target(kind="vector", rows=1, cols=32, dataflow="vector", precisions=modes)
    cpu = _with(
        base,
        conv_channel_multiple=4,
        conv_min_out_channels=16,
        unaligned_conv_cycles_per_pixel=40.0,
    )

    def extra(layer) -> int:
        return (
            hwsim.simulate_layer(layer, cpu, engine=engine).compute_cycles
            - hwsim.simulate_layer(layer, base, engine=engine).compute_cycles
        )

    for in_c, out_c in ((16, 16), (4, 16), (12, 20), (16, 64)):  # the direct kernel
        assert extra(_conv(in_c, out_c)) == 0
    for in_c, out_c in ((16, 12), (16, 8), (1, 16), (6, 16), (16, 18)):  # the generic path
        assert extra(_conv(in_c, out_c)) == 40 * 64
    assert extra(_conv(1, 16, batch=4)) == 40 * 64 * 4
    # pruning 16 -> 12 output channels is slower on such a CPU
    pruned = _conv(16, 16).with_compression(Compression(keep=0.75))
    assert (
        hwsim.simulate_layer(pruned, cpu).total_cycles
        > hwsim.simulate_layer(_conv(16, 16), cpu).total_cycles
    )
    # a low-rank conv: each factor by its own channels. Rank 8: 16 -> 8 (too few outputs)
    # then 8 -> 32 (aligned); rank 6: 16 -> 6 and 6 -> 32 (6 not a multiple of 4) both pay
    assert extra(_conv(16, 32).with_compression(Compression(rank=8))) == 40 * 64
    assert extra(_conv(16, 32).with_compression(Compression(rank=6))) == 2 * 40 * 64
    # float, depthwise and fully connected layers are not convolutions of that kernel
    assert extra(_conv(16, 12).with_compression(Compression(w_bits=None, a_bits=None))) == 0
    assert extra(_conv(12, 12, groups=12)) == 0
    assert extra(Linear(name="fc", in_features=6, out_features=10)) == 0


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_every_integer_convolution_pays_per_output_pixel(make_target, engine):
    """``conv_cycles_per_pixel``: each integer conv GEMM pays it per output pixel (gathering
    the pixel's row, requantizing its outputs), on top of the unaligned path's extra."""
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = make_target(kind="vector", rows=1, cols=32, dataflow="vector", precisions=modes)
    cpu = _with(
        base,
        conv_cycles_per_pixel=20.0,
        conv_channel_multiple=4,
        conv_min_out_channels=16,
        unaligned_conv_cycles_per_pixel=40.0,
    )

    def extra(layer) -> int:
        return (
            hwsim.simulate_layer(layer, cpu, engine=engine).compute_cycles
            - hwsim.simulate_layer(layer, base, engine=engine).compute_cycles
        )

    assert extra(_conv(16, 16)) == 20 * 64  # direct kernel: the per-pixel cost only
    assert extra(_conv(16, 16, batch=3)) == 20 * 64 * 3
    assert extra(_conv(1, 16)) == (20 + 40) * 64  # generic path: both
    # low rank: the 3x3 factor (16 -> 8: too few outputs) gathers windows, the 1x1 does not
    assert extra(_conv(16, 32).with_compression(Compression(rank=8))) == (20 + 40) * 64
    one_by_one = Conv2d(name="p", in_h=8, in_w=8, in_c=16, out_c=16, k_h=1, k_w=1, out_h=8, out_w=8)
    assert extra(one_by_one) == 0
    per_image = _with(cpu, conv_cycles_per_image=500.0)
    assert (
        hwsim.simulate_layer(_conv(16, 16, batch=3), per_image, engine=engine).compute_cycles
        - hwsim.simulate_layer(_conv(16, 16, batch=3), cpu, engine=engine).compute_cycles
        == 500 * 3
    )
    assert extra(_conv(16, 16).with_compression(Compression(w_bits=None, a_bits=None))) == 0
    assert extra(_conv(12, 12, groups=12)) == 0
    assert extra(Linear(name="fc", in_features=16, out_features=16)) == 0


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_padded_channels_cost_what_the_aligned_conv_costs(make_target, engine):
    """pad_conv_channels: an unaligned conv runs as the aligned one the export pads it to
    (outputs to a multiple of 4 and >= 16; a stem's 1 input channel to 4), not the generic
    path."""
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = make_target(kind="vector", rows=1, cols=32, dataflow="vector", precisions=modes)
    cpu = _with(
        base,
        conv_channel_multiple=4,
        conv_min_out_channels=16,
        conv_cycles_per_pixel=20.0,
        unaligned_conv_cycles_per_pixel=40.0,
        requant_cycles_per_output=0.5,
    )
    padded = _with(cpu, pad_conv_channels=True)

    def cycles(layer, profile) -> int:
        return hwsim.simulate_layer(layer, profile, engine=engine).compute_cycles

    for (in_c, out_c), (in_pad, out_pad) in (
        ((16, 12), (16, 16)), ((8, 6), (16, 16)), ((1, 16), (4, 16)), ((3, 20), (4, 20)),
        ((16, 16), (16, 16)),
    ):  # fmt: skip
        assert cycles(_conv(in_c, out_c), padded) == cycles(_conv(in_pad, out_pad), cpu)
    # a stem's input is widened by one more operator (a Pad): one dispatch
    assert (
        hwsim.simulate_layer(
            _conv(1, 16), _with(padded, layer_cycles=300), engine=engine
        ).total_cycles
        - hwsim.simulate_layer(_conv(1, 16), padded, engine=engine).total_cycles
        == 2 * 300
    )
    # padding beats the generic path here, and never touches an aligned conv
    assert cycles(_conv(16, 12), padded) < cycles(_conv(16, 12), cpu)
    # low rank 16 -> 32 at rank 6: the 3x3 factor's 6 outputs and the 1x1's 6 inputs pad to 16
    lowrank = _conv(16, 32).with_compression(Compression(rank=16))
    rank6 = _conv(16, 32).with_compression(Compression(rank=6))
    assert cycles(rank6, padded) == cycles(lowrank, cpu)
    # float and depthwise convs are left alone
    for layer in (
        _conv(16, 12).with_compression(Compression(w_bits=None, a_bits=None)),
        _conv(12, 12, groups=12),
    ):
        assert cycles(layer, padded) == cycles(layer, cpu)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_the_direct_kernel_computes_output_channels_in_whole_blocks(make_target, engine):
    """``conv_out_channel_block``: a direct-kernel integer conv's MACs cover its outputs
    rounded up to the block (ONNX Runtime's AVX2 kernel: 16; 24 outputs cost what 32 do), on
    a mapping of narrower columns; its per-output costs stay its own outputs'. The generic
    path, float and depthwise convs and GEMM layers are left alone."""
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = make_target(kind="vector", rows=1, cols=8, dataflow="vector", precisions=modes)
    cpu = _with(base, conv_channel_multiple=4, conv_min_out_channels=16)
    blocked = _with(cpu, conv_out_channel_block=16)

    def cycles(layer, profile) -> int:
        return hwsim.simulate_layer(layer, profile, engine=engine).compute_cycles

    for out_c, whole in ((24, 32), (40, 48), (20, 32), (32, 32), (16, 16)):
        assert cycles(_conv(16, out_c), blocked) == cycles(_conv(16, whole), cpu)
    assert cycles(_conv(16, 24), cpu) < cycles(_conv(16, 32), cpu)  # without the block
    # per output: 24 outputs' requantization, not 32's
    requant = _with(blocked, requant_cycles_per_output=1.0)
    assert cycles(_conv(16, 24), requant) - cycles(_conv(16, 24), blocked) == 24 * 64
    # the generic path (too few outputs, uint8 weights), float and depthwise convs, GEMMs
    for layer in (
        _conv(16, 12),
        _conv(16, 24, weight_storage="u8"),
        _conv(16, 24).with_compression(Compression(w_bits=None, a_bits=None)),
        _conv(24, 24, groups=24),
        Linear(name="fc", in_features=16, out_features=24),
    ):
        assert cycles(layer, blocked) == cycles(layer, cpu)
    # on top of the export's padding: 18 outputs padded to 20, blocked to 32
    padded = _with(blocked, pad_conv_channels=True)
    assert cycles(_conv(16, 18), padded) == cycles(_conv(16, 32), cpu)
    # and of a reduction blocking (another rule's run shape): 12 input channels read as 16
    reduced = _with(cpu, conv_in_channel_block=16)
    both = _with(reduced, conv_out_channel_block=16)
    assert cycles(_conv(12, 24), both) == cycles(_conv(16, 32), cpu)
    assert cycles(_conv(12, 24), reduced) == cycles(_conv(16, 24), cpu)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_integer_gemms_pay_requantization_per_output(make_target, engine):
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = make_target(kind="vector", rows=1, cols=32, dataflow="vector", precisions=modes)
    cpu = _with(base, requant_cycles_per_output=0.5)

    def extra(layer) -> int:
        return (
            hwsim.simulate_layer(layer, cpu, engine=engine).compute_cycles
            - hwsim.simulate_layer(layer, base, engine=engine).compute_cycles
        )

    assert extra(_conv(16, 24, batch=2)) == 0.5 * 2 * 64 * 24  # M x N outputs
    assert extra(Linear(name="fc", in_features=64, out_features=10, tokens=8)) == 0.5 * 8 * 10
    # low rank: both factors requantize (16 -> 8, then 8 -> 24)
    assert extra(_conv(16, 24).with_compression(Compression(rank=8))) == 0.5 * 64 * (8 + 24)
    assert extra(_conv(16, 24).with_compression(Compression(w_bits=None, a_bits=None))) == 0
    # the GEMM library's own requantization pass: linear layers pay it, convs do not
    lib = _with(cpu, library_requant_cycles_per_output=1.5)
    fc = Linear(name="fc", in_features=64, out_features=10, tokens=8)
    for layer, per_output in ((fc, 0.5 + 1.5), (_conv(16, 24, batch=2), 0.5)):
        more = (
            hwsim.simulate_layer(layer, lib, engine=engine).compute_cycles
            - hwsim.simulate_layer(layer, base, engine=engine).compute_cycles
        )
        assert more == per_output * layer.gemms()[0].M * layer.gemms()[0].N
    # and the library's packing per row of the first operand: linear layers only
    rows = _with(lib, library_cycles_per_row=30.0)
    for layer, per_row in ((fc, 30.0), (_conv(16, 24, batch=2), 0.0)):
        more = (
            hwsim.simulate_layer(layer, rows, engine=engine).compute_cycles
            - hwsim.simulate_layer(layer, lib, engine=engine).compute_cycles
        )
        assert more == per_row * layer.gemms()[0].M


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_float_linear_layers_run_the_float_gemm_library_rate(make_target, engine):
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = make_target(kind="vector", rows=1, cols=32, dataflow="vector", precisions=modes)
    fast = _with(base, float_gemm_library_speedup=2.0)
    wide = Compression(w_bits=None, a_bits=None)
    fc = Linear(name="fc", in_features=256, out_features=256, tokens=64).with_compression(wide)
    conv = _conv(32, 32).with_compression(wide)

    def compute(layer, target) -> int:
        return hwsim.simulate_layer(layer, target, engine=engine).compute_cycles

    assert compute(fc, fast) == pytest.approx(compute(fc, base) / 2, abs=1)
    assert compute(conv, fast) == compute(conv, base)  # float convs keep the float rate
    int8_fc = Linear(name="q", in_features=256, out_features=256, tokens=64)
    assert compute(int8_fc, fast) == compute(int8_fc, base)  # integer GEMMs: their own


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_sub_8_bit_activations_pay_one_clamp_operator_each(make_target, engine):
    """A4 on an INT8-only target runs at A8 plus one Clip per narrow activation operand
    (ONNX Runtime's exports); a target that computes A4 natively pays nothing."""
    base = make_target(layer_cycles=50, tile_cycles=0)
    costly = _with(base, narrow_activation_cycles=400)
    a4 = FC.with_compression(Compression(w_bits=8, a_bits=4))
    for layer, extra in ((FC, 0), (a4, 400)):
        r0 = hwsim.simulate_layer(layer, base, engine=engine)
        r1 = hwsim.simulate_layer(layer, costly, engine=engine)
        assert r1.total_cycles - r0.total_cycles == extra
    qk = MatMul(name="qk", M=16, N=16, K=8, heads=4, compression=Compression(a_bits=4))
    assert (
        hwsim.simulate_layer(qk, costly).total_cycles - hwsim.simulate_layer(qk, base).total_cycles
        == 2 * 400  # both operands are activations
    )
    from lowbit.hwsim.profiles import load_profile

    bitfusion = load_profile("npu-bitfusion")  # runs A4 natively: no clamp operator
    native = _with(bitfusion, narrow_activation_cycles=400)
    assert (
        hwsim.simulate_layer(a4, native).total_cycles
        == hwsim.simulate_layer(a4, bitfusion).total_cycles
    )


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_depthwise_conv_runs_its_own_kernel_on_a_cpu(engine):
    """A depthwise conv costs per MAC and per output pixel (Overheads.depthwise_*), each
    precision its own pair; other grouped convs stay GEMMs."""
    from math import ceil

    base = load_profile("cpu-x86-avx2")
    costs = dict(
        depthwise_cycles_per_mac=0.1,
        depthwise_cycles_per_pixel=20.0,
        fp32_depthwise_cycles_per_mac=0.05,
        fp32_depthwise_cycles_per_pixel=3.0,
    )
    cpu = _with(base, **costs)
    dw = Conv2d(
        name="dw", in_h=28, in_w=28, in_c=96, out_c=96, k_h=3, k_w=3, out_h=28, out_w=28, groups=96
    )
    pixels, macs = 28 * 28, 28 * 28 * 96 * 9
    for bits, (per_mac, per_pixel) in ((8, (0.1, 20.0)), (32, (0.05, 3.0))):
        layer = dw.with_compression(Compression(w_bits=bits, a_bits=bits))
        r = hwsim.simulate_layer(layer, cpu, engine=engine)
        assert r.compute_cycles == 96 * ceil(per_mac * macs / 96 + per_pixel * pixels / 96 - 1e-9)
        assert r.total_cycles >= r.compute_cycles + cpu.overheads.layer_cycles
    # four times the pixels: four times the compute; a grouped (not depthwise) conv is unchanged
    wide = replace(dw, in_h=56, in_w=56, out_h=56, out_w=56)
    assert hwsim.simulate_layer(wide, cpu, engine=engine).compute_cycles == pytest.approx(
        4 * hwsim.simulate_layer(dw, cpu, engine=engine).compute_cycles, abs=96
    )
    grouped = replace(dw, groups=4)
    assert (
        hwsim.simulate_layer(grouped, cpu, engine=engine).total_cycles
        == hwsim.simulate_layer(grouped, base, engine=engine).total_cycles
    )
    data = load_profile_data("cpu-x86-avx2")
    data["overheads"] = {**data.get("overheads", {}), **costs, "depthwise_cycles_per_mac": -1}
    assert any(
        e.startswith("overheads.depthwise_cycles_per_mac:") for e in validate_profile_data(data)
    )


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_warm_cache_serves_small_models_weights_from_the_cache(engine):
    """Overheads.warm_cache: weights that fit WARM_SHARE of an on-chip level are read from
    the innermost such level in steady state; larger ones in part from the largest cache
    (the share it keeps), the rest from DRAM; without the flag nothing changes."""
    from lowbit.hwsim._warm_cache import WARM_SHARE, warm_profile, weight_bytes

    cold = load_profile("cpu-x86-avx2")
    warm = _with(cold, warm_cache=True)
    levels = {m.name: m for m in cold.memory}
    small = Linear(name="fc", in_features=1024, out_features=512)  # 512 KiB of int8 weights
    assert weight_bytes([small], cold) == 1024 * 512
    home = min(
        (m for m in cold.on_chip("weights") if WARM_SHARE * m.size_bytes >= 1024 * 512),
        key=lambda m: m.size_bytes,
    )
    seen = warm_profile(warm, [small])
    dram = next(m for m in seen.memory if m.off_chip)
    was = levels[dram.name].bandwidth_bytes_per_cycle
    assert dram.bandwidth_bytes_per_cycle == home.bandwidth_bytes_per_cycle > was
    assert warm_profile(warm, [small]) is seen  # one warm twin per profile and level
    fast = hwsim.simulate(Workload("w", (small,)), warm, engine=engine)
    slow = hwsim.simulate(Workload("w", (small,)), cold, engine=engine)
    assert fast.total_cycles <= slow.total_cycles
    assert (
        hwsim.simulate_layer(small, warm, engine=engine).total_cycles == fast.layers[0].total_cycles
    )
    huge = Linear(name="big", in_features=16384, out_features=16384)  # 256 MiB: no cache holds it
    # weights beyond every cache: the largest keeps WARM_SHARE of its size of them, read at
    # its rate, the rest at DRAM's (the harmonic mix; energy mixed by bytes)
    largest = max(cold.on_chip("weights"), key=lambda m: m.size_bytes)
    kept = round(WARM_SHARE * largest.size_bytes / 2**28, 3)
    assert 0 < kept < 0.2
    mixed = next(m for m in warm_profile(warm, [huge]).memory if m.off_chip)
    assert mixed.bandwidth_bytes_per_cycle == pytest.approx(
        1 / (kept / largest.bandwidth_bytes_per_cycle + (1 - kept) / was)
    )
    assert was < mixed.bandwidth_bytes_per_cycle < largest.bandwidth_bytes_per_cycle
    dram_energy = levels[dram.name].energy_pj_per_byte
    assert mixed.energy_pj_per_byte == pytest.approx(
        kept * largest.energy_pj_per_byte + (1 - kept) * dram_energy
    )
    # the boundary: weights filling 85 % of the innermost level (L1) stay in it, 95 % go
    # to the next one out (L2: half L1's bandwidth here)
    inner, next_out = sorted(cold.on_chip("weights"), key=lambda m: m.size_bytes)[:2]
    assert inner.bandwidth_bytes_per_cycle != next_out.bandwidth_bytes_per_cycle

    def read_bandwidth(share: float) -> float:
        outputs = int(share * inner.size_bytes) // 64
        seen = warm_profile(warm, [Linear(name="fc", in_features=64, out_features=outputs)])
        return next(m for m in seen.memory if m.off_chip).bandwidth_bytes_per_cycle

    assert read_bandwidth(WARM_SHARE - 0.05) == inner.bandwidth_bytes_per_cycle
    assert read_bandwidth(WARM_SHARE + 0.05) == next_out.bandwidth_bytes_per_cycle
    # a layer that streams its weights is faster for the share the cache keeps, never
    # faster than all of them from the cache
    beyond = hwsim.simulate_layer(huge, warm, engine=engine).total_cycles
    assert beyond <= hwsim.simulate_layer(huge, cold, engine=engine).total_cycles

    # a home level slower than the off-chip one (a measured host's fitted steady-state
    # stream, below what a copy through DRAM runs at) is still what the weights come at
    slow_home = replace(
        warm,
        memory=tuple(
            replace(m, bandwidth_bytes_per_cycle=0.5 * was) if m.name == home.name else m
            for m in warm.memory
        ),
    )
    seen = warm_profile(slow_home, [small])
    assert next(m for m in seen.memory if m.off_chip).bandwidth_bytes_per_cycle == 0.5 * was


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_grouped_conv_runs_the_generic_path_once_per_group(engine):
    """An integer grouped (not depthwise) conv pays the per-pixel gather and the generic
    path's extra in every group: ONNX Runtime runs one im2col GEMM per group."""
    from math import ceil

    cpu = load_profile("cpu-x86-avx2")
    bare = _with(
        cpu,
        conv_cycles_per_pixel=0.0,
        unaligned_conv_cycles_per_pixel=0.0,
        conv_cycles_per_image=0.0,
    )
    costly = _with(bare, conv_cycles_per_pixel=15.0, unaligned_conv_cycles_per_pixel=40.0)
    grouped = Conv2d(
        name="g", in_h=28, in_w=28, in_c=128, out_c=128, k_h=3, k_w=3, out_h=28, out_w=28, groups=4
    )
    extra = (
        hwsim.simulate_layer(grouped, costly, engine=engine).compute_cycles
        - hwsim.simulate_layer(grouped, bare, engine=engine).compute_cycles
    )
    assert extra == 4 * ceil((15.0 + 40.0) * 28 * 28 - 1e-9)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_integer_gemms_off_the_direct_conv_kernel_run_the_gemm_library_rate(make_target, engine):
    """``gemm_library_speedup``: Gemm/MatMul layers and generic-path convs (ONNX Runtime's
    MlasGemm, AMX on a CPU with AMX-INT8) run at that multiple of the direct conv kernel's
    MAC rate; direct-kernel convs and float layers keep theirs."""
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = _with(
        make_target(kind="vector", rows=1, cols=32, dataflow="vector", precisions=modes),
        conv_channel_multiple=4,
        conv_min_out_channels=16,
    )
    fast = _with(base, gemm_library_speedup=4.0)

    def compute(layer, profile) -> int:
        return hwsim.simulate_layer(layer, profile, engine=engine).compute_cycles

    fc = Linear(name="fc", in_features=256, out_features=256, tokens=64)
    assert compute(fc, fast) == pytest.approx(compute(fc, base) / 4, abs=1)
    generic = _conv(16, 12)  # 12 outputs: fewer than the direct kernel's minimum
    assert compute(generic, fast) == pytest.approx(compute(generic, base) / 4, abs=1)
    direct = _conv(16, 16)
    assert compute(direct, fast) == compute(direct, base)
    float_fc = fc.with_compression(Compression(w_bits=None, a_bits=None))
    assert compute(float_fc, fast) == compute(float_fc, base)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_weights_streamed_from_a_single_buffered_cache_add_to_compute(engine):
    """A host profile whose largest cache is not double-buffered (what ``lowbit
    calibrate-host`` fits when the kernels do not hide reading weights that overflow L2):
    a layer whose weights stream from it costs its compute plus the read, where a
    double-buffered cache hides the read behind the compute."""
    data = load_profile_data("cpu-x86-avx2")
    data["overheads"] = {"warm_cache": True}
    for m in data["memory"]:
        if m["name"] == "l3":
            m["double_buffered"] = True
    hidden = profile_from_dict(data, source="test")
    for m in data["memory"]:
        if m["name"] == "l3":
            m["double_buffered"] = False
    exposed = profile_from_dict(data, source="test")
    conv = Conv2d(
        name="c", in_h=4, in_w=4, in_c=512, out_c=512, k_h=3, k_w=3, out_h=4, out_w=4
    )  # 2.4 MB of int8 weights: beyond L2, within half of L3
    a = hwsim.simulate(Workload("w", (conv,)), hidden, engine=engine).layers[0]
    b = hwsim.simulate(Workload("w", (conv,)), exposed, engine=engine).layers[0]
    assert a.dma_cycles == b.dma_cycles > 0
    assert a.total_cycles < a.compute_cycles + a.dma_cycles
    assert b.total_cycles >= b.compute_cycles + b.dma_cycles


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_product_of_two_activations_runs_its_own_rate_and_pays_per_head(make_target, engine):
    """``activation_gemm_speedup`` and ``activation_gemm_cycles``: an integer attention
    MatMul (both operands activations: ONNX Runtime's QLinearMatMul packs the second at
    every call) runs at its own multiple of the direct kernel's rate and pays a fixed cost
    per head; a Linear layer keeps the GEMM library's rate and pays neither."""
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    base = _with(
        make_target(kind="vector", rows=1, cols=32, dataflow="vector", precisions=modes),
        gemm_library_speedup=2.0,
    )
    slow = _with(base, activation_gemm_speedup=0.25, activation_gemm_cycles=500)
    attention = MatMul(name="qk", M=64, N=64, K=32, heads=4)
    fc = Linear(name="fc", in_features=256, out_features=256, tokens=64)

    def layer(lay, profile):
        return hwsim.simulate_layer(lay, profile, engine=engine)

    # its own rate, not the library's: 0.25x the direct kernel's (4x its cycles)
    assert layer(attention, slow).compute_cycles == pytest.approx(
        4 * layer(attention, base).compute_cycles, rel=0.01
    )
    assert (
        layer(attention, slow).overhead_cycles - layer(attention, base).overhead_cycles == 4 * 500
    )
    assert layer(fc, slow).total_cycles == layer(fc, base).total_cycles
    floating = attention.with_compression(Compression(w_bits=None, a_bits=None))
    assert layer(floating, slow).total_cycles == layer(floating, base).total_cycles
