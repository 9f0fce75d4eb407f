"""Hardware profile: the frozen, validated description of one target.

Built from a TOML file by :mod:`lowbit.hwsim.profiles` (parse -> validate -> build). Units live in
field names. Engines read these objects only; they never see raw TOML.

Conventions:
    * A *PE* is one multiply-accumulate slot of the compute unit at the base precision.
      ``peak MACs/cycle`` at bits (w, a) = ``rows * cols * cores * macs_per_pe_per_cycle``
      of the precision mode that runs (w, a).
    * Unsupported (w, a) are *promoted* to the cheapest supported mode with at least those
      bits (see :meth:`ComputeUnit.resolve`). Float layers (bits = 32) need a float mode.
    * ``memory`` is ordered outermost first. Off-chip levels (DRAM, flash) are the ports
      all DMA shares; on-chip levels hold the operands named in ``holds``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass

from .errors import LowbitError
from .workload import aligned_channels  # re-exported: the channels pad_conv_channels pads to

__all__ = [
    "OPERANDS",
    "COMPUTE_KINDS",
    "DATAFLOWS",
    "Precision",
    "ComputeUnit",
    "MemoryLevel",
    "SparsitySupport",
    "Overheads",
    "Tunable",
    "AreaModel",
    "HardwareProfile",
    "UnsupportedPrecision",
    "WeightCompression",
    "aligned_channels",
]

OPERANDS = ("weights", "inputs", "outputs")
#: systolic: a PE array with a SCALE-Sim style fold model (dataflow os/ws/is).
#: vector: SIMD lanes / DSP columns; rows = reduction (K) lanes, cols = output (N) lanes.
COMPUTE_KINDS = ("systolic", "vector")
DATAFLOWS = {"systolic": ("os", "ws", "is"), "vector": ("vector",)}


class UnsupportedPrecision(LowbitError, ValueError):
    """A layer asks for bits the target cannot run, even by promotion."""


@dataclass(frozen=True, slots=True)
class Precision:
    """One precision mode the compute unit runs natively."""

    w_bits: int
    a_bits: int
    macs_per_pe_per_cycle: float
    energy_pj_per_mac: float


@dataclass(frozen=True, slots=True)
class ComputeUnit:
    kind: str
    rows: int
    cols: int
    dataflow: str
    dataflows: tuple[str, ...]
    precisions: tuple[Precision, ...]
    cores: int = 1

    @property
    def pes(self) -> int:
        return self.rows * self.cols * self.cores

    def resolve(self, w_bits: int, a_bits: int) -> Precision:
        """The mode that runs (w_bits, a_bits): exact if supported, else the cheapest mode
        with at least those bits (fewest w·a bits, then highest throughput)."""
        fits = [p for p in self.precisions if p.w_bits >= w_bits and p.a_bits >= a_bits]
        if not fits:
            have = ", ".join(f"W{p.w_bits}A{p.a_bits}" for p in self.precisions)
            raise UnsupportedPrecision(
                f"no precision mode runs W{w_bits}A{a_bits} (supported: {have})"
            )
        return min(fits, key=lambda p: (p.w_bits * p.a_bits, -p.macs_per_pe_per_cycle))

    def peak_macs_per_cycle(self, w_bits: int, a_bits: int) -> float:
        return self.pes * self.resolve(w_bits, a_bits).macs_per_pe_per_cycle


@dataclass(frozen=True, slots=True)
class MemoryLevel:
    name: str
    size_bytes: int
    bandwidth_bytes_per_cycle: float
    energy_pj_per_byte: float
    holds: tuple[str, ...]
    off_chip: bool = False
    double_buffered: bool = False


@dataclass(frozen=True, slots=True)
class SparsitySupport:
    """What the target does with zeros. Structured (channel) pruning always helps: it is a
    real shape change."""

    nm_patterns: tuple[tuple[int, int], ...] = ()
    zero_skipping: bool = False
    index_bits_per_nonzero: float = 0.0


@dataclass(frozen=True, slots=True)
class WeightCompression:
    """What a lossless weight encoder stores (``weight_storage = "compressed"``): per weight,
    ``stored_bits_per_weight[i]`` bits for a dense layer on a ``w_bits[i]``-bit grid (its
    values held in the compute mode's wider words, e.g. INT8: the encoder's palette and
    run-length codes shrink a narrow grid), ``zero_stored_bits_per_weight`` for each zero of
    a sparse one, and ``bytes_per_output_channel`` for each output channel's requantization
    parameters (scale, shift, bias) in the same stream."""

    w_bits: tuple[int, ...]
    stored_bits_per_weight: tuple[float, ...]
    zero_stored_bits_per_weight: float = 0.0
    bytes_per_output_channel: float = 0.0

    def stored_bits(self, *, w_bits: int, density: float = 1.0) -> float:
        """Stored bits per weight of a ``w_bits`` grid with ``density`` non-zeros: the entry
        of the smallest listed width >= ``w_bits`` (beyond the widest, its bits per grid
        bit times ``w_bits``), zeros at ``zero_stored_bits_per_weight``."""
        pairs = sorted(zip(self.w_bits, self.stored_bits_per_weight, strict=True))
        dense = next((b for w, b in pairs if w >= w_bits), None)
        if dense is None:
            widest, bits = pairs[-1]
            dense = bits * w_bits / widest
        density = min(max(density, 0.0), 1.0)
        return density * dense + (1.0 - density) * min(dense, self.zero_stored_bits_per_weight)


#: the depthwise-conv kernel's cost keys of ``[overheads]`` (:class:`Overheads`; the
#: ``DepthwiseKernel`` cost rule's, less its channel block): what host calibration fits
DEPTHWISE_KEYS = (
    "depthwise_cycles_per_mac",
    "depthwise_cycles_per_pixel",
    "depthwise_unaligned_cycles_per_mac",
    "fp32_depthwise_cycles_per_mac",
    "fp32_depthwise_cycles_per_pixel",
    "fp32_depthwise_unaligned_cycles_per_mac",
    "fp32_depthwise_cycles_per_channel_row",
    "fp32_depthwise_generic_cycles_per_output",
    "fp32_depthwise_generic_cycles_per_channel",
)


@dataclass(frozen=True, slots=True)
class Overheads:
    """Costs beyond the MAC array and the traffic: the profile's ``[overheads]`` as written.

    Every target has: ``layer_cycles`` per layer (launch, configuration, synchronisation;
    one operator's dispatch on a CPU runtime), ``tile_cycles`` per tile (the compute side's
    handshake with the DMA for each buffer it consumes: descriptor issue, semaphores; the
    default is an estimate of a few tens of cycles) and ``run_cycles`` once per inference (a
    runtime's ``Run`` call: input/output binding, graph walk); ``two_grid_round_trip`` says
    how its runtime deploys a tensor quantized onto two grids.

    The other fields belong to the cost rules named beside them
    (:mod:`lowbit.hwsim._cost_rules`: each rule's fields, their schema and what they cost
    are documented there; ``warm_cache``, a steady state's warm caches: WarmCache in
    :mod:`lowbit.hwsim._warm_cache`). All default to no cost. ``registered`` holds the values of the
    keys of rules registered beside lowbit's own (``register_cost_rule``), as sorted
    (key, value) pairs.
    """

    layer_cycles: int = 0
    tile_cycles: int = 16
    run_cycles: int = 0
    float_run_cycles: int = 0  # a float graph's Run call (0: run_cycles)
    #: the deployment runtime cannot keep a tensor quantized onto two grids integer (ONNX
    #: Runtime's QDQ fusion): the layer that writes one runs a float round trip, which the
    #: search's workload (``models.bridge``) then charges
    two_grid_round_trip: bool = False
    gemm_cycles: int = 0  # GemmLaunch
    activation_gemm_cycles: int = 0  # GemmLaunch
    narrow_activation_cycles: int = 0  # NarrowActivationClamp
    #: (kind, cycles per element) pairs, sorted by kind (ElementwiseCosts)
    elementwise_cycles_per_element: tuple[tuple[str, float], ...] = ()
    #: (kind, cycles per row) pairs, sorted by kind (ElementwiseCosts)
    elementwise_cycles_per_row: tuple[tuple[str, float], ...] = ()
    conv_channel_multiple: int = 1  # DirectConvKernel
    conv_min_out_channels: int = 1  # DirectConvKernel
    conv_out_channel_block: int = 1  # DirectConvKernel
    unaligned_conv_cycles_per_pixel: float = 0.0  # DirectConvKernel
    unaligned_conv_cycles_per_output: float = 0.0  # DirectConvKernel
    im2col_copy_cycles: float = 0.0  # DirectConvKernel
    gemm_library_speedup: float = 1.0  # DirectConvKernel
    activation_gemm_speedup: float = 1.0  # DirectConvKernel
    float_gemm_library_speedup: float = 1.0  # DirectConvKernel
    conv_cycles_per_pixel: float = 0.0  # WindowGather
    conv_cycles_per_image: float = 0.0  # WindowGather
    requant_cycles_per_output: float = 0.0  # Requantization
    library_requant_cycles_per_output: float = 0.0  # Requantization
    library_cycles_per_row: float = 0.0  # Requantization
    fused_bias_cycles_per_column: float = 0.0  # FusedBiasGemm
    fused_bias_cycles_per_output: float = 0.0  # FusedBiasGemm
    pool_channel_block: int = 0  # PoolChannelBlock
    pad_conv_channels: bool = False  # DirectConvKernel
    u8_weight_bits: int = 0  # DirectConvKernel
    u8_gemm_library_speedup: float = 0.0  # DirectConvKernel
    warm_cache: bool = False  # WarmCache
    activation_cache_bytes: int = 0  # ActivationSpill
    activation_spill_bytes_per_cycle: float = 0.0  # ActivationSpill
    conv_in_channel_block: int = 1  # ConvReductionBlocking
    conv_part_kernel_positions: int = 0  # ConvReductionBlocking
    conv_part_kernel_channel_block: int = 1  # ConvReductionBlocking
    output_stage_cycles_per_output: float = 0.0  # OutputStage
    depthwise_cycles_per_mac: float = 0.0  # DepthwiseKernel
    depthwise_cycles_per_pixel: float = 0.0  # DepthwiseKernel
    depthwise_unaligned_cycles_per_mac: float = 0.0  # DepthwiseKernel
    depthwise_channel_multiple: int = 1  # DepthwiseKernel
    fp32_depthwise_cycles_per_mac: float = 0.0  # DepthwiseKernel
    fp32_depthwise_cycles_per_pixel: float = 0.0  # DepthwiseKernel
    fp32_depthwise_unaligned_cycles_per_mac: float = 0.0  # DepthwiseKernel
    fp32_depthwise_cycles_per_channel_row: float = 0.0  # DepthwiseKernel
    fp32_depthwise_layout_multiple: int = 1  # DepthwiseKernel
    fp32_depthwise_generic_cycles_per_output: float = 0.0  # DepthwiseKernel
    fp32_depthwise_generic_cycles_per_channel: float = 0.0  # DepthwiseKernel
    #: (kind, cycles once per layer) pairs, sorted by kind (DecomposedLayerCycles)
    elementwise_layer_cycles: tuple[tuple[str, float], ...] = ()
    activation_matmul_cycles_per_mac: float = 0.0  # ActivationMatmulKernel
    registered: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Tunable:
    """A parameter co-design may change: a key path into the profile and its choices."""

    key: str
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class AreaModel:
    """Silicon area, mm²: per PE (per precision-mode-capable MAC), per KiB SRAM, per GB/s."""

    mm2_per_pe: float
    mm2_per_kib_sram: float
    mm2_per_gbps_dram: float
    base_mm2: float = 0.0
    source: str = ""


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    name: str
    description: str
    family: str
    schema_version: int
    clock_hz: float
    compute: ComputeUnit
    memory: tuple[MemoryLevel, ...]
    sparsity: SparsitySupport = field(default_factory=SparsitySupport)
    overheads: Overheads = field(default_factory=Overheads)
    #: "packed": weights move at the layer's own bits even when compute promotes them
    #: (a CPU unpacks INT4 to INT8 in registers); "promoted": stored at the promoted bits;
    #: "compressed": as ``weight_compression`` encodes them.
    weight_storage: str = "packed"
    weight_compression: WeightCompression | None = None
    static_power_w: float = 0.0
    tunables: tuple[Tunable, ...] = ()
    area: AreaModel | None = None
    source: str = ""

    def off_chip(self, operand: str) -> MemoryLevel:
        """The outermost level holding ``operand`` (DRAM, or flash for MCU weights)."""
        for level in self.memory:
            if level.off_chip and operand in level.holds:
                return level
        raise ValueError(f"profile {self.name!r}: no off-chip level holds {operand!r}")

    def on_chip(self, operand: str) -> tuple[MemoryLevel, ...]:
        """On-chip levels holding ``operand``, outermost first."""
        return tuple(m for m in self.memory if not m.off_chip and operand in m.holds)

    def content_hash(self) -> str:
        """sha256 of the built profile (not the file), stable across formatting changes and
        across new optional keys: a field at its default value is left out, so a profile
        that does not use a key added later keeps its hash (and its studies resume)."""
        data = _without_defaults(self)
        data.pop("source", None)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_dict(self) -> dict:
        data = asdict(self)
        if not self.overheads.registered:  # as before rules could be registered
            del data["overheads"]["registered"]
        return data


def _without_defaults(value):
    """``value`` as JSON-ready data, dataclass fields equal to their defaults left out."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.default is not MISSING and item == f.default:
                continue
            if f.default_factory is not MISSING and item == f.default_factory():
                continue
            out[f.name] = _without_defaults(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_without_defaults(v) for v in value]
    return value
