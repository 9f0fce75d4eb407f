"""Residual networks on ONNX Runtime's integer kernels, bit-identical to the fake-quant model.

A residual add and a global average pool run as ``QLinearAdd`` / ``QLinearGlobalAveragePool``
once their inputs and output are quantized (:mod:`lowbit.models.compression.quant_residual`),
and every convolution before them then runs as ``QLinearConv``. The nets here (defined
below, trained for a few steps on the digits train split) check that the fake-quant model
computes what ONNX Runtime computes to the bit: 100 % equal activation codes per layer,
teacher forced and end to end, equal logits and accuracy, on a uniform W8A8 plan and a mixed
W4A8 plan (asymmetric percentile grids, first and last layers pinned at W8A8); and the two
kernels' arithmetic against ONNX Runtime on hand-picked codes (ties, saturation) and on
every pair of input codes.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from lowbit.models.bridge import to_workload
from lowbit.models.compression._dataflow import quant_sites
from lowbit.models.compression._intadd import (
    POOL_MAX_SCALE,
    fma32,
    pool_output_scale,
    qlinear_add,
    qlinear_avgpool,
)
from lowbit.models.compression.compress import compress
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.compression.qat import finetune
from lowbit.models.compression.quant import QuantAdd, QuantGlobalAvgPool
from lowbit.models.data import load_split
from lowbit.models.export.deploy import export_compressed, resolve_weight_type
from lowbit.models.export.ort import kernel_census, ort_session
from lowbit.models.zoo import Add, build


class _Block(nn.Module):
    """conv1 → bn1 → ReLU → conv2 → bn2, + shortcut (identity, or stride-2 1×1 down → bn),
    ``add``, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.projects = stride != 1 or cin != cout
        if self.projects:
            self.down = nn.Conv2d(cin, cout, 1, stride, bias=False)
            self.down_bn = nn.BatchNorm2d(cout)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(self.add(y, self.down_bn(self.down(x)) if self.projects else x))


class SmallResNet(nn.Module):
    """stem 3×3 (1→8) → identity block (8) → stride-2 block with 1×1 down (8→16) → global
    average pool → fc, on 1×8×8."""

    dataset, input_shape, num_classes = "digits", (1, 8, 8), 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.block1 = _Block(8, 8, 1)
        self.block2 = _Block(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(F.relu(self.stem_bn(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))


class SmallInvertedResidual(nn.Module):
    """stem 3×3 (1→8, ReLU6) → 1×1 expand (8→32) → ReLU6 → 3×3 depthwise → ReLU6 → 1×1
    project (32→8) → residual ``add`` with the block input → global average pool → fc."""

    dataset, input_shape, num_classes = "digits", (1, 8, 8), 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.expand = nn.Conv2d(8, 32, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(32)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
        self.dw_bn = nn.BatchNorm2d(32)
        self.project = nn.Conv2d(32, 8, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(8)
        self.add = Add()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem_bn(self.stem(x)))
        y = F.relu6(self.expand_bn(self.expand(x)))
        y = self.project_bn(self.project(F.relu6(self.dw_bn(self.dw(y)))))
        return self.fc(self.pool(self.add(x, y)).flatten(1))


NETS = {"resnet": SmallResNet, "inverted": SmallInvertedResidual}
#: the two plans of every export test: uniform, and mixed 4/8-bit weights with asymmetric
#: percentile activation grids (non-zero zero points) between pinned W8A8 ends
PLANS = {
    "W8A8": CompressionPlan.from_bits_string("W8A8"),
    "mixed-W4A8": CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=4, a_bits=8, symmetric=False, calibration="percentile")
        },
        pin_first_last=True,
    ),
}


@pytest.fixture(scope="module")
def trained_nets() -> dict[str, nn.Module]:
    """Each net trained for 60 Adam steps on the digits train split (seeded, CPU)."""
    x, y = load_split("digits", "train")
    nets = {}
    for key, cls in NETS.items():
        torch.manual_seed(0)
        model = cls()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(0)
        for _ in range(60):
            idx = torch.randint(0, len(x), (64,), generator=g)
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        nets[key] = model.eval()
    return nets


