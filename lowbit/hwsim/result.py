"""Frozen simulation results: what engines return and what crosses process boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["LayerResult", "SimResult"]


@dataclass(frozen=True, slots=True)
class LayerResult:
    """One layer on one target. Cycles are integers of the target clock.

    ``total_cycles = compute_cycles + stall_cycles + overhead_cycles``, where stalls are the
    cycles the compute unit waits for memory that double buffering could not hide.
    ``bound`` is "compute", "memory" or "overhead" (whichever dominates).
    """

    name: str
    op: str
    macs: int
    w_bits: int
    a_bits: int
    compute_cycles: int
    stall_cycles: int
    overhead_cycles: int
    total_cycles: int
    dram_read_bytes: int
    dram_write_bytes: int
    peak_macs_per_cycle: float
    dram_bytes_per_cycle: float
    utilization: float
    bound: str
    energy_j: float
    #: MACs the array executes: ``macs`` less the zero weights the target skips (N:M it
    #: supports, or any zero with zero-skipping)
    effective_macs: int = 0
    #: off-chip reads split by operand: (("weights", bytes), ("inputs", bytes)); the
    #: second operand of an attention MatMul is an activation and counts as "inputs"
    dram_read_bytes_by_operand: tuple[tuple[str, int], ...] = ()
    #: cycles the busiest off-chip port is busy (reads + writes); "memory" bound when it
    #: exceeds compute_cycles
    dma_cycles: int = 0
    #: the layer's input was still on chip from the previous layer (no off-chip read)
    input_on_chip: bool = False
    #: the output fits on chip and stays there for the next layer (no write-back)
    output_on_chip: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SimResult:
    """A workload on one target: ``total_cycles`` = Σ layers' ``total_cycles`` +
    ``run_cycles`` (the profile's once-per-inference cost)."""

    hardware: str
    workload: str
    engine: str
    clock_hz: float
    total_cycles: int
    latency_s: float
    energy_j: float
    layers: tuple[LayerResult, ...]
    run_cycles: int = 0

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware,
            "workload": self.workload,
            "engine": self.engine,
            "clock_hz": self.clock_hz,
            "total_cycles": self.total_cycles,
            "latency_s": self.latency_s,
            "energy_j": self.energy_j,
            "run_cycles": self.run_cycles,
            "layers": [layer.to_dict() for layer in self.layers],
        }
