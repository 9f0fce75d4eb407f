"""One layer on one target: precision, sparsity, tiling, energy and the profile's cost rules
(:mod:`lowbit.hwsim._cost_rules`, applied at their hooks) -> :class:`LayerResult`.

Both engines call :func:`evaluate`; they differ only in the ``timer`` that turns the layer's
tile schedule into cycles (closed form or SimPy). Formulas are listed in
:mod:`lowbit.hwsim.engines._base`.
"""

from __future__ import annotations

from collections.abc import Callable
from math import ceil

from .._cost_rule_base import GemmCall, LayerCall, RunShape
from .._cost_rules import RuleSet
from ..profile import Precision
from ..result import LayerResult
from ..workload import (
    FLOAT_ONLY_KINDS,
    FLOAT_PASS_KINDS,
    MOVEMENT_KINDS,
    Conv2d,
    Elementwise,
    Gemm,
    Layer,
)
from ._gemm_plan import GemmPlan
from ._plan import plan_gemm
from ._schedule import Block, Tile, closed_form
from ._target import GemmWork, Target

__all__ = ["evaluate", "keeps_output", "output_bytes", "Timer"]

#: turns a layer's tile schedule into cycles
Timer = Callable[[Block], float]


def _bytes(bits: int) -> float:
    """Bytes per element: bits / 8 (float layers: bits = 32 -> 4 bytes)."""
    return bits / 8.0


def _float_side(layer: Layer) -> float:
    """Bytes a quantizer's float side adds to its codes' (stored at its a_bits): a
    ``quantize`` reads floats, a ``dequantize`` writes them (4 bytes an element). A 3.2 MB
    float output dequantized from 0.8 MB of codes overflows a 2 MB L2 where the codes alone
    do not (ONNX Runtime on an Intel Xeon: 143 us where the per-element cost gives 100)."""
    side = {"quantize": 0, "dequantize": 1}.get(getattr(layer, "kind", None))
    if side is None:
        return 0.0
    elements = layer.memory_elements()[side]
    return elements * max(_bytes(32) - _bytes(layer.compression.a_storage_bits), 0.0)


def _ifmap_elements(layer: Layer, g: Gemm) -> int:
    """Input elements of one instance of the layer's first GEMM: a convolution reads its
    ifmap (in_h·in_w·channels), or the im2col rows when fewer (a strided 1×1 conv skips
    pixels); every other GEMM reads its M×K operand."""
    mk = g.M * g.K
    if isinstance(layer, Conv2d):
        channels = g.K // (layer.k_h * layer.k_w)
        return min(mk, layer.batch * layer.in_h * layer.in_w * channels)
    return mk


def _work(t: Target, layer: Layer, g: Gemm, mode: Precision, first: bool, in_chip: bool):
    """GemmWork of ``g`` plus its effective (executed) MACs per instance."""
    prof = t.profile
    sp = prof.sparsity
    if g.weights_are_activations:
        w_bits, compute_frac, stored_frac = g.a_bits, 1.0, 1.0
    else:
        w_bits = g.w_bits if prof.weight_storage == "packed" else mode.w_bits
        nm_frac = g.nm[0] / g.nm[1] if g.nm else 1.0
        if sp.zero_skipping:  # skips every zero weight (N:M ones too), stores them compressed
            compute_frac = stored_frac = g.weight_density
        elif g.nm and g.nm in sp.nm_patterns:  # structured-sparse unit: n of every m
            compute_frac = stored_frac = nm_frac
        else:  # a dense target computes and stores the zeros
            compute_frac = stored_frac = 1.0
    wb = _bytes(w_bits)
    if stored_frac < 1.0:
        wb = min(wb, stored_frac * (w_bits + sp.index_bits_per_nonzero) / 8.0)
    wc = prof.weight_compression
    if wc is not None and not g.weights_are_activations:  # weight_storage = "compressed"
        wb = wc.stored_bits(w_bits=g.w_bits, density=g.weight_density) / 8.0
        wb += wc.bytes_per_output_channel / g.K
    k_eff = max(1, ceil(g.K * compute_frac - 1e-9))
    call = GemmCall(layer, g, mode, first, k_eff, compute_frac)
    rules = t.rules
    cycles = next((c for r in rules.kernel if (c := r.own_kernel(call)) is not None), None)
    if cycles is None:
        cycles = _gemm_cycles(t, call)
    ab = _bytes(g.a_bits)
    in_el = _ifmap_elements(layer, g) if first else g.M * g.K
    ib = in_el * ab / (g.M * g.K)
    role = "inputs" if g.weights_are_activations else "weights"
    work = GemmWork(g.count, g.M, g.N, g.K, cycles, wb, ib, ab, role, in_chip, False)
    return work, k_eff