def _export(model: nn.Module, plan: CompressionPlan, out_dir, *, qat_steps: int = 0):
    x_val, _ = load_split("digits", "val")
    small = compress(model, plan, calib=x_val)
    if qat_steps:
        small = finetune(small, steps=qat_steps, seed=0).eval()
    return small, export_compressed(small, out_dir=out_dir, source={"plan": plan.to_dict()})


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("net", list(NETS))
def test_int8_residual_net_is_bit_identical_on_integer_kernels(trained_nets, net, plan, tmp_path):
    model = trained_nets[net]
    small, result = _export(model, PLANS[plan], tmp_path)
    check = result.deploy["check"]
    # every quantized input, adds' second inputs (":b") and the pool's included
    adds = [n for n, m in small.named_modules() if isinstance(m, QuantAdd)]
    pools = [n for n, m in small.named_modules() if isinstance(m, QuantGlobalAvgPool)]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(adds) == (2 if net == "resnet" else 1) and pools == ["pool"]
    expected = {*convs, "fc", *pools, *adds, *(f"{a}:b" for a in adds)}
    assert set(check["code_agreement"]) == set(check["code_agreement_forced"]) == expected
    assert check["min_code_agreement_forced"] == 1.0, check["code_agreement_forced"]
    assert check["min_code_agreement"] == 1.0, check["code_agreement"]
    assert check["max_abs_logit_diff"] == 0.0  # the logits to the bit
    assert check["accuracy_int8"] == check["accuracy_fake_quant"] > 0.5
    # ONNX Runtime runs every conv, add and the pool on integer kernels, nothing in float
    kernels = result.deploy["ort_kernels"]["int8"]
    assert kernels["QLinearConv"] == len(convs)
    assert kernels["QLinearAdd"] == len(adds)
    assert kernels["QLinearGlobalAveragePool"] == 1 and kernels["QGemm"] == 1
    assert not {"Conv", "FusedConv", "Add", "GlobalAveragePool", "Gemm", "Relu"} & set(kernels)
    rows = {row["name"]: row for row in result.deploy["layers"]}
    assert all(rows[name]["runs_as"] == "int8" for name in (*adds, *pools, *convs))


def test_relu_after_an_add_is_folded_into_its_output_grid(trained_nets, tmp_path):
    small, result = _export(trained_nets["resnet"], PLANS["W8A8"], tmp_path)
    for block in (small.block1, small.block2):
        add = block.add
        assert add.relu and add.a_bits == 8
        assert int(add.out_zero_point) == add.out_qmin == 0  # its lowest code is zero
        # the next layers read the add's output grid: one quantizer between them
        assert (
            add.out_scale == (small.block2.conv1 if block is small.block1 else small.pool).act_scale
        )
    assert "Relu" not in {n.op_type for n in onnx.load(result.int8_path).graph.node}
    x_val, _ = load_split("digits", "val")
    inverted = compress(trained_nets["inverted"], PLANS["W8A8"], calib=x_val)
    assert not inverted.add.relu  # a linear bottleneck: no ReLU after the add


def test_qat_steps_keep_the_int8_model_bit_identical(trained_nets, tmp_path):
    small, result = _export(trained_nets["resnet"], PLANS["mixed-W4A8"], tmp_path, qat_steps=5)
    check = result.deploy["check"]
    assert check["min_code_agreement_forced"] == check["min_code_agreement"] == 1.0
    assert check["max_abs_logit_diff"] == 0.0


class _PreNorm(nn.Module):
    """x + fc(LayerNorm(x)), then LayerNorm and a linear head: a transformer's residual
    stream."""

    input_shape = (5, 16)

    def __init__(self) -> None:
        super().__init__()
        self.ln, self.fc, self.add = nn.LayerNorm(16), nn.Linear(16, 16), Add()
        self.norm, self.head = nn.LayerNorm(16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.add(x, self.fc(self.ln(x)))))


