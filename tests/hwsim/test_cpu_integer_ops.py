"""A CPU's integer kernels beside its GEMMs: the generic conv path's int32 output pass
(``unaligned_conv_cycles_per_output``) and the integer element-wise kernels (``add_int8``,
``mul_int8``: ONNX Runtime's QLinearAdd / QLinearMul)."""

from __future__ import annotations

from dataclasses import replace
from math import ceil

import pytest

from lowbit import hwsim
from lowbit.hwsim.profiles import load_profile
from lowbit.hwsim.workload import Compression, Conv2d, Elementwise

INT8 = Compression(w_bits=8, a_bits=8)


def _with(profile, **overheads):
    return replace(profile, overheads=replace(profile.overheads, **overheads))


def _cpu():
    """The built-in x86 CPU with ONNX Runtime's direct-kernel alignment (4, >= 16 outputs)
    and no other conv costs, so that a difference is the rule under test."""
    return _with(
        load_profile("cpu-x86-avx2"),
        conv_channel_multiple=4,
        conv_min_out_channels=16,
        conv_cycles_per_pixel=0.0,
        conv_cycles_per_image=0.0,
        unaligned_conv_cycles_per_pixel=0.0,
        requant_cycles_per_output=0.0,
    )


def _conv(
    in_c: int,
    out_c: int,
    *,
    groups: int = 1,
    size: int = 8,
    compression: Compression = INT8,
    weight_storage: str = "",
) -> Conv2d:
    return Conv2d(
        name="c",
        compression=compression,
        weight_storage=weight_storage,
        in_h=size,
        in_w=size,
        in_c=in_c,
        out_c=out_c,
        k_h=3,
        k_w=3,
        out_h=size,
        out_w=size,
        groups=groups,
    )


def _extra_cycles(layer: Conv2d, *, costly, bare, engine: str) -> int:
    """Compute cycles ``layer`` costs on ``costly`` beyond what it costs on ``bare``."""
    return (
        hwsim.simulate_layer(layer, costly, engine=engine).compute_cycles
        - hwsim.simulate_layer(layer, bare, engine=engine).compute_cycles
    )


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_the_generic_path_pays_its_int32_pass_per_output_element(engine):
    """An unaligned or grouped integer conv costs ``unaligned_conv_cycles_per_output`` per
    output element (pixels x output channels, all groups together); a conv that the direct
    kernel takes pays nothing."""
    bare = _cpu()
    costly = _with(bare, unaligned_conv_cycles_per_output=0.5)

    def extra(layer: Conv2d) -> int:
        return _extra_cycles(layer, costly=costly, bare=bare, engine=engine)

    for in_c, out_c in ((16, 16), (4, 16), (16, 64)):  # the direct kernel
        assert extra(_conv(in_c, out_c)) == 0
    for in_c, out_c in ((1, 4), (1, 64), (6, 32), (16, 12)):  # the generic path
        assert extra(_conv(in_c, out_c)) == ceil(0.5 * 64 * out_c - 1e-9)
    # a stem with 64 outputs pays 16x what one with 4 does: the pass is per output element
    assert extra(_conv(1, 64)) == 16 * extra(_conv(1, 4))
    # grouped, not depthwise: the generic path once per group, 32 outputs each
    grouped = _conv(128, 128, groups=4, size=28)
    assert extra(grouped) == 4 * ceil(0.5 * 28 * 28 * 32 - 1e-9)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_uint8_weights_take_the_generic_path_at_their_own_rate(engine):
    """The direct kernel takes int8 weights only: a conv stored as uint8 runs the generic
    path whatever its channels -- stored so by its ONNX graph (``weight_storage``), or by
    the deployment's choice for its bit width (``u8_weight_bits``) -- at
    ``u8_gemm_library_speedup`` when that is fitted."""
    bare = _cpu()
    costly = _with(bare, unaligned_conv_cycles_per_output=0.5)

    def extra(layer: Conv2d, profile=costly) -> int:
        # the same storage rule on both sides: what differs is the generic path's int32 pass
        same_rule = _with(bare, u8_weight_bits=profile.overheads.u8_weight_bits)
        return _extra_cycles(layer, costly=profile, bare=same_rule, engine=engine)

    generic = ceil(0.5 * 64 * 16 - 1e-9)
    assert extra(_conv(16, 16, weight_storage="s8")) == 0
    assert extra(_conv(16, 16, weight_storage="u8")) == generic
    # storage left to the deployment: uint8 from u8_weight_bits on (0: never)
    assert extra(_conv(16, 16)) == 0
    deploys_u8 = _with(costly, u8_weight_bits=8)
    assert extra(_conv(16, 16), deploys_u8) == generic
    w6 = Compression(w_bits=6, a_bits=8)
    assert extra(_conv(16, 16, compression=w6), deploys_u8) == 0
    # an imported conv's own storage wins over the deployment's rule
    assert extra(_conv(16, 16, weight_storage="s8"), deploys_u8) == 0

    # the u8·u8 library's rate: a uint8 conv's GEMM only
    def compute(layer: Conv2d, profile) -> int:
        return hwsim.simulate_layer(layer, profile, engine=engine).compute_cycles

    base = _with(bare, gemm_library_speedup=2.0)
    slow = _with(base, u8_gemm_library_speedup=0.5)
    u8, s8 = _conv(16, 16, weight_storage="u8"), _conv(16, 16, weight_storage="s8")
    assert compute(s8, slow) == compute(s8, base)
    assert compute(u8, slow) > compute(u8, base)
    with pytest.raises(ValueError, match="weight_storage"):
        _conv(16, 16, weight_storage="int8")