def _gemm_cycles(t: Target, call: GemmCall) -> int:
    """Compute cycles of one instance of a GEMM on the mapping, in the shape its kernel runs
    and with what the profile's cost rules add (:mod:`lowbit.hwsim._cost_rules`)."""
    rules, g = t.rules, call.gemm
    shape = next((s for r in rules.shape if (s := r.run_shape(call)) is not None), None)
    if shape is None:
        shape = RunShape(g.N, call.k_eff, call.in_channels)
    n = next((b for r in rules.block if (b := r.blocked_outputs(call, shape=shape))), shape.n)
    cycles = t.mapping.cycles(g.M, n, shape.k, call.mode.macs_per_pe_per_cycle)
    for rule in rules.adjust:
        cycles = rule.adjust_cycles(call, shape=shape, cycles=cycles)
    if rules.conv and call.conv:
        per_pixel = per_image = 0.0
        for rule in rules.conv:
            pixel, image = rule.conv_rates(call, shape=shape)
            per_pixel += pixel
            per_image += image
        cycles += ceil(per_pixel * g.M + per_image * call.layer.batch - 1e-9)
    return cycles


def _fits_on_chip(t: Target, nbytes: float) -> bool:
    """An activation stays on chip, for the next layer to read in place, when it fits the
    active part of both the outputs' home and the inputs' home: the same level when shared
    (a CPU cache, a unified buffer), or dedicated ifmap/ofmap buffers that swap roles."""
    return 0 < nbytes <= t.capacity("outputs") and nbytes <= t.capacity("inputs")


def output_bytes(layer: Layer, gemms: tuple[Gemm, ...] | None = None) -> float:
    """Bytes of the layer's output, stored at the layer's a_bits (the next layer reads it);
    ``gemms``: the layer's GEMMs if already at hand."""
    gemms = layer.gemms() if gemms is None else gemms
    if gemms:
        g = gemms[-1]
        return g.count * g.M * g.N * _bytes(g.a_bits)
    return layer.memory_elements()[1] * _bytes(layer.compression.a_storage_bits)


def _input_bytes(layer: Layer, gemms: tuple[Gemm, ...]) -> float:
    """Bytes of the layer's activation inputs, at its a_bits: the first GEMM's ifmap (and a
    product of two activations' second operand), or a memory-only layer's inputs."""
    if gemms:
        g = gemms[0]
        nbytes = g.count * _ifmap_elements(layer, g) * _bytes(g.a_bits)
        if g.weights_are_activations:
            nbytes += g.count * g.N * g.K * _bytes(g.a_bits)
        return nbytes
    return layer.memory_elements()[0] * _bytes(layer.compression.a_storage_bits)


def keeps_output(t: Target, layer: Layer, gemms: tuple[Gemm, ...] | None = None) -> bool:
    """Does ``layer`` leave its output on chip (no write-back; the next layer reads it)?"""
    return _fits_on_chip(t, output_bytes(layer, gemms))


def _peak(t: Target, w_bits: int, a_bits: int) -> float:
    key = (w_bits, a_bits)
    peak = t.peak_cache.get(key)
    if peak is None:
        peak = t.peak_cache[key] = t.profile.compute.peak_macs_per_cycle(w_bits, a_bits)
    return peak


