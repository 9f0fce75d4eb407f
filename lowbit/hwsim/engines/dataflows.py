"""How one GEMM maps on the compute unit: one strategy class per dataflow.

A mapping answers three questions for a GEMM instance of ``M×K`` inputs and ``K×N``
weights (SCALE-Sim notation P = M, W = K, N = filters):

* :meth:`Mapping.cycles` - compute cycles of one instance, at ``macs_per_pe`` operand pairs
  per PE per cycle (the precision mode's ``macs_per_pe_per_cycle``);
* :meth:`Mapping.granularity` - the natural block on the M and N dimensions, so memory tiles
  are whole folds (a tile edge inside a fold would waste array rows or columns);
* :meth:`Mapping.onchip_reads` - how many operand elements the array reads from its
  innermost buffers (for energy: every element once per use).

Systolic arrays follow the SCALE-Sim v3 fold model (Samajdar et al., "A Systematic
Methodology for Characterizing Scalability of DNN Accelerators using SCALE-Sim",
ISPASS 2020; cycle counts as in the v3.0.0 source, ``scalesim/compute/``)::

    dataflow  rows (S_r)  cols (S_c)  streamed (T)  cycles per fold
    os        M           N           K             R + C + T - 2
    ws        K           N           M             2R + C + T - 2   (weight preload: +R)
    is        K           M           N             2R + C + T - 2   (input preload: +R)

    folds = ceil(S_r / R) * ceil(S_c / C);  cycles = folds * cycles_per_fold - 1

A PE that runs ``m`` operand pairs per cycle computes an ``m``-long dot product each
cycle: BitFusion's Fusion Unit fuses its bit-bricks into m = (8/w)(8/a) low-bit multipliers
whose products are added in its shift-add tree (Sharma et al., "Bit Fusion", ISCA 2018),
and the released BitFusion simulator counts ``ceil(K / (rows * m))`` passes over
the reduction (hsharma35/bitfusion, ``accelerator.py: get_compute_cycles``). So ``m``
shortens the *reduction* K wherever the dataflow maps it -- rows for ws and is, the
streamed dimension for os -- ``K' = ceil(K / m)``; a PE at half rate (a 16-bit operand on
an 8-bit datapath, m = 1/2) needs two cycles per product, ``K' = 2K``. At m = 1 this is
SCALE-Sim's model exactly. Scaling K rather than the streamed M or N matters for small
GEMMs: a batch-1 fully connected layer (M = 1) on a weight-stationary array still gains
from low bits, as on BitFusion. Fill and drain (R, C) stay the same: the skew through the
array is set by its geometry, not by the operand width.

Vector units (SIMD lanes, DSP columns): ``rows`` lanes reduce over K, ``cols`` lanes produce
outputs over N, ``cores`` work on rows of M in parallel (one instruction per cycle per core)::

    cycles = ceil(M / cores) * ceil(N / cols) * ceil(K / (rows * m))      m >= 1
    cycles = ceil(M / cores) * ceil(N / cols) * ceil(ceil(K / rows) / m)  m < 1

which is the peak rate whenever M, N, K are multiples of the lanes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from math import ceil

from ..profile import ComputeUnit

__all__ = [
    "Mapping",
    "OutputStationary",
    "WeightStationary",
    "InputStationary",
    "VectorMapping",
    "MAPPINGS",
    "mapping_for",
]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _reduced(k: int, macs_per_pe: float) -> int:
    """Reduction length at m operand pairs per PE per cycle: ceil(K / m) (module docstring)."""
    if macs_per_pe == 1.0:
        return k
    return max(1, ceil(k / macs_per_pe - 1e-9))


class Mapping(ABC):
    """One dataflow on one compute unit (rows × cols PEs, ``cores`` copies)."""

    name: str = ""

    def __init__(self, compute: ComputeUnit) -> None:
        if compute.rows < 1 or compute.cols < 1 or compute.cores < 1:
            raise ValueError(
                f"compute unit must have positive rows, cols, cores; got "
                f"{compute.rows}x{compute.cols}x{compute.cores}"
            )
        self.rows = compute.rows
        self.cols = compute.cols
        self.cores = compute.cores

    @abstractmethod
    def cycles(self, M: int, N: int, K: int, macs_per_pe: float) -> int:
        """Compute cycles of one (M×K)·(K×N) instance."""

    @abstractmethod
    def granularity(self) -> tuple[int, int]:
        """(M block, N block): memory tiles are multiples of these."""

    @abstractmethod
    def onchip_reads(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        """(weight, input, output) element accesses of the innermost buffers."""


class _Systolic(Mapping):
    """SCALE-Sim fold model; subclasses choose what goes on rows, columns and in time."""

    #: extra R cycles per fold to preload the stationary operand (ws, is)
    preload = 1

    @abstractmethod
    def dims(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        """(S_r, S_c, T) of the GEMM in this dataflow."""

    def folds(self, M: int, N: int, K: int) -> int:
        s_r, s_c, _ = self.dims(M, N, K)
        return _cdiv(s_r, self.rows) * _cdiv(s_c, self.cols)

    def cycles(self, M: int, N: int, K: int, macs_per_pe: float) -> int:
        s_r, s_c, t = self.dims(M, N, _reduced(K, macs_per_pe))
        folds = _cdiv(s_r, self.rows) * _cdiv(s_c, self.cols)
        per_fold = self.preload * self.rows + self.rows + self.cols + t - 2
        # ``cores`` arrays share the folds (1 for every SCALE-Sim style array)
        return _cdiv(folds, self.cores) * per_fold - 1


class OutputStationary(_Systolic):
    """os: each PE accumulates one output; inputs and weights stream through (no preload)."""

    name = "os"
    preload = 0

    def dims(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        return M, N, K

    def granularity(self) -> tuple[int, int]:
        return self.rows, self.cols

    def onchip_reads(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        # every row fold re-reads its weights, every column fold its inputs
        return (N * K * _cdiv(M, self.rows), M * K * _cdiv(N, self.cols), M * N)


class WeightStationary(_Systolic):
    """ws: a K×N weight block sits in the array; input rows (M) stream through."""

    name = "ws"

    def dims(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        return K, N, M

    def granularity(self) -> tuple[int, int]:
        return 1, self.cols

    def onchip_reads(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        # partial sums leave the array once per row fold of K
        return (N * K, M * K * _cdiv(N, self.cols), M * N * _cdiv(K, self.rows))


class InputStationary(_Systolic):
    """is: a K×M input block sits in the array; weights (N) stream through."""

    name = "is"

    def dims(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        return K, M, N

    def granularity(self) -> tuple[int, int]:
        return self.cols, 1

    def onchip_reads(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        return (N * K * _cdiv(M, self.cols), M * K, M * N * _cdiv(K, self.rows))


class VectorMapping(Mapping):
    """SIMD lanes / DSP columns: rows reduce over K, cols produce N, cores split M."""

    name = "vector"

    def cycles(self, M: int, N: int, K: int, macs_per_pe: float) -> int:
        outer = _cdiv(M, self.cores) * _cdiv(N, self.cols)
        if macs_per_pe >= 1.0:
            lanes = self.rows * macs_per_pe
            return outer * max(1, ceil(K / lanes - 1e-9))
        return outer * max(1, ceil(_cdiv(K, self.rows) / macs_per_pe - 1e-9))

    def granularity(self) -> tuple[int, int]:
        return self.cores, self.cols

    def onchip_reads(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        # no register blocking assumed: an upper bound on buffer reads
        return (N * K * _cdiv(M, self.cores), M * K * _cdiv(N, self.cols), M * N)


#: dataflow name -> strategy class
MAPPINGS: dict[str, type[Mapping]] = {
    "os": OutputStationary,
    "ws": WeightStationary,
    "is": InputStationary,
    "vector": VectorMapping,
}


def mapping_for(compute: ComputeUnit, *, dataflow: str | None = None) -> Mapping:
    """The strategy for ``compute`` running ``dataflow`` (default: the unit's own)."""
    name = dataflow or compute.dataflow
    if name not in MAPPINGS:
        raise ValueError(f"unknown dataflow {name!r} (valid: {', '.join(MAPPINGS)})")
    expected = "vector" if compute.kind == "vector" else None
    if expected and name != expected or not expected and name == "vector":
        raise ValueError(f"dataflow {name!r} does not run on a {compute.kind!r} compute unit")
    return MAPPINGS[name](compute)