def test_the_generic_paths_output_pass_is_a_schema_key():
    from lowbit.hwsim.profiles import load_profile_data, profile_from_dict

    data = load_profile_data("cpu-x86-avx2")
    data["overheads"]["unaligned_conv_cycles_per_output"] = 0.28
    profile = profile_from_dict(data, source="test")
    assert profile.overheads.unaligned_conv_cycles_per_output == 0.28
    data["overheads"]["unaligned_conv_cycles_per_output"] = -1.0
    with pytest.raises(Exception, match="unaligned_conv_cycles_per_output"):
        profile_from_dict(data, source="test")


@pytest.mark.parametrize("kind", ["add", "mul"])
def test_integer_adds_and_muls_take_their_own_rate(kind):
    """An 8-bit add / mul layer is costed at ``<kind>_int8`` per element (ONNX Runtime's
    QLinearAdd / QLinearMul), a float one at ``<kind>``; without ``<kind>_int8`` the 8-bit
    layer falls back to ``<kind>``."""
    cpu = load_profile("cpu-x86-avx2")
    elements = 1 << 16
    rates = {kind: 1.2, f"{kind}_int8": 0.36}
    priced = _with(cpu, elementwise_cycles_per_element=tuple(sorted(rates.items())))
    fallback = _with(cpu, elementwise_cycles_per_element=((kind, 1.2),))

    def compute(profile, bits) -> int:
        layer = Elementwise(
            name=kind,
            elements=elements,
            kind=kind,
            compression=Compression(w_bits=bits, a_bits=bits),
        )
        return hwsim.simulate_layer(layer, profile).compute_cycles

    assert compute(priced, 8) == ceil(0.36 * elements - 1e-9)
    assert compute(priced, None) == ceil(1.2 * elements - 1e-9)
    assert compute(fallback, 8) == compute(fallback, None) == ceil(1.2 * elements - 1e-9)


