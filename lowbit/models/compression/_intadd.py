"""The integer arithmetic of ONNX Runtime's residual add and global average pool, in torch.

ONNX Runtime fuses ``DequantizeLinear`` ×2 → ``Add`` → ``QuantizeLinear`` into
``QLinearAdd`` and ``DequantizeLinear`` → ``GlobalAveragePool`` → ``QuantizeLinear`` into
``QLinearGlobalAveragePool`` (com.microsoft). Neither computes what the float graph does
(dequantize, add or average in float, round): each has its own arithmetic on the uint8
codes. The fake-quant model computes the same arithmetic (:mod:`lowbit.models.compression.
quant_residual`), so it rounds every add and pool output to the code ONNX Runtime does.
Both functions here take and return uint8 codes as float32 tensors (integers 0…255).

**QLinearAdd** (``contrib_ops/cpu/quantization/qlinear_binary_op.cc`` calls
``MlasQLinearAdd``; on x86-64 with AVX2 the kernel is ``MlasQLinearAddKernelAvx2Helper`` in
``core/mlas/lib/intrinsics/avx2/qladd_avx2.cpp``)::

    r_a = fl(s_a / s_c)      r_b = fl(s_b / s_c)                  float32
    fixed = fl(z_c − fma(r_a, z_a, fl(r_b · z_b)))                 (the compiler contracts
                                                                    r_a·z_a + r_b·z_b)
    c = saturate_u8(round_half_even(fma(a, r_a, fma(b, r_b, fixed))))

where ``a`` is the Add's first input and every fma rounds once to float32
(``_mm256_fmadd_ps``), ``cvtps_epi32`` rounds half to even and ``packs``/``packus``
saturate. Which way the compiler contracted ``fixed`` was established by running ONNX Runtime
1.32 on all 65,536 input pairs for 300 random scale/zero-point triples (the other two
readings missed 28 and 44 codes; tests/models/test_export_residual.py keeps a golden check).
Hosts without AVX2 run the SSE2 kernel (two float32 multiplies and adds, no fma) and Arm
runs a fixed-point kernel: there a few ties would round differently.

**QLinearGlobalAveragePool** (``contrib_ops/cpu/quantization/qlinear_global_average_pool.cc``
calls ``MlasQLinearGlobalAveragePoolNchw``/``Nhwc`` in ``core/mlas/lib/qlgavgpool.cpp``,
which requantize with ``MlasRequantizeOutput``)::

    acc = Σ x − z_x · n                                            int32, n = pixels
    scale = fl(s_x / fl(s_y · fl(n)))                              float32
    y = round_half_even(clamp(fl(fl(acc) · scale), −z_y, 255 − z_y)) + z_y

MLAS refuses a scale outside [2^-32, 256) ("parameter out of computation range"):
:func:`pool_output_scale` widens an output grid that would be that fine.
"""

from __future__ import annotations

import torch

__all__ = ["POOL_MAX_SCALE", "fma32", "pool_output_scale", "qlinear_add", "qlinear_avgpool"]

#: MLAS's bound on a global average pool's requantization scale s_x / (s_y · n)
POOL_MAX_SCALE = 256.0


def fma32(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``x·y + z`` rounded once to float32 (an fma), for float32 tensors (broadcast).

    The product of two float32 is exact in float64; the float64 sum ``s`` and its error
    ``e`` (TwoSum, Knuth) hold the exact result ``s + e``. Rounding ``s`` to float32 is
    correct unless ``s`` lies exactly halfway between two float32 and ``e`` pushes the exact
    value off that midpoint: then the neighbour on ``e``'s side is the answer.
    """
    x, y, z = torch.broadcast_tensors(x.float(), y.float(), z.float())
    p = x.double() * y.double()
    zd = z.double()
    s = p + zd
    v = s - p
    e = (p - (s - v)) + (zd - v)
    r = s.float()
    d = s - r.double()  # exact (Sterbenz): r is within a float32 step of s
    other = torch.nextafter(r, torch.where(d > 0, torch.inf, -torch.inf).to(r.dtype))
    midpoint = (d != 0) & (2 * d.abs() == (other.double() - r.double()).abs())
    return torch.where(midpoint & (e != 0) & (torch.sign(e) == torch.sign(d)), other, r)


def _f32(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32)


def qlinear_add(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    a_grid: tuple[float, int],
    b_grid: tuple[float, int],
    c_grid: tuple[float, int],
) -> torch.Tensor:
    """Output codes of ONNX Runtime's QLinearAdd of uint8 codes ``a`` and ``b`` (same shape)
    on grids ``(scale, zero point)``; scales as the float32 the ONNX model stores."""
    (s_a, z_a), (s_b, z_b), (s_c, z_c) = a_grid, b_grid, c_grid
    r_a, r_b = _f32(s_a) / _f32(s_c), _f32(s_b) / _f32(s_c)
    fixed = _f32(z_c) - fma32(r_a, _f32(z_a), r_b * _f32(z_b))
    c = fma32(a, r_a, fma32(b, r_b, fixed))
    return torch.clamp(torch.round(c), 0, 255)


def qlinear_avgpool(x: torch.Tensor, *, x_grid: tuple[float, int], y_grid: tuple[float, int]):
    """Output codes of ONNX Runtime's QLinearGlobalAveragePool of uint8 codes ``x``
    (N, C, spatial...) on grids ``(scale, zero point)``: shape (N, C, 1, ...)."""
    (s_x, z_x), (s_y, z_y) = x_grid, y_grid
    dims = tuple(range(2, x.dim()))
    n = 1
    for d in dims:
        n *= x.shape[d]
    acc = x.to(torch.int64).sum(dim=dims, keepdim=True) - z_x * n
    scale = _f32(s_x) / (_f32(s_y) * _f32(float(n)))
    y = torch.clamp(acc.float() * scale, -z_y, 255 - z_y)
    return torch.round(y) + z_y


def pool_output_scale(s_x: float, s_y: float, n: int) -> float:
    """The output scale a global average pool of ``n`` pixels can use: ``s_y``, or the
    smallest float32 scale MLAS accepts if ``s_y`` is finer (a pool whose calibrated output
    range is nearly empty); float32-exact like the stored scale."""
    s_x32, s_y32, n32 = _f32(s_x), _f32(s_y), _f32(float(n))
    while float(s_x32 / (s_y32 * n32)) >= POOL_MAX_SCALE:
        s_y32 = torch.nextafter(torch.maximum(s_y32, s_x32 / (n32 * POOL_MAX_SCALE)), _f32(1e30))
    return float(s_y32)