def evaluate(layer: Layer, t: Target, *, input_on_chip: bool, timer: Timer | None) -> LayerResult:
    """Simulate ``layer`` on ``t``; ``timer=None`` times the schedule in closed form."""
    prof = t.profile
    kind = getattr(layer, "kind", "")
    rules = t.rules
    integer = layer.compression.a_storage_bits <= 8
    if kind in MOVEMENT_KINDS and _element_rate(rules, kind, integer=integer) == 0:
        return _in_place(layer, input_on_chip)
    if kind in FLOAT_ONLY_KINDS and integer:
        return _in_place(layer, input_on_chip)
    gemms = layer.gemms()
    zero = (0.0,) * len(t.bandwidth)
    output_on_chip = keeps_output(t, layer, gemms)
    reads = {"weights": 0.0, "inputs": 0.0}
    write = mac_pj = onchip_pj = 0.0
    compute = eff_macs = tiles = 0
    plans: list[GemmPlan] = []
    if gemms:
        w_bits, a_bits = gemms[0].w_bits, gemms[0].a_bits
        peak = _peak(t, w_bits, a_bits)
        modes = tuple(t.mode(g.w_bits, g.a_bits) for g in gemms)
        works = []
        in_chip = input_on_chip
        last = len(gemms) - 1
        for i, (g, mode) in enumerate(zip(gemms, modes, strict=True)):
            work, k_eff = _work(t, layer, g, mode, i == 0, in_chip)
            works.append((g, mode, work, k_eff))
            # a low-rank factor passes its output to the next factor on chip if it fits
            in_chip = _fits_on_chip(t, g.count * g.M * g.N * work.ob)
            work.out_chip = output_on_chip if i == last else in_chip
        for g, mode, work, k_eff in works:
            plan = plan_gemm(t, work)
            plans.append(plan)
            tiles += plan.tiles
            compute += g.count * work.cycles
            executed = g.count * g.M * g.N * k_eff
            eff_macs += executed
            mac_pj += executed * mode.energy_pj_per_mac
            reads[work.w_role] += plan.w_bytes
            reads["inputs"] += plan.i_bytes
            write += plan.o_bytes
            onchip_pj += _onchip_pj(t, g, work, k_eff, plan)
        schedule = (
            plans[0].schedule if len(plans) == 1 else Block(1, tuple(p.schedule for p in plans))
        )
    else:
        modes = ()
        w_bits, a_bits = layer.compression.w_storage_bits, layer.compression.a_storage_bits
        try:
            peak = _peak(t, w_bits, a_bits)
        except ValueError:  # a memory-only layer never runs on the MAC array
            peak = 0.0
        ab = _bytes(a_bits)
        # the operator's own work (a CPU's LayerNorm, GELU...), overlapped with its traffic
        if kind:
            per_element = _element_rate(rules, kind, integer=integer)
            elements = layer.cost_elements
            for rule in rules.count:
                elements = rule.element_count(layer, elements)
            rows = getattr(layer, "rows", 0)
            per_row = sum(r.row_rate(kind, integer=integer) for r in rules.row) if rows else 0.0
            compute = ceil(elements * per_element + rows * per_row - 1e-9)
        n_read, n_write = layer.memory_elements()
        if input_on_chip:
            n_read -= layer.elements if isinstance(layer, Elementwise) else n_read
        reads["inputs"] = n_read * ab
        write = 0.0 if output_on_chip else n_write * ab
        vec = {}
        for role, nbytes in (("inputs", reads["inputs"]), ("outputs", write)):
            port = t.port_of[role]
            v = tuple(nbytes / t.bandwidth[port] if j == port else 0.0 for j in range(len(zero)))
            vec[role] = (v, zero) if t.double[role] else (zero, v)
        (ld, ls), (sd, ss) = vec["inputs"], vec["outputs"]
        schedule = Block(1, (Tile(float(t.tile_cycles), ld, sd, ls, ss),))
        tiles = 1
        in_pj, out_pj = t.home_pj.get("inputs", 0.0), t.home_pj.get("outputs", 0.0)
        onchip_pj = reads["inputs"] * in_pj + write * out_pj
    # activations that overflow the kernels' cache: at least their traffic (not a pass a
    # float kernel makes over each output block while it is still in cache: ReLU6's)
    if rules.traffic and kind not in FLOAT_PASS_KINDS:
        moved = _input_bytes(layer, gemms) + output_bytes(layer, gemms) + _float_side(layer)
        floor = max(rule.traffic_cycles(moved) for rule in rules.traffic)
        compute = max(compute, ceil(floor - 1e-9))
    if timer is not None:
        body = timer(schedule)
    elif len(plans) == 1:
        body = plans[0].cycles  # already summed when the plan was chosen
    else:
        body = closed_form(schedule)
    busy = [0.0] * len(zero)
    for role, nbytes in (*reads.items(), ("outputs", write)):
        port = t.port_of[role]
        busy[port] += nbytes / t.bandwidth[port]
    dma = max(busy)
    # per-layer cost, what the cost rules add once per layer (kernel launches, extra
    # operators), plus each tile's handshake (inside the schedule's compute steps)
    tile_overhead = tiles * t.tile_cycles
    # (a pass inside another operator, a fused activation's, is not dispatched on its own)
    fixed = 0 if kind in FLOAT_PASS_KINDS else prof.overheads.layer_cycles
    if rules.fixed:
        call = LayerCall(layer, gemms, modes, prof.overheads.layer_cycles)
        fixed += sum(rule.fixed_cycles(call) for rule in rules.fixed)
    overhead = fixed + tile_overhead
    body_cycles = max(compute + tile_overhead, ceil(body - 1e-6))
    total = body_cycles + fixed
    offchip_pj = 0.0
    for role, nbytes in (*reads.items(), ("outputs", write)):
        offchip_pj += nbytes * t.ports[t.port_of[role]].energy_pj_per_byte
    energy_j = (mac_pj + offchip_pj + onchip_pj) * 1e-12 + prof.static_power_w * total / (
        prof.clock_hz
    )
    shares = (("compute", compute), ("memory", dma), ("overhead", overhead))
    bound = max(shares, key=lambda s: s[1])[0]
    util = eff_macs / (peak * total) if peak > 0 and total > 0 else 0.0
    return LayerResult(
        name=layer.name,
        op=layer.op,
        macs=layer.macs,
        w_bits=w_bits,
        a_bits=a_bits,
        compute_cycles=compute,
        stall_cycles=body_cycles - compute - tile_overhead,
        overhead_cycles=overhead,
        total_cycles=total,
        dram_read_bytes=ceil(reads["weights"] + reads["inputs"] - 1e-9),
        dram_write_bytes=ceil(write - 1e-9),
        peak_macs_per_cycle=peak,
        dram_bytes_per_cycle=sum(t.bandwidth),
        utilization=util,
        bound=bound,
        energy_j=energy_j,
        effective_macs=eff_macs,
        dram_read_bytes_by_operand=(
            ("weights", ceil(reads["weights"] - 1e-9)),
            ("inputs", ceil(reads["inputs"] - 1e-9)),
        ),
        dma_cycles=ceil(dma - 1e-6),
        input_on_chip=input_on_chip,
        output_on_chip=output_on_chip,
    )