def test_im2col_copies_a_window_row_at_once_unless_the_conv_is_grouped():
    """ONNX Runtime's NHWC im2col: one copy per window row when a group covers every input
    channel (its k_w taps are contiguous), one per tap in a grouped conv, none for 1x1."""
    from lowbit.hwsim._cost_rules import im2col_copies

    assert im2col_copies(_conv(16, 12)) == 3
    assert im2col_copies(_conv(128, 128, groups=4)) == 9
    stem = Conv2d(name="s", in_h=8, in_w=8, in_c=3, out_c=64, k_h=7, k_w=7, out_h=8, out_w=8)
    assert im2col_copies(stem) == 7
    pointwise = Conv2d(name="p", in_h=8, in_w=8, in_c=6, out_c=16, k_h=1, k_w=1, out_h=8, out_w=8)
    assert im2col_copies(pointwise) == 0
    strided = Conv2d(
        name="d", in_h=8, in_w=8, in_c=6, out_c=16, k_h=1, k_w=1, stride=2, out_h=4, out_w=4
    )
    assert im2col_copies(strided) == 1  # every other pixel's channels gathered


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_strided_pointwise_conv_gathers_its_pixels(engine):
    """ONNX Runtime reads a 1x1 stride-1 conv's input in place, but gathers a strided one's
    pixels (its indirection buffer), as a 3x3 conv's: ``conv_cycles_per_pixel`` per output
    pixel and ``conv_cycles_per_image`` per image for the strided one only."""
    bare = _with(_cpu(), conv_cycles_per_pixel=0.0, conv_cycles_per_image=0.0)
    gathers = _with(bare, conv_cycles_per_pixel=28.0, conv_cycles_per_image=110.0)

    def extra(stride: int) -> int:
        size = 28 // stride
        layer = Conv2d(
            name="d", in_h=28, in_w=28, in_c=32, out_c=64, k_h=1, k_w=1, stride=stride,
            out_h=size, out_w=size,
        )  # fmt: skip
        run = [hwsim.simulate_layer(layer, p, engine=engine).total_cycles for p in (gathers, bare)]
        return run[0] - run[1]

    assert extra(1) == 0
    assert extra(2) == pytest.approx(28 * 14 * 14 + 110, abs=2)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_grouped_conv_pays_a_copy_per_window_tap_and_group(engine):
    """With ``im2col_copy_cycles`` a generic conv pays its copies per output pixel (and per
    group): a 3x3 grouped conv with 4 groups 4 x 9, an unaligned ungrouped one 3; the direct
    kernel none."""
    bare = _cpu()
    costly = _with(bare, im2col_copy_cycles=8.0)

    def extra(layer: Conv2d) -> int:
        return _extra_cycles(layer, costly=costly, bare=bare, engine=engine)

    assert extra(_conv(16, 16)) == 0  # the direct kernel gathers its window otherwise
    assert extra(_conv(16, 12)) == ceil(8.0 * 3 * 64 - 1e-9)
    assert extra(_conv(128, 128, groups=4, size=28)) == 4 * ceil(8.0 * 9 * 28 * 28 - 1e-9)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_float_graph_pays_its_own_run_call(engine):
    """``float_run_cycles`` replaces ``run_cycles`` for a workload with no layer on 8-bit or
    narrower activations (no input quantization, output dequantization or layout change in
    its Run call); an integer workload keeps ``run_cycles``; 0 means ``run_cycles``."""
    from lowbit.hwsim.workload import Workload

    cpu = _with(_cpu(), run_cycles=10_000, float_run_cycles=6_000)
    layers = (replace(_conv(16, 16), name="a"), replace(_conv(16, 32), name="b"))
    integer = Workload("int8", layers)
    wide = integer.with_compression(
        {layer.name: Compression(w_bits=None, a_bits=None) for layer in layers}
    )

    def run(workload, profile) -> int:
        return hwsim.simulate(workload, profile, engine=engine).run_cycles

    assert run(integer, cpu) == 10_000
    assert run(wide, cpu) == 6_000
    assert run(wide, _with(cpu, float_run_cycles=0)) == 10_000