def test_float_activation_plans_and_attention_adds_stay_float(trained_nets):
    model = trained_nets["resnet"]
    assert quant_sites(model, CompressionPlan.from_bits_string("W4AFP").effective(model)) == {}
    # only a LayerNorm reads the stream: no integer layer would read the add's codes; the
    # same net whose head reads the sum directly has a quantized add
    prenorm = _PreNorm()
    specs = CompressionPlan.from_bits_string("W8A8").effective(prenorm)
    assert quant_sites(prenorm, specs) == {}
    prenorm.norm = nn.Identity()
    assert set(quant_sites(prenorm, specs)) == {"add"}
    vit = build("digits-vit")
    small = compress(vit, CompressionPlan.from_bits_string("W4A8"), calib=torch.rand(32, 1, 8, 8))
    assert not any(isinstance(m, (QuantAdd, QuantGlobalAvgPool)) for m in small.modules())


def test_simulator_sees_adds_and_pool_at_the_bits_they_run_at(trained_nets):
    """The bridge reports each add and the pool at the bits compress() runs it at: the
    activation bits of the layers reading its output (8 for the pinned fc)."""
    model = trained_nets["resnet"]
    plan = CompressionPlan(layers={"_default": LayerSpec(w_bits=4, a_bits=6)})
    small = compress(model, plan, calib=load_split("digits", "val")[0])
    layers = {layer.name: layer for layer in to_workload(model, plan).layers}
    ran = {"block1.add": 6, "block2.add": 8, "pool": 8}  # block2's add feeds the pool -> fc
    for name, bits in ran.items():
        assert small.get_submodule(name).a_bits == bits
        assert layers[name].compression.a_bits == layers[name].compression.w_bits == bits
    default = {layer.name: layer for layer in to_workload(model).layers}
    assert all(default[name].compression.a_bits == 8 for name in ran)


# --- the two kernels' arithmetic against ONNX Runtime ---------------------------------------


def _model(nodes, inputs, inits) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.asarray(v, dtype=t), n) for n, v, t in inits]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, s) for n, s in inputs],
        [helper.make_tensor_value_info("c", TensorProto.UINT8, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _add_model(grids: tuple[tuple[float, int], ...]) -> onnx.ModelProto:
    """DQ(a), DQ(b) → Add → Q(c): what ONNX Runtime fuses into QLinearAdd."""
    (sa, za), (sb, zb), (sc, zc) = grids
    nodes = [
        helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["af"]),
        helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bf"]),
        helper.make_node("Add", ["af", "bf"], ["s"]),
        helper.make_node("QuantizeLinear", ["s", "sc", "zc"], ["c"]),
    ]
    inits = [
        ("sa", sa, np.float32),
        ("za", za, np.uint8),
        ("sb", sb, np.float32),
        ("zb", zb, np.uint8),
        ("sc", sc, np.float32),
        ("zc", zc, np.uint8),
    ]
    return _model(nodes, [("a", ["n"]), ("b", ["n"])], inits)


def _ort_add(grids, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    model = _add_model(grids)
    assert kernel_census(model) == {"QLinearAdd": 1}
    return ort_session(model).run(None, {"a": a.astype(np.uint8), "b": b.astype(np.uint8)})[0]


def _add(grids, a, b) -> np.ndarray:
    (sa, za), (sb, zb), (sc, zc) = grids
    t = [torch.tensor(v, dtype=torch.float32) for v in (a, b)]
    return qlinear_add(*t, a_grid=(sa, za), b_grid=(sb, zb), c_grid=(sc, zc)).numpy()


#: (grids (scale, zero point) of a, b, c; a codes; b codes; c codes). Source of the
#: expected codes: ONNX Runtime's QLinearAdd computes round_half_even(s_a/s_c·(a − z_a) +
#: s_b/s_c·(b − z_b) + z_c) saturated to 0…255 (contrib_ops/cpu/quantization/
#: qlinear_binary_op.cc, core/mlas/lib/intrinsics/avx2/qladd_avx2.cpp); with power-of-two
#: scales every term is exact, so these are computed by hand.
ADD_GOLDEN = [
    # ties round to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; 127.5 + 63.75 = 191.25 -> 191
    (((0.5, 0), (0.25, 0), (1.0, 0)),
     [1, 3, 5, 0, 0, 1, 5, 255], [0, 0, 0, 2, 6, 2, 2, 255], [0, 2, 2, 0, 2, 1, 3, 191]),
    # zero points: (a − 128)/2 + (b − 7)/4 + z_c, e.g. 63.5 + 62 + 100 = 225.5 -> 226
    (((0.5, 128), (0.25, 7), (1.0, 100)),
     [128, 129, 131, 0, 0, 128, 255], [7, 7, 7, 9, 0, 9, 255], [100, 100, 102, 36, 34, 100, 226]),
    # saturation: 325.5 -> 255 at the top, −65.75 -> 0 at the bottom
    (((0.5, 128), (0.25, 7), (1.0, 200)), [255, 200], [255, 7], [255, 236]),
    (((0.5, 128), (0.25, 7), (1.0, 0)), [0, 130, 131], [0, 7, 11], [0, 1, 2]),
]  # fmt: skip


@pytest.mark.parametrize(("grids", "a", "b", "expected"), ADD_GOLDEN)
def test_qlinear_add_golden_codes(grids, a, b, expected):
    a, b = np.array(a), np.array(b)
    assert _ort_add(grids, a, b).tolist() == expected
    assert _add(grids, a, b).astype(np.uint8).tolist() == expected


def test_qlinear_add_equals_onnx_runtime_on_every_pair_of_codes():
    """All 65,536 (a, b) pairs for calibrated-looking grids, where the float32 ratios and
    the fma in ONNX Runtime's kernel decide the ties."""
    a, b = (g.ravel() for g in np.meshgrid(np.arange(256), np.arange(256), indexing="ij"))
    rng = np.random.default_rng(0)
    for _ in range(6):
        scales, zeros = np.exp(rng.uniform(-6, 0, 3)).astype(np.float32), rng.integers(0, 256, 3)
        grids = tuple((float(s), int(z)) for s, z in zip(scales, zeros, strict=True))
        np.testing.assert_array_equal(_add(grids, a, b), _ort_add(grids, a, b))


def _pool_model(x_grid, y_grid, shape) -> onnx.ModelProto:
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["xf"]),
        helper.make_node("GlobalAveragePool", ["xf"], ["p"]),
        helper.make_node("QuantizeLinear", ["p", "sy", "zy"], ["c"]),
    ]
    inits = [
        ("sx", x_grid[0], np.float32),
        ("zx", x_grid[1], np.uint8),
        ("sy", y_grid[0], np.float32),
        ("zy", y_grid[1], np.uint8),
    ]
    return _model(nodes, [("x", ["n", *shape])], inits)