def _element_rate(rules: RuleSet, kind: str, *, integer: bool) -> float:
    """Cycles per element of a memory-only layer of ``kind`` (the cost rules' sum)."""
    rate = 0.0
    for rule in rules.rate:
        rate += rule.element_rate(kind, integer=integer)
    return rate


def _in_place(layer: Layer, input_on_chip: bool) -> LayerResult:
    """A data-movement layer the target addresses in place (``MOVEMENT_KINDS``): no
    cycles, no traffic; the next layer finds its input where this one found it."""
    c = layer.compression
    return LayerResult(
        name=layer.name,
        op=layer.op,
        macs=0,
        w_bits=c.w_storage_bits,
        a_bits=c.a_storage_bits,
        compute_cycles=0,
        stall_cycles=0,
        overhead_cycles=0,
        total_cycles=0,
        dram_read_bytes=0,
        dram_write_bytes=0,
        peak_macs_per_cycle=0.0,
        dram_bytes_per_cycle=0.0,
        utilization=0.0,
        bound="memory",
        energy_j=0.0,
        input_on_chip=input_on_chip,
        output_on_chip=input_on_chip,
    )


def _onchip_pj(t: Target, g: Gemm, work: GemmWork, k_eff: int, plan: GemmPlan) -> float:
    """On-chip energy: the array's buffer reads (each element once per use the dataflow
    makes, :meth:`Mapping.onchip_reads`), plus filling the home levels with what came from
    off chip and draining outputs to it."""
    w_el, i_el, o_el = t.mapping.onchip_reads(g.M, g.N, k_eff)
    role = work.w_role
    pj = g.count * (
        w_el * work.wb * t.inner_pj.get(role, 0.0)
        + i_el * work.ib * t.inner_pj.get("inputs", 0.0)
        + o_el * work.ob * t.inner_pj.get("outputs", 0.0)
    )
    pj += plan.w_bytes * t.home_pj.get(role, 0.0) + plan.i_bytes * t.home_pj.get("inputs", 0.0)
    pj += plan.o_bytes * t.home_pj.get("outputs", 0.0)
    return pj
