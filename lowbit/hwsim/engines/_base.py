"""The engine contract and the performance model every engine implements.

An engine turns (layer, profile) into a :class:`~lowbit.hwsim.result.LayerResult` and a workload
into a :class:`~lowbit.hwsim.result.SimResult`. Engines share one model and one tile schedule and
differ only in how they compose time: :class:`~lowbit.hwsim.engines.analytic.AnalyticEngine` in
closed form, :class:`~lowbit.hwsim.engines.event.EventEngine` by SimPy simulation of the same
tiles. Invariants every engine must keep (tests/hwsim/test_contract.py checks them on every
built-in profile × workload):

* ``total = compute + stall + overhead`` (all integer cycles, stall >= 0), and
  ``total >= max(effective_macs / peak_macs_per_cycle, off-chip bytes / bandwidth)``;
* a workload's totals are the sums of its layers (cycles: plus ``overheads.run_cycles``,
  once per inference); results are deterministic;
* fewer bits (promoted or native), fewer channels (except into an unaligned convolution
  when a profile prices those, below), more on-chip memory (any level's
  ``size_bytes``) and more off-chip bandwidth never cost a layer cycles: the plan is the
  exact minimum over a candidate set that only grows as bytes shrink or capacity grows,
  and a fixed plan's cycles only fall as its bytes, or the time to move them, do
  (:mod:`lowbit.hwsim.engines._tiling`, :mod:`lowbit.hwsim.engines._plan`);
* ``0 < utilization <= 1`` for compute layers; energy > 0.

The objective is cycles alone. Bytes moved and energy usually fall with the changes above
but are not guaranteed to: fewer bits or more memory can make a plan feasible that is a
few cycles faster and re-fetches an operand more often (a finer pipeline with a shorter
fill), so its DRAM traffic and energy rise. On the built-ins, 109 of the 23,465 pairs of
a layer at consecutive bits along the chains of tests/hwsim/test_contract.py use more
energy at fewer bits (133 move more bytes). Ranking plans by a weighted cost instead
would break the cycles guarantees above; each layer's ``energy_j`` and ``dram_*_bytes``
are reported (``lowbit simulate --json``) so a study can see it.

How a profile is read (hwsim/profile.py describes the target; this is the interpretation):

Compute. ``layer.gemms()`` gives the GEMMs after compression (pruned channels and low-rank
factors are already in their shapes). Each runs in the mode ``compute.resolve(w, a)``
(promoted bits when the target lacks the exact ones) at ``m = macs_per_pe_per_cycle``.
Systolic units use the SCALE-Sim v3 fold model and vector units a lane model, both in
:mod:`lowbit.hwsim.engines.dataflows`; the reported peak is ``compute.peak_macs_per_cycle(w, a)``.
A PE at m operand pairs per cycle computes an m-long dot product, so m shortens the
reduction, ``K' = ceil(K / m)``, wherever the dataflow maps K (BitFusion's fused
multipliers share an adder tree; its own simulator counts ``ceil(K / (rows * m))``
passes); m < 1 (a 16-bit operand at half rate) lengthens it. At m = 1 the fold model is
SCALE-Sim's, exactly.
A GEMM with ``count`` instances (groups, depthwise channels, attention heads) costs
``count × cycles(one instance)``: SCALE-Sim runs a depthwise layer as one layer per
channel and sums them, the ``- 1`` included per instance.

Sparsity. N:M sparsity in ``sparsity.nm_patterns`` shortens the reduction:
``K' = ceil(K·n/m)``, and weights move compressed (n/m of them, each with
``index_bits_per_nonzero`` of metadata). With ``zero_skipping`` every zero is skipped
(``K' = ceil(K·density)``, same compression). Otherwise zeros are computed and stored
(no gain). Compressed storage is used only when smaller than dense. Skipped MACs cost no
energy; ``effective_macs = M·N·K'·count``.

Memory. Bytes = elements × bits / 8; float layers (bits = 32) use 4 bytes. Weights at the
layer's w_bits when ``weight_storage == "packed"``, at the promoted mode's bits when
"promoted". Inputs at a_bits; outputs at a_bits too (the next layer is assumed to read them
at the precision this layer computed with). Attention MatMuls move both operands at a_bits
and keep them where inputs live. A convolution reads its ifmap, not the im2col matrix.
Tiling, reuse and the off-chip traffic rule are in :mod:`lowbit.hwsim.engines._tiling`
(a candidate's schedule and bytes: :mod:`lowbit.hwsim.engines._gemm_plan`).

Between layers. A layer's output stays on chip -- it is not written off chip and the next
layer reads it in place -- when it fits the active part of both the outputs' home level and
the inputs' home level (one level when shared: a CPU cache, a unified buffer; two
dedicated ifmap/ofmap SRAMs that swap roles otherwise). The workload IR is a chain, so a
tensor read again later (the shortcut of a residual add) is counted as an off-chip read.
Factors of a low-rank layer pass their intermediate on chip by the same rule.
``simulate_layer`` on its own reads its input from off chip.

Time. Per layer, the tiles run as in :mod:`lowbit.hwsim.engines._schedule`: transfers into
double-buffered levels overlap compute (prologue + Σ max(compute, DMA) + epilogue),
transfers into single-buffered levels serialize with it. The off-chip port is one
resource for all DMA of the layer (reads and writes); distinct off-chip levels (DRAM and
flash) are distinct ports working in parallel. Each tile's compute is its share of its
GEMM's fold-model cycles by folds (an edge tile holds the array for whole folds; with
m != 1 a tile's K block of ``rows`` is a share of a fold), so the tiles' compute sums to
the fold model exactly; each tile also costs the compute side
``overheads.tile_cycles`` (handshake with the DMA). ``overheads.layer_cycles`` is added to
every layer, memory-only layers (Elementwise, Pool: off-chip reads + writes) too, and
``overheads.gemm_cycles`` once per integer GEMM of the layer (a low-rank layer pays it
twice; a float GEMM does not: it is an integer kernel's requantization and packing setup).
An integer, ungrouped convolution whose channels miss the direct kernel's
(``overheads.conv_channel_multiple``, ``conv_min_out_channels``) computes for
``unaligned_conv_cycles_per_pixel`` more cycles per output pixel (a CPU's im2col path);
every integer, ungrouped convolution with a k×k window (k > 1; a low-rank one's k×k factor)
also pays ``conv_cycles_per_pixel`` per output pixel (the im2col gather, requantization)
and ``conv_cycles_per_image`` per image of the batch. Every integer GEMM pays
``requant_cycles_per_output`` per output element (requantizing its int32 accumulators).
A pool that knows its channels, on a profile with ``overheads.pool_channel_block``, pays
its per-element cost on the channels padded to that block (a SIMD register per pixel).
A memory-only layer whose ``kind`` has a cost in
``overheads.elementwise_cycles_per_element`` computes for ``ceil(elements × cost)`` cycles
(elements: :attr:`~lowbit.hwsim.workload.Elementwise.cost_elements`), overlapped with its
traffic: its body is ``max(compute + tile_cycles, transfer schedule)``.
``overhead = layer_cycles + integer gemms × gemm_cycles + tiles × tile_cycles``; ``stall = total -
compute - overhead``; a workload adds ``overheads.run_cycles`` once to the layers' sum
(``overheads.float_run_cycles`` instead, when given, for a workload with no layer on 8-bit
or narrower activations: a float graph's Run call does not quantize its input, dequantize
its output or change their layout);
``bound`` is the largest of compute cycles, the busiest port's DMA cycles and the overhead.

Energy (joules). ``effective MACs × energy_pj_per_mac(mode)`` + off-chip bytes × that
level's ``energy_pj_per_byte`` + on-chip: every operand element the dataflow reads from
its innermost level × that level's energy, plus each byte filled from or drained to off
chip × its home level's energy; + ``static_power_w × latency``. (Per-access energies:
Horowitz, "Computing's energy problem", ISSCC 2014, via the profiles.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import ClassVar

from ..profile import HardwareProfile
from ..result import LayerResult, SimResult
from ..workload import Layer, Workload
from ._plan import clear_plans
from ._target import Target

__all__ = ["Engine", "run_cycles"]


def run_cycles(workload: Workload, profile: HardwareProfile) -> int:
    """The once-per-inference cost of ``workload`` on ``profile``: ``run_cycles``, or
    ``float_run_cycles`` (when not 0) if no layer runs on 8-bit or narrower activations."""
    o = profile.overheads
    integer = any(layer.compression.a_storage_bits <= 8 for layer in workload.layers)
    return o.float_run_cycles if o.float_run_cycles > 0 and not integer else o.run_cycles


#: profiles whose derived data an engine keeps (co-design makes many variants)
_TARGET_CACHE_SIZE = 64


class Engine(ABC):
    """Base of the engines: caches per-profile data and runs layers in order."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        # id(profile) -> Target; the Target holds the profile, so the id cannot be reused
        # by another object while the entry lives (hashing a whole profile is slow)
        self._targets: OrderedDict[int, Target] = OrderedDict()

    def target(self, profile: HardwareProfile) -> Target:
        """Derived per-profile data (ports, levels, mapping), cached by object identity."""
        key = id(profile)
        t = self._targets.get(key)
        if t is not None and t.profile is profile:
            self._targets.move_to_end(key)
            return t
        t = Target(profile)
        self._targets[key] = t
        if len(self._targets) > _TARGET_CACHE_SIZE:
            self._targets.popitem(last=False)
        return t

    def _steady(self, profile: HardwareProfile, layers: tuple[Layer, ...]) -> Target:
        """The target ``layers`` are costed on: ``profile`` as its cost rules' steady state
        shows it (:meth:`~lowbit.hwsim._cost_rule_base.CostRule.steady_state`: a warm
        cache)."""
        seen = profile
        for rule in self.target(profile).rules.steady:
            seen = rule.steady_state(seen, layers)
        return self.target(seen)

    def clear_cache(self) -> None:
        """Forget cached profiles, results and GEMM plans (benchmarks measure a cold start
        with it)."""
        self._targets.clear()
        clear_plans()

    @abstractmethod
    def _layer(self, layer: Layer, t: Target, input_on_chip: bool) -> LayerResult:
        """One layer on the target ``t``."""

    def simulate_layer(
        self, layer: Layer, profile: HardwareProfile, *, input_on_chip: bool = False
    ) -> LayerResult:
        """``layer`` alone on ``profile``; its input comes from off chip unless told (and
        its weights from where a warm cache keeps them, ``Overheads.warm_cache``)."""
        return self._layer(layer, self._steady(profile, (layer,)), input_on_chip)

    def simulate(self, workload: Workload, profile: HardwareProfile) -> SimResult:
        """Every layer in order; a layer's input stays on chip when the rule allows."""
        t = self._steady(profile, workload.layers)
        results = []
        on_chip = False
        for layer in workload.layers:
            results.append(self._layer(layer, t, on_chip))
            on_chip = results[-1].output_on_chip
        run = run_cycles(workload, profile)  # once per inference (a runtime's Run call)
        total = sum(r.total_cycles for r in results) + run
        return SimResult(
            hardware=profile.name,
            workload=workload.name,
            engine=self.name,
            clock_hz=profile.clock_hz,
            total_cycles=total,
            latency_s=total / profile.clock_hz,
            energy_j=sum(r.energy_j for r in results),
            layers=tuple(results),
            run_cycles=run,
        )