def _pools(x_grid, y_grid, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ONNX Runtime's QLinearGlobalAveragePool, lowbit's) codes of uint8 ``x``."""
    model = _pool_model(x_grid, y_grid, x.shape[1:])
    assert kernel_census(model) == {"QLinearGlobalAveragePool": 1}
    real = ort_session(model).run(None, {"x": x.astype(np.uint8)})[0]
    mine = qlinear_avgpool(torch.from_numpy(x).float(), x_grid=x_grid, y_grid=y_grid)
    return real, mine.numpy()


def test_qlinear_global_avgpool_golden_codes():
    """Source: MLAS (core/mlas/lib/qlgavgpool.cpp, MlasRequantizeOutput) rounds
    fl(Σ x − z_x·n) · fl(s_x / (s_y·n)) half to even, adds z_y, saturates: on 2×2 pixels with
    unit scales, sums 2, 6, 10 average to 0.5, 1.5, 2.5 -> 0, 2, 2, and with z_y = 3 the zero
    point is added after rounding (3, 5, 5, not 4, 5, 6); z_x = 10 on zero codes gives −10,
    clamped to 0; s_y = 1/4 scales 255 to 1020, saturated to 255."""
    sums = np.array([2, 6, 10]).reshape(1, 3, 1, 1)
    x = np.concatenate([sums, np.zeros((1, 3, 1, 3), np.int64)], axis=3).reshape(1, 3, 2, 2)
    for y_grid, expected in (((1.0, 0), [0, 2, 2]), ((1.0, 3), [3, 5, 5])):
        real, mine = _pools((1.0, 0), y_grid, x)
        assert real.ravel().tolist() == mine.ravel().tolist() == expected
    real, mine = _pools((1.0, 10), (1.0, 0), np.zeros((1, 1, 2, 2), np.int64))
    assert real.ravel().tolist() == mine.ravel().tolist() == [0]
    real, mine = _pools((1.0, 0), (0.25, 0), np.full((1, 1, 2, 2), 255))
    assert real.ravel().tolist() == mine.ravel().tolist() == [255]


def test_qlinear_global_avgpool_equals_onnx_runtime_on_random_codes():
    rng = np.random.default_rng(1)
    for h, w in ((1, 1), (2, 3), (7, 7), (8, 8)):
        x = rng.integers(0, 256, size=(4, 20, h, w))
        scales = np.exp(rng.uniform(-5, -1, 2)).astype(np.float32)
        grids = [(float(s), int(z)) for s, z in zip(scales, rng.integers(0, 256, 2), strict=True)]
        real, mine = _pools(*grids, x)
        np.testing.assert_array_equal(mine, real)


def test_pool_output_scale_keeps_onnx_runtime_in_range():
    """MLAS refuses s_x / (s_y·n) >= 256 (an output grid finer than the input's average can
    resolve, e.g. a pool calibrated on zeros): the scale is widened just enough."""
    assert pool_output_scale(0.5, 0.01, 49) == float(np.float32(0.01))  # in range: as stored
    s_y = pool_output_scale(1.0, 1e-12, 4)
    f32 = np.float32
    assert f32(1.0) / (f32(s_y) * f32(4)) < POOL_MAX_SCALE
    assert f32(1.0) / (np.nextafter(f32(s_y), f32(0)) * f32(4)) >= POOL_MAX_SCALE  # smallest
    x = np.arange(8).reshape(2, 1, 2, 2)
    real, mine = _pools((1.0, 0), (s_y, 0), x)  # ONNX Runtime accepts it
    np.testing.assert_array_equal(mine, real)


def test_fma32_rounds_once():
    """Against exact rationals: x·y + z rounded once to float32 (ties to even), including
    sums that land within a float64 rounding of a float32 midpoint (where rounding the
    float64 sum again would be wrong)."""
    from fractions import Fraction

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, 2000).astype(np.float32)
    y = np.exp(rng.uniform(-8, 2, 2000)).astype(np.float32)
    z = (rng.normal(size=2000) * 100).astype(np.float32)
    # exact sums 1 + 2^-24 + 2^-60 and 1 + 2^-23 + 2^-24 - 2^-60: float64 rounds both to a
    # float32 midpoint, and ties to even would then pick 1 and 1 + 2^-22
    x[:2] = [2**-24 * (1 + 2**-12), 2**-24 * (1 + 2**-18)]
    y[:2] = [1 - 2**-12 + 2**-24, 1 - 2**-18]
    z[:2] = [1, 1 + 2**-23]
    naive = (x[:2].astype(np.float64) * y[:2] + z[:2]).astype(np.float32)
    assert naive.tolist() == [1.0, 1 + 2**-22]
    got = fma32(*(torch.from_numpy(v) for v in (x, y, z))).numpy()
    for xi, yi, zi, gi in zip(x, y, z, got, strict=True):
        exact = Fraction(float(xi)) * Fraction(float(yi)) + Fraction(float(zi))
        below = np.float32(float(exact))  # nearest float64 then float32: may be one off
        best = min(
            (
                below,
                np.nextafter(below, np.float32(np.inf)),
                np.nextafter(below, np.float32(-np.inf)),
            ),
            key=lambda c: (abs(Fraction(float(c)) - exact), int(c.view(np.int32)) & 1),
        )
        assert gi == best, (xi, yi, zi)
    assert got[:2].tolist() == [1 + 2**-23, 1 + 2**-23]


def test_a_clip_before_a_quantizer_becomes_a_clip_of_the_codes():
    """ReLU6 (a Clip with constant bounds) commutes with rounding to a grid, bounds rounded
    too: round(clip(x, 0, 1)) = clip(round(x), round(0), round(1)). On a grid wider than
    [0, 1] (scale 0.02: codes 0…255 up to 5.1) the exporter keeps a Clip of the uint8 codes
    to [0, 50] and the graph computes exactly what clipping before quantizing computes."""
    from lowbit.models.export.onnx_quant import ActGrid, LayerQuant, WeightGrid, quantize_graph

    rng = np.random.default_rng(3)
    w = rng.integers(-7, 8, size=(4, 2, 1, 1))
    inits = [
        numpy_helper.from_array(np.asarray(v, np.float32), n)
        for n, v in (("lo", 0.0), ("hi", 1.0), ("w", w * 0.1))
    ]
    nodes = [
        helper.make_node("Clip", ["input", "lo", "hi"], ["clipped"], name="/Clip"),
        helper.make_node("Conv", ["clipped", "w"], ["output"], name="/conv/Conv"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 2, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 4, 4, 4])],
        inits,
    )
    float_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    layer = LayerQuant("conv", "conv", (ActGrid(0.02, 0),), WeightGrid(w, np.full(4, 0.1), 4))
    qdq, _ = quantize_graph(float_model, [layer])
    clips = [n for n in qdq.graph.node if n.op_type == "Clip"]
    assert len(clips) == 1
    inits = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    assert [inits[clips[0].input[1]].item(), inits[clips[0].input[2]].item()] == [0, 50]
    assert inits[clips[0].input[1]].dtype == np.uint8  # on the codes, not the floats
    # the reference: the float Clip stays before the quantizer (bit-identical convs after)
    reference = onnx.ModelProto()
    reference.CopyFrom(qdq)
    q = next(n for n in reference.graph.node if n.op_type == "QuantizeLinear")
    clip = next(n for n in reference.graph.node if n.op_type == "Clip")
    dq = next(n for n in reference.graph.node if clip.output[0] in n.input)
    dq.input[0], clip.output[0] = q.output[0], "input_clipped"
    clip.input[:] = ["input", "lo", "hi"]
    q.input[0] = "input_clipped"
    reference.graph.initializer.extend(
        numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", 0.0), ("hi", 1.0))
    )
    x = rng.uniform(-1, 3, size=(8, 2, 4, 4)).astype(np.float32)
    ours, ref = (ort_session(m).run(None, {"input": x})[0] for m in (qdq, reference))
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("net", list(NETS))
def test_bridge_pads_the_channels_the_export_pads(trained_nets, net, tmp_path):
    """On a profile that pads conv channels as lowbit's export does, the search's workload
    of a pruned config costs what hwsim predicts for the exported INT8 graph itself: the
    export leaves a residual stream's and a depthwise conv's channels unpadded, and so does
    the bridge (it once padded every conv, and simulated such configs 20-26 % fast)."""
    from copy import deepcopy
    from dataclasses import replace

    from lowbit import hwsim
    from lowbit.hwsim.onnx_workload import load_onnx_workload
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.trace import prepare_model

    model = deepcopy(trained_nets[net])
    prepare_model(model, torch.zeros(1, *model.input_shape))  # its prune groups, traced
    plan = CompressionPlan(layers={"_default": LayerSpec(w_bits=8, a_bits=8, keep=0.5)})
    _, result = _export(model, plan, tmp_path)
    cpu = load_profile("cpu-x86-avx2")
    o = cpu.overheads
    pads = replace(
        cpu,
        overheads=replace(
            o,
            pad_conv_channels=True,
            conv_channel_multiple=4,
            conv_min_out_channels=16,
            conv_cycles_per_pixel=20.0,
            unaligned_conv_cycles_per_pixel=40.0,
            # the export on this host stores 8-bit weights as uint8 where u8·s8 kernels
            # saturate (AVX2 without VNNI); the imported graph says so, the bridge's profile too
            u8_weight_bits=8 if resolve_weight_type("auto") == "u8" else 0,
        ),
    )
    bridge = to_workload(model, plan)
    deployed = load_onnx_workload(result.int8_path)
    convs = {layer.name: layer for layer in bridge.layers if layer.op == "conv2d"}
    assert any(not c.pad_out for c in convs.values())  # a residual / depthwise producer
    cycles = {
        name: hwsim.simulate(w, pads).total_cycles
        for name, w in (("bridge", bridge), ("deployed", deployed))
    }
    # the bridge also charges the Pad operator that widens the 1-channel input (one
    # dispatch; the import counts Pad as free data movement)
    pad = pads.overheads.layer_cycles
    assert cycles["bridge"] - pad == pytest.approx(cycles["deployed"], rel=0.01)