def test_a_row_by_row_layer_pays_per_row_on_top_of_its_elements():
    """``elementwise_cycles_per_row``: a LayerNorm or softmax with ``rows`` pays each row on
    top of its elements (short rows cost more per element than long ones); a layer with no
    rows pays none; on 8-bit activations the key that prices the elements prices the rows
    -- ``softmax_int8`` (an integer kernel's rows are its own) or, for a kind with no integer
    kernel (LayerNorm: float between its Q/DQ), the float one."""
    cpu = load_profile("cpu-x86-avx2")
    per_element = (("layernorm", 1.5), ("softmax", 0.5), ("softmax_int8", 3.0))
    per_row = (("layernorm", 75.0), ("softmax", 40.0))
    priced = _with(
        cpu, elementwise_cycles_per_element=per_element, elementwise_cycles_per_row=per_row
    )

    def compute(kind, *, rows, bits=None, elements=8192, profile=priced) -> int:
        layer = Elementwise(
            name=kind,
            elements=elements,
            kind=kind,
            rows=rows,
            compression=Compression(w_bits=bits, a_bits=bits),
        )
        return hwsim.simulate_layer(layer, profile).compute_cycles

    assert compute("layernorm", rows=64) == 8192 * 1.5 + 64 * 75
    assert compute("layernorm", rows=0) == 8192 * 1.5  # rows not known: none paid
    # the same elements in rows 4x as short: 4x the rows' cost
    assert compute("layernorm", rows=256) - compute("layernorm", rows=64) == (256 - 64) * 75
    assert compute("layernorm", rows=64, bits=8) == compute("layernorm", rows=64)  # float kernel
    assert compute("softmax", rows=256) == 8192 * 0.5 + 256 * 40
    assert compute("softmax", rows=256, bits=8) == 8192 * 3.0  # its own kernel, no float rows
    # a profile without the table: what it cost before
    assert compute("layernorm", rows=64, profile=_with(priced, elementwise_cycles_per_row=())) == (
        8192 * 1.5
    )
    with pytest.raises(ValueError, match="rows 9000 must be between 0 and its 8192"):
        compute("layernorm", rows=9000)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_activations_that_overflow_the_cache_take_at_least_their_traffic(engine):
    """``activation_cache_bytes`` / ``activation_spill_bytes_per_cycle``: a layer whose
    inputs and output together overflow the kernels' cache takes at least their bytes at
    the spill rate (compute and traffic overlap); one that fits is unchanged."""
    cpu = _with(
        load_profile("cpu-x86-avx2"),
        elementwise_cycles_per_element=(("reorder_input", 0.4),),
    )
    spill = _with(cpu, activation_cache_bytes=2 * 2**20, activation_spill_bytes_per_cycle=8.0)
    float32 = Compression(w_bits=None, a_bits=None)

    def reorder(elements: int) -> Elementwise:
        return Elementwise(name="r", elements=elements, kind="reorder_input", compression=float32)

    small, big = reorder(200_000), reorder(450_000)  # 1.6 MB and 3.6 MB in and out
    for layer in (small, big):
        base = hwsim.simulate_layer(layer, cpu, engine=engine)
        assert base.compute_cycles == ceil(0.4 * layer.elements - 1e-9)
    assert hwsim.simulate_layer(small, spill, engine=engine).compute_cycles == ceil(0.4 * 200_000)
    over = hwsim.simulate_layer(big, spill, engine=engine)
    assert over.compute_cycles == ceil(2 * 4 * 450_000 / 8.0 - 1e-9)  # its traffic, not 0.4/el
    assert over.total_cycles > hwsim.simulate_layer(big, cpu, engine=engine).total_cycles
    # a float conv whose 6.4 MB of activations overflow, but which computes for longer
    # than their traffic takes, keeps its compute
    conv = Conv2d(
        name="c", compression=float32, in_h=112, in_w=112, in_c=64, out_c=64, k_h=3, k_w=3,
        out_h=112, out_w=112,
    )  # fmt: skip
    assert (
        hwsim.simulate_layer(conv, spill, engine=engine).compute_cycles
        == hwsim.simulate_layer(conv, cpu, engine=engine).compute_cycles
    )
    # a float kernel's pass over its output blocks while they are in cache (ReLU6's): none
    relu6 = Elementwise(name="p", elements=450_000, kind="activation_pass", compression=float32)
    passes = _with(spill, elementwise_cycles_per_element=(("activation_pass", 0.3),))
    assert hwsim.simulate_layer(relu6, passes, engine=engine).compute_cycles == ceil(0.3 * 450_000)
    # either key at 0 (left out): no floor
    off = _with(spill, activation_spill_bytes_per_cycle=0.0)
    assert hwsim.simulate_layer(big, off, engine=engine).compute_cycles == ceil(0.4 * 450_000)


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_quantizers_float_side_counts_in_its_traffic(engine):
    """A dequantize writes floats and a quantize reads them (4 bytes an element) while its
    codes are one byte: 800,000 elements are 1.6 MB of codes in and out -- within a 2 MB
    cache -- but 4 MB with the float side, which overflows it. A transpose of the same codes
    (a byte on both sides) stays within."""
    cpu = _with(
        load_profile("cpu-x86-avx2"),
        elementwise_cycles_per_element=(("dequantize", 0.4), ("quantize", 0.6), ("transpose", 0.2)),
    )
    spill = _with(cpu, activation_cache_bytes=2 * 2**20, activation_spill_bytes_per_cycle=8.0)
    codes = Compression(w_bits=8, a_bits=8)
    n = 800_000

    def compute(kind: str) -> int:
        layer = Elementwise(name=kind, elements=n, kind=kind, compression=codes)
        return hwsim.simulate_layer(layer, spill, engine=engine).compute_cycles

    traffic = ceil((n + 4 * n) / 8.0 - 1e-9)  # codes one way, floats the other
    assert compute("dequantize") == traffic > ceil(0.4 * n)
    assert compute("quantize") == traffic > ceil(0.6 * n)
    assert compute("transpose") == ceil(0.2 * n)  # 1.6 MB: no floor


def test_a_spill_rate_below_the_physical_floor_is_refused_by_name():
    # 1e-308 bytes per cycle made the floor infinite (a traceback); a rate is at least 1e-3
    from lowbit.hwsim.profiles import load_profile_data, profile_from_dict

    data = load_profile_data("cpu-x86-avx2")
    data["overheads"] |= {"activation_cache_bytes": 1, "activation_spill_bytes_per_cycle": 1e-308}
    with pytest.raises(Exception, match="activation_spill_bytes_per_cycle: must be >= 0.001"):
        profile_from_dict(data, source="test")
