"""ONNX models as hwsim workloads: shapes and MACs of exported networks, attention, bits of
quantized graphs, unmapped ops reported by name, bad files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx_nets import Conv1dNet, ConvZoo, ResNet18, TinyTransformer, export

from lowbit.hwsim._onnx_graph import load_graph
from lowbit.hwsim._onnx_nchwc import reorders
from lowbit.hwsim.errors import WorkloadError
from lowbit.hwsim.onnx_workload import UnmappedOpsError, import_onnx, load_onnx_workload
from lowbit.hwsim.workload import FLOAT_LAYOUT_KINDS, Compression
from lowbit.hwsim.workloads import builtin_workload
from lowbit.models.workloads import resolve_workload

COMPUTE = ("conv2d", "linear", "matmul")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- exported networks ---------------------------------------------------------------------


@pytest.mark.slow
def test_resnet18_from_the_default_exporter_matches_the_builtin_workload(tmp_path):
    path = export(ResNet18(), torch.zeros(1, 3, 224, 224), tmp_path / "r18.onnx", dynamo=True)
    workload = load_onnx_workload(path)
    builtin = builtin_workload("resnet18")  # torchvision shapes, written by hand in hwsim
    # the float graph's one reorder out of ONNX Runtime's blocked layout (free unless a
    # profile prices it): the last block's output, for the ReduceMean this exporter writes
    # for the average pool (no blocked kernel; ONNX Runtime's optimized graph does the same)
    reorders = [
        layer for layer in workload.layers if getattr(layer, "kind", "") in FLOAT_LAYOUT_KINDS
    ]
    assert [(r.kind, r.elements) for r in reorders] == [("reorder_output", 512 * 7 * 7)]
    layers = [layer for layer in workload.layers if layer not in reorders]
    assert [layer.op for layer in layers] == [layer.op for layer in builtin.layers]
    for ours, reference in zip(layers, builtin.layers, strict=True):
        assert ours.macs == reference.macs, ours.name
        assert ours.memory_elements() == reference.memory_elements(), ours.name
        if ours.op in COMPUTE:  # compute layers carry the torch module names
            assert ours.name == reference.name
    # hand counts: conv1 = 112·112 outputs × 64 filters × 7·7·3; fc = 512 × 1000
    assert workload.layer("conv1").macs == 112 * 112 * 64 * 7 * 7 * 3
    assert workload.layer("fc").macs == 512 * 1000
    assert workload.macs == 1_814_073_344  # torchvision's 1.81 GMACs
    assert all(layer.compression == Compression() for layer in workload.layers)  # float: W8A8


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_conv_kinds_hand_counted(tmp_path, dynamo):
    path = export(ConvZoo(), torch.zeros(1, 3, 16, 16), tmp_path / "convs.onnx", dynamo=dynamo)
    layers = {layer.name: layer for layer in load_onnx_workload(path).layers}
    assert layers["plain"].macs == 16 * 16 * 16 * (3 * 3 * 3)  # out pixels × filters × k·k·in
    grouped = layers["grouped"]
    assert (grouped.groups, grouped.macs) == (4, 16 * 16 * 32 * (3 * 3 * 16 // 4))
    depthwise = layers["depthwise"]
    assert depthwise.depthwise and (depthwise.out_h, depthwise.out_w) == (8, 8)
    assert depthwise.macs == 8 * 8 * 32 * 3 * 3  # one 3×3 filter per channel
    assert layers["fc"].macs == 32 * 8 * 8 * 10


def test_conv1d_is_a_conv2d_of_height_one(tmp_path):
    path = export(Conv1dNet(), torch.zeros(1, 4, 40), tmp_path / "c1d.onnx", dynamo=False)
    conv = load_onnx_workload(path).layer("conv")
    assert (conv.in_h, conv.in_w, conv.k_h, conv.k_w, conv.out_h, conv.out_w) == (
        1,
        40,
        1,
        5,
        1,
        18,
    )
    assert conv.macs == 18 * 8 * 5 * 4  # (40 - 5) // 2 + 1 = 18 outputs × 8 filters × 5·4


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_transformer_attention_matmuls(tmp_path, dynamo):
    batch, tokens, dim, heads, hidden = 2, 6, 32, 4, 64
    model = TinyTransformer(dim=dim, heads=heads, hidden=hidden)
    path = export(model, torch.zeros(batch, tokens, dim), tmp_path / "t.onnx", dynamo=dynamo)
    workload = load_onnx_workload(path)
    linears = {layer.name: layer for layer in workload.layers if layer.op == "linear"}
    assert set(linears) == {"attn.q", "attn.k", "attn.v", "attn.proj", "fc1", "fc2", "head"}
    assert linears["attn.q"].macs == batch * tokens * dim * dim  # every token row
    assert linears["fc1"].macs == batch * tokens * dim * hidden
    assert linears["head"].macs == batch * dim * 5
    scores, context = [layer for layer in workload.layers if layer.op == "matmul"]
    head_dim = dim // heads
    # QKᵀ: (tokens × head_dim)·(head_dim × tokens) per head and sample; AV: (t × t)·(t × hd)
    assert (scores.M, scores.N, scores.K, scores.heads) == (tokens, tokens, head_dim, batch * heads)
    assert (context.M, context.N, context.K, context.heads) == (tokens, head_dim, tokens, 8)
    ops = [layer.op for layer in workload.layers]
    assert ops.count("elementwise") >= 5  # 2 LayerNorms, softmax, GELU, 2 residual adds
    softmax = workload.layers[ops.index("matmul") + 1]
    assert softmax.op == "elementwise" and softmax.elements == batch * heads * tokens * tokens
    assert workload.macs == model_macs(batch, tokens, dim, heads, hidden)


def model_macs(batch: int, tokens: int, dim: int, heads: int, hidden: int) -> int:
    """TinyTransformer MACs: 4 projections, QKᵀ and AV, the MLP, the head (by hand)."""
    rows = batch * tokens
    return (
        rows * dim * dim * 4 + 2 * rows * tokens * dim + rows * dim * hidden * 2 + batch * dim * 5
    )


# --- quantized graphs --------------------------------------------------------------------


def _qdq_model(weights: dict[str, np.ndarray], *, act_clip: int | None) -> onnx.ModelProto:
    """input → Q/DQ (uint8, optionally clipped to [0, act_clip]) → Gemm per weight in turn;
    weights are int8 codes per output channel (axis 0, transB); ``float:`` names stay float."""
    nodes, inits, x = [], [], "input"
    features = next(iter(weights.values())).shape[1]
    for i, (name, codes) in enumerate(weights.items()):
        inits += [
            numpy_helper.from_array(np.array(0.1, np.float32), f"s{i}"),
            numpy_helper.from_array(np.array(0, np.uint8), f"z{i}"),
        ]
        nodes.append(helper.make_node("QuantizeLinear", [x, f"s{i}", f"z{i}"], [f"q{i}"]))
        codes_out = f"q{i}"
        if act_clip is not None:
            inits += [
                numpy_helper.from_array(np.array(0, np.uint8), f"lo{i}"),
                numpy_helper.from_array(np.array(act_clip, np.uint8), f"hi{i}"),
            ]
            nodes.append(helper.make_node("Clip", [f"q{i}", f"lo{i}", f"hi{i}"], [f"c{i}"]))
            codes_out = f"c{i}"
        nodes.append(helper.make_node("DequantizeLinear", [codes_out, f"s{i}", f"z{i}"], [f"d{i}"]))
        if name.startswith("float:"):
            inits.append(numpy_helper.from_array(codes.astype(np.float32), f"{name[6:]}.weight"))
            weight = f"{name[6:]}.weight"
        else:
            inits += [
                numpy_helper.from_array(codes.astype(np.int8), f"{name}.weight_quantized"),
                numpy_helper.from_array(np.full(codes.shape[0], 0.05, np.float32), f"ws{i}"),
                numpy_helper.from_array(np.zeros(codes.shape[0], np.int8), f"wz{i}"),
            ]
            weight = f"{name}.weight_dq"
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{name}.weight_quantized", f"ws{i}", f"wz{i}"],
                    [weight],
                    axis=0,
                )
            )
        nodes.append(helper.make_node("Gemm", [f"d{i}", weight], [f"y{i}"], transB=1))
        x = f"y{i}"
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", features])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_bits_come_from_the_quantized_graph(tmp_path):
    rng = np.random.default_rng(0)
    weights = {
        "int8": rng.integers(-128, 128, size=(16, 16)),  # 256 levels: 8 bits
        "int4": rng.integers(-8, 8, size=(16, 16)),  # codes −8…7: 4 bits
        "int4_scaled": 15 * rng.integers(-8, 8, size=(16, 16)),  # same grid, step 15: 4 bits
        "int2": rng.integers(-2, 2, size=(16, 16)),  # 2 bits
        "float:plain": rng.normal(size=(16, 16)),  # left in float: 32 bits
    }
    path = tmp_path / "qdq.onnx"
    onnx.save(_qdq_model(weights, act_clip=None), path)
    result = import_onnx(path)
    assert result.quantized
    bits = {
        layer.name: (layer.compression.w_bits, layer.compression.a_bits)
        for layer in result.workload.layers
    }
    # the float input is quantized by an operator of its own (free on accelerators)
    assert bits == {
        "int8": (8, 8),
        "int4": (4, 8),
        "int4_scaled": (4, 8),
        "int2": (2, 8),
        "plain": (None, 8),  # None: float
        "quantize:input": (8, 8),
    }
    assert result.workload.layers[0].kind == "quantize"
    onnx.save(_qdq_model({"a": weights["int4"]}, act_clip=15), path)  # uint8 clipped to 0…15
    (_, layer) = load_onnx_workload(path).layers
    assert (layer.compression.w_bits, layer.compression.a_bits) == (4, 4)


@pytest.mark.slow
def test_lowbit_export_round_trip(tmp_path, trained):
    """The INT8 ONNX ``lowbit export`` writes has the plan's shapes and bits, as the bridge
    simulates them (pinned first/last layers at W8A8, a pruned layer, 2-bit weights, a
    4-bit activation grid carried through a MaxPool)."""
    from lowbit.models.bridge import to_workload
    from lowbit.models.compression.plan import CompressionPlan, LayerSpec
    from lowbit.models.export.deploy import export_plan
    from lowbit.models.zoo import build

    trained("digits-cnn")  # trains into the session cache export_plan reads
    plan = CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=4, a_bits=4),
            "conv2": LayerSpec(w_bits=2, a_bits=4, keep=0.5),
        }
    )
    # unpadded (--no-pad-channels): padding for ONNX Runtime's kernels adds zero channels
    exported = export_plan("digits-cnn", plan, out_dir=tmp_path / "export", pad_channels=False)
    ours = load_onnx_workload(exported.int8_path)
    bridge = to_workload(build("digits-cnn"), plan)

    def compute(workload):
        return [
            (layer.name, layer.macs, layer.compression.w_bits, layer.compression.a_bits)
            for layer in workload.layers
            if layer.op in COMPUTE
        ]

    assert compute(ours) == compute(bridge)
    assert ("conv2", 147456, 2, 4) in compute(ours)  # 8·8 pixels × 16 kept filters × 9·16


# --- unmapped ops and bad input ----------------------------------------------------------


def _with_unmapped(path) -> None:
    """Conv → ConvTranspose (no hwsim mapping) → a custom-domain op → Relu."""
    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "conv.weight")
    wt = numpy_helper.from_array(np.ones((4, 4, 2, 2), np.float32), "up.weight")
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight"], ["a"], name="conv", pads=[1] * 4),
        helper.make_node("ConvTranspose", ["a", "up.weight"], ["b"], name="up1", strides=[2, 2]),
        helper.make_node("Mystery", ["b"], ["c"], name="magic", domain="example.custom"),
        helper.make_node("Relu", ["b"], ["d"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [
            helper.make_tensor_value_info("c", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("d", TensorProto.FLOAT, None),
        ],
        [w, wt],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("example.custom", 1)]
    )
    onnx.save(model, path)


def test_unmapped_ops_are_reported_by_name(tmp_path):
    path = tmp_path / "odd.onnx"
    _with_unmapped(path)
    with pytest.raises(UnmappedOpsError) as info:
        import_onnx(path)
    message = str(info.value)
    assert "up1 (ConvTranspose)" in message and "magic (Mystery)" in message
    assert [name for name, _, _ in info.value.unmapped] == ["up1", "magic"]
    result = import_onnx(path, allow_unmapped=True)
    # the conv's output leaves the blocked float layout for the ConvTranspose
    assert [layer.name for layer in result.workload.layers] == ["conv", "reorder:a", "relu"]
    assert [(name, op) for name, op, _ in result.unmapped] == [
        ("up1", "ConvTranspose"),
        ("magic", "Mystery"),
    ]
    # the library: an error by default, one warning line with allow_unmapped
    with pytest.raises(UnmappedOpsError):
        resolve_workload(str(path))
    warnings = []
    workload = resolve_workload(str(path), allow_unmapped=True, warn=warnings.append)
    assert workload.name == "odd"
    assert warnings == [
        f"warning: {path}: 2 op(s) not simulated: up1 (ConvTranspose), magic (Mystery)"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x08\x07\x12\xff\xfe garbage", "not a readable ONNX model"),
        (b"this is a text file, not a model\n", "ONNX model"),
        (b"", "not an ONNX model"),
    ],
    ids=["corrupt", "text", "empty"],
)
def test_bad_files_name_the_file(tmp_path, content, expected):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(WorkloadError, match=expected) as info:
        resolve_workload(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("group", "expected"),
    [(0, r"groups=0"), (-1, r"groups=-1"), (3, r"groups=3 must divide in_c=32")],
)
def test_a_conv_whose_attributes_make_no_layer_names_the_file_and_node(tmp_path, group, expected):
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((32, 32, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], group=group)],
        "odd",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(WorkloadError, match=expected) as info:
        resolve_workload(str(path))
    assert str(path) in str(info.value) and "Conv_0" in str(info.value)


def test_missing_file_and_symbolic_dims(tmp_path):
    with pytest.raises(WorkloadError, match="missing.onnx: no such file"):
        import_onnx(tmp_path / "missing.onnx")
    model = TinyTransformer()
    path = tmp_path / "t.onnx"
    model.eval()
    with pytest.warns(Warning):  # TorchScript exporter deprecation
        torch.onnx.export(
            model,
            (torch.zeros(1, 6, 32),),
            str(path),
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch", 1: "tokens"}},
        )
    with pytest.raises(WorkloadError, match=r"axis 1 \(tokens\).*dims="):
        import_onnx(path)
    workload = load_onnx_workload(path, batch=2, dims={"tokens": 6})
    assert workload.macs == model_macs(2, 6, 32, 4, 64)


def test_ort_quantized_transformer_keeps_its_kinds_and_unfused_bias_adds(tmp_path):
    """An encoder quantized by ONNX Runtime's quantize_static: memory-only layers name their
    operator (a CPU profile charges LayerNorm, softmax, GELU per element) and a bias Add after
    a requantized MatMul is a pass of its own (ONNX Runtime runs it as QLinearAdd), while the
    FP32 graph's bias adds stay in the MatMul's output stage."""
    from lowbit.models.hostcal.graphs import quantize_int8
    from lowbit.models.hostcal.heldout import transformer

    onnx.save(transformer(tokens=8, dim=32, layers=1, heads=2), tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    fp32 = load_onnx_workload(tmp_path / "fp32.onnx")
    int8 = load_onnx_workload(tmp_path / "int8.onnx")
    assert fp32.macs == int8.macs
    kinds = [layer.kind for layer in int8.layers if layer.op == "elementwise"]
    assert {"layernorm", "softmax", "gelu", "add"} <= set(kinds)
    # every bias add (q, k, v, proj, fc1, fc2) is a pass of its own in INT8 only, and so is
    # each residual add and GELU's "+ 1": each runs between Q/DQ pairs as a QLinearAdd of
    # its own, not fused with the add before it; so is the attention's scale after QKᵀ
    fp32_kinds = [layer.kind for layer in fp32.layers if layer.op == "elementwise"]
    assert fp32_kinds.count("add") == 2 and kinds.count("add") == 9
    assert "mul" in kinds and "mul" not in fp32_kinds


def test_runtime_operators_of_an_ort_quantized_cnn(tmp_path):
    """ShuffleNetV2 quantized by ONNX Runtime: its input is quantized and transposed to
    channels-last by operators of their own, a channel shuffle's Reshape costs two layout
    copies -- except the first of each stage, whose Concat joins two conv branches (both
    channels-last): ONNX Runtime merges the layout change into that shuffle's Transpose,
    which then moves the innermost axis (element by element) -- and its convs keep the
    channel counts of the file (58, 116: no padding on a profile that pads lowbit's own
    exports)."""
    from dataclasses import replace

    from lowbit import hwsim
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.hostcal.graphs import quantize_int8
    from lowbit.models.hostcal.heldout import shufflenet_v2

    onnx.save(shufflenet_v2(64), tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    layers = load_onnx_workload(tmp_path / "int8.onnx").layers
    kinds = [getattr(layer, "kind", "") for layer in layers]
    assert kinds[:2] == ["quantize", "transpose"]  # the input, then its layout change
    # 16 channel shuffles (4-D -> Reshape -> Transpose -> Reshape -> 4-D): ONNX Runtime
    # takes the channels-last tensor back to NCHW, shuffles, and goes channels-last again;
    # the 3 stages' first shuffles are one strided copy each; the head's Flatten reads NCHW
    assert kinds.count("transpose_strided") == 3
    # back to NCHW (inward) before each other shuffle and the Flatten; the input, each
    # shuffle's Transpose and its layout change back channels-last (outward)
    assert kinds.count("transpose_inward") == (16 - 3) + 1
    assert kinds.count("transpose") == 1 + 2 * (16 - 3)
    assert kinds.count("concat") == 16 and kinds.count("split") == 3 + 7 + 3
    convs = [layer for layer in layers if layer.op == "conv2d"]
    assert all(c.as_deployed for c in convs) and {58, 116} <= {c.out_c for c in convs}
    # a profile that pads lowbit's exports runs these as they are: same as without padding
    cpu = load_profile("cpu-x86-avx2")
    o = cpu.overheads
    pads = replace(
        cpu,
        overheads=replace(
            o,
            pad_conv_channels=True,
            conv_channel_multiple=16,
            unaligned_conv_cycles_per_pixel=40.0,
        ),
    )
    plain = replace(pads, overheads=replace(pads.overheads, pad_conv_channels=False))
    conv = next(c for c in convs if c.out_c == 58 and c.k_h == 1)
    assert (
        hwsim.simulate_layer(conv, pads).total_cycles
        == hwsim.simulate_layer(conv, plain).total_cycles
    )
    assert (
        hwsim.simulate_layer(replace(conv, as_deployed=False), pads).total_cycles
        != hwsim.simulate_layer(conv, pads).total_cycles
    )


def _host_nchwc_block() -> int:
    """ONNX Runtime's float channel block on this host: 16 floats with AVX-512F, 8 with
    AVX2 (its x86 builds; the rules' block on the tested host)."""
    from lowbit.models.hostcal.isa import cpu_flags

    return 16 if "avx512f" in cpu_flags() else 8


def _add_relu6():
    """Two convs added, a ReLU6 (Clip) after the Add, then a conv: the Clip has no blocked
    kernel of its own, so the Add's output leaves the blocked layout and comes back."""
    from lowbit.models.hostcal.graphs import GraphBuilder

    n = GraphBuilder("addr6", (32, 14, 14), seed=7)
    a, b = n.conv("x", 32, 3), n.conv("x", 32, 3)
    return n.model(n.conv(n.relu6(n.add(a, b, relu=False)), 32, 3))


def _conv_net(name: str, cin: int, size: int, convs, *, relu6: bool = False):
    """A float net of ``convs`` ((out channels, groups) each) after a ``cin``-channel input;
    ``relu6``: each conv followed by a ReLU6 (a Clip, as PyTorch exports it)."""
    from lowbit.models.hostcal.graphs import GraphBuilder

    n = GraphBuilder(name, (cin, size, size), seed=7)
    x = "x"
    for cout, groups in convs:
        x = n.conv(x, cout, 3, groups=groups, relu=not relu6)
        x = n.relu6(x) if relu6 else x
    return n.model(x)


@pytest.mark.parametrize(
    "build",
    [
        "shufflenet_v2",  # unaligned 58-channel convs, concats, shuffles: 14 in, 18 out
        "inception",
        "mobilenet_v2",
        "stem",  # 3 channels: read NCHW, one reorder out
        "narrow_chain",  # 8-channel convs read NCHW: each output reordered back
        "depthwise",  # 96 channels, depthwise: in and out
        "unaligned",  # 58 input channels: no blocked conv, no reorder
        "relu6",  # a Clip fused into each blocked conv: one reorder, at the end
        "grouped",  # 24 channels a group: not whole blocks, runs NCHW
        "multiplier",  # depthwise with 2 filters a channel: runs NCHW
        "add_relu6",  # a Clip after an Add: no blocked kernel, out and in again
    ],
)
def test_float_reorders_match_onnx_runtimes_optimized_graph(build, tmp_path):
    """The blocked float layout's reorders hwsim charges a float graph are the ones ONNX
    Runtime's optimized graph runs on this x86 host (counted by kind)."""
    from lowbit.models.export.ort import kernel_census
    from lowbit.models.hostcal import heldout

    model = {
        "shufflenet_v2": lambda: heldout.shufflenet_v2(64),
        "inception": lambda: heldout.inception(32),
        "mobilenet_v2": lambda: heldout.mobilenet_v2(64),
        "stem": lambda: _conv_net("stem", 3, 32, [(32, 1), (32, 1)]),
        "narrow_chain": lambda: _conv_net("narrow", 8, 16, [(8, 1)] * 4),
        "depthwise": lambda: _conv_net("dw", 96, 14, [(96, 96)]),
        "unaligned": lambda: _conv_net("odd", 58, 14, [(64, 1)]),
        "relu6": lambda: _conv_net("r6", 16, 14, [(32, 1), (32, 32), (16, 1)], relu6=True),
        "grouped": lambda: _conv_net("g2", 32, 14, [(48, 1), (48, 2), (32, 1)]),
        "multiplier": lambda: _conv_net("dm", 32, 14, [(16, 1), (32, 16), (32, 1)]),
        "add_relu6": _add_relu6,
    }[build]()
    onnx.save(model, tmp_path / "fp32.onnx")
    census = kernel_census(model)
    kinds = [
        getattr(layer, "kind", "") for layer in load_onnx_workload(tmp_path / "fp32.onnx").layers
    ]
    # the importer assumes AVX-512's blocks of 16 channels
    by_rule = [kind for _, _, kind in reorders(load_graph(tmp_path / "fp32.onnx"))]
    assert sorted(kinds.count(k) for k in FLOAT_LAYOUT_KINDS) == sorted(
        by_rule.count(k) for k in FLOAT_LAYOUT_KINDS
    )
    # ...and the rules at this host's own block equal what ONNX Runtime runs here
    block = _host_nchwc_block()
    here = [kind for _, _, kind in reorders(load_graph(tmp_path / "fp32.onnx"), block=block)]
    assert here.count("reorder_input") == census.get("ReorderInput", 0)
    assert here.count("reorder_output") == census.get("ReorderOutput", 0)
    expected = {
        "narrow_chain": (0, 4),
        "depthwise": (1, 1),
        "unaligned": (0, 0),
        "stem": (0, 1),
        "relu6": (1, 1),
    }
    # the grouped conv and the depthwise one with 2 filters a channel run NCHW between two
    # blocked convs: out of the blocked layout before each, back in after
    expected |= {"grouped": (2, 2), "multiplier": (2, 2), "add_relu6": (2, 2)}
    if build in expected:  # the rules by hand (module lowbit.hwsim._onnx_nchwc), blocks of 16
        assert (kinds.count("reorder_input"), kinds.count("reorder_output")) == expected[build]


@pytest.mark.parametrize(
    "build",
    ["resnet18", "mobilenet_v2", "inception", "transformer"],
)
def test_runtime_operators_match_onnx_runtimes_optimized_graph(build, tmp_path):
    """The data movement and integer element-wise kernels hwsim charges for an ORT-quantized
    graph are the ones ONNX Runtime's optimized graph runs (counted by operator type)."""
    from collections import Counter

    from lowbit.models.export.ort import kernel_census
    from lowbit.models.hostcal import heldout
    from lowbit.models.hostcal.graphs import quantize_int8

    model = {
        "resnet18": lambda: heldout.resnet18(64),
        "mobilenet_v2": lambda: heldout.mobilenet_v2(64),
        "inception": lambda: heldout.inception(32),
        "transformer": lambda: heldout.transformer(16, 32),
    }[build]()
    onnx.save(model, tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    census = kernel_census(onnx.load(tmp_path / "int8.onnx"))
    kinds = Counter(
        getattr(layer, "kind", "") for layer in load_onnx_workload(tmp_path / "int8.onnx").layers
    )
    assert kinds["transpose"] + kinds["transpose_inward"] == census.get("Transpose", 0)
    assert kinds["concat"] == census.get("QLinearConcat", 0) + census.get("Concat", 0)
    assert kinds["softmax"] == census.get("QLinearSoftmax", 0)
    # every QLinearAdd / QLinearMul is a layer of its own: an element-wise op whose input
    # was requantized does not join the op before it (the runtime runs each as a kernel)
    assert kinds["add"] == census.get("QLinearAdd", 0)
    assert kinds["mul"] == census.get("QLinearMul", 0)
    assert kinds["quantize"] == census.get("QuantizeLinear", 0)


@pytest.mark.parametrize(
    ("perm", "strided"),
    [
        ([0, 2, 3, 1], False),  # NCHW -> NHWC: one axis moved outwards
        ([0, 3, 1, 2], False),  # NHWC -> NCHW: one axis moved inwards
        ([0, 2, 1, 3, 4], False),  # a channel shuffle in NCHW: the innermost axes kept
        ([0, 2, 1, 3], False),  # attention's heads: the innermost axis kept
        ([0, 4, 3, 1, 2], True),  # a shuffle with the layout change merged in
        ([0, 3, 2, 1], True),  # channels and width swapped
    ],
)
def test_a_transpose_is_strided_when_it_moves_the_innermost_axis_and_more(perm, strided):
    """ONNX Runtime copies a permutation that keeps the innermost axis in contiguous runs and
    one that moves a single axis with its own fast path; any other permutation that moves
    the innermost axis is copied element by element (``transpose_strided``)."""
    from lowbit.hwsim._onnx_runtime import strided_transpose

    node = helper.make_node("Transpose", ["x"], ["y"], perm=perm)

    class Graph:  # a Transpose of the graph input: nothing merged into it
        producer: dict = {}
        consumers: dict = {}
        nodes = [node]

    assert strided_transpose(Graph, node, quantized=True) is strided


def test_a_float_conv_with_a_fused_relu6_pays_a_pass_over_its_output(tmp_path):
    """ONNX Runtime applies a fused ReLU in its float conv kernel's registers and a ReLU6
    (Clip) or LeakyReLU in a second pass over the output: the importer adds that pass
    (``activation_pass``) after such a conv, not after one whose output is read twice (no
    fusion) nor in a quantized graph (the activation folds into the requantization); it
    costs its elements at the profile's rate, with no dispatch, and only in float."""
    from dataclasses import replace

    from lowbit import hwsim
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.hostcal.graphs import GraphBuilder, quantize_int8

    net = GraphBuilder("acts", (16, 8, 8), seed=0)
    a = net.relu6(net.conv("x", 32, 1, relu=False))  # fused: a pass of 32 x 8 x 8
    b = net.conv(a, 32, 3)  # ReLU: in the kernel
    c = net.conv(b, 32, 1, relu=False)  # read by the Clip and the Add: not fused
    out = net.add(net.relu6(c), c)
    onnx.save(net.model(out), tmp_path / "fp32.onnx")
    fp32 = load_onnx_workload(tmp_path / "fp32.onnx")
    passes = [layer for layer in fp32.layers if getattr(layer, "kind", "") == "activation_pass"]
    assert [layer.elements for layer in passes] == [32 * 8 * 8]
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    int8 = load_onnx_workload(tmp_path / "int8.onnx")
    assert not any(getattr(layer, "kind", "") == "activation_pass" for layer in int8.layers)

    cpu = load_profile("cpu-x86-avx2")
    rates = dict(cpu.overheads.elementwise_cycles_per_element)
    priced = replace(
        cpu,
        overheads=replace(
            cpu.overheads,
            elementwise_cycles_per_element=tuple(sorted({**rates, "activation_pass": 0.5}.items())),
        ),
    )
    wide = Compression(w_bits=None, a_bits=None)
    float_net = fp32.with_compression({layer.name: wide for layer in fp32.layers})
    cycles = {
        name: hwsim.simulate(workload, priced).total_cycles
        - hwsim.simulate(workload, cpu).total_cycles
        for name, workload in (("float", float_net), ("w8a8", fp32))
    }
    # the float graph pays the pass's elements at the rate (and its one tile's handshake),
    # no dispatch; W8A8 nothing
    assert cycles == {"float": 0.5 * 32 * 8 * 8 + cpu.overheads.tile_cycles, "w8a8": 0}
    assert cpu.overheads.tile_cycles < cpu.overheads.layer_cycles


def test_a_qdq_conv_whose_bias_comes_through_an_identity_runs_float_as_in_ort(tmp_path):
    """An exporter writes a bias shared by two convs once and feeds the second through an
    Identity; ONNX Runtime's quantizer then leaves that bias float, and ONNX Runtime cannot
    fuse the conv into a QLinearConv: it runs in float, its input back in NCHW and
    dequantized, its weights dequantized at every run, its output quantized and transposed
    channels-last again for the next conv. The importer says the same as ONNX Runtime's
    own optimized graph: one float conv out of three."""
    from lowbit.models.export.ort import kernel_census
    from lowbit.models.hostcal.graphs import GraphBuilder, quantize_int8

    net = GraphBuilder("shared", (16, 8, 8), seed=0)
    x = net.conv(net.conv(net.conv("x", 32, 3), 32, 1), 32, 3)
    model = net.model(x)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    # the second conv reads the first's bias through an Identity (as torch.onnx dedups)
    model.graph.node.insert(0, helper.make_node("Identity", [convs[0].input[2]], ["shared_bias"]))
    convs[1].input[2] = "shared_bias"
    onnx.save(model, tmp_path / "fp32.onnx")
    int8 = quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")

    census = kernel_census(onnx.load(int8))
    assert census.get("QLinearConv") == 2 and census.get("Conv") == 1
    # the import names it, and resolving the file as a workload says so on one line
    imported = import_onnx(int8)
    assert [(op, "another conv" in why) for _, op, why in imported.float_ops] == [("Conv", True)]
    notes = []
    resolve_workload(str(int8), warn=notes.append)
    assert len(notes) == 1 and "runs 1 op(s) of this quantized graph in float" in notes[0]
    layers = load_onnx_workload(int8).layers
    convs = [layer for layer in layers if layer.op == "conv2d"]
    assert [c.compression.w_bits for c in convs] == [8, None, 8]
    kinds = [(getattr(layer, "kind", ""), layer.compression.a_storage_bits) for layer in layers]
    # around the float conv: back to NCHW, dequantized (input, weights), then quantized
    # and channels-last again for the third conv
    around = kinds[kinds.index(("", 32)) - 3 : kinds.index(("", 32)) + 3]
    assert sorted(around) == sorted(
        [
            ("dequantize", 8),
            ("transpose_inward", 8),  # the integer conv's channels-last codes back to NCHW
            ("dequantize", 8),
            ("", 32),
            ("transpose", 8),  # and the float conv's output codes channels-last again
            ("quantize", 8),
        ]
    )
    # each layout change back knows its channels (its price depends on them)
    backs = [layer for layer in layers if getattr(layer, "kind", "") == "transpose_inward"]
    assert backs and all(b.channels == 32 and b.elements == 32 * 8 * 8 for b in backs)

    # an Identity of a float bias (lowbit's export writes a shared bias so): ONNX Runtime
    # folds it and fuses all three convs, and so does the importer
    model = onnx.load(int8)
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(32, np.float32), "fb"))
    (identity,) = [n for n in model.graph.node if n.op_type == "Identity"]
    identity.input[0] = "fb"
    onnx.save(model, tmp_path / "float_bias.onnx")
    assert kernel_census(model).get("QLinearConv") == 3
    layers = load_onnx_workload(tmp_path / "float_bias.onnx").layers
    assert [c.compression.w_bits for c in layers if c.op == "conv2d"] == [8, 8, 8]

    # what decides is the bias grid: a bias DequantizeLinear of its own on another scale
    # than input scale x weight scale (no Identity) stops the fusion too
    model = onnx.load(int8)
    (identity,) = [n for n in model.graph.node if n.op_type == "Identity"]
    source = next(n for n in model.graph.node if identity.input[0] in n.output)
    int32 = numpy_helper.from_array(np.zeros(32, np.int32), "b_codes")
    scale = numpy_helper.from_array(np.full(32, 1e-3, np.float32), "b_scale")
    model.graph.initializer.extend([int32, scale])
    own = helper.make_node("DequantizeLinear", ["b_codes", "b_scale"], ["own_bias"], axis=0)
    model.graph.node.insert(0, own)
    for n in model.graph.node:
        if n.op_type == "Conv" and identity.output[0] in n.input:
            n.input[2] = "own_bias"
    model.graph.node.remove(identity)
    assert source.op_type == "DequantizeLinear"
    onnx.save(model, tmp_path / "own_bias.onnx")
    census = kernel_census(model)
    assert census.get("QLinearConv") == 2 and census.get("Conv") == 1
    layers = load_onnx_workload(tmp_path / "own_bias.onnx").layers
    assert [c.compression.w_bits for c in layers if c.op == "conv2d"] == [8, None, 8]


def _two_grid_graph(*, after_add: bool) -> onnx.ModelProto:
    """A QDQ graph whose ReLU output is quantized onto two grids (step 0.05 and 0.1, as a
    residual output read at 8 and 4 bits is), each read by a conv: the ReLU follows a conv
    (``after_add`` False) or a residual Add out of DequantizeLinears."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(array, name))
        return name

    def qdq(x, scale, name):
        s, z = init(f"{name}_s", np.array(scale, np.float32)), init(f"{name}_z", np.uint8(0))
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [f"{name}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", s, z], [f"{name}_d"]))
        return f"{name}_d"

    def conv(x, name):
        w = init(f"{name}_w", rng.integers(-127, 128, (16, 16, 3, 3)).astype(np.int8))
        ws = init(f"{name}_ws", np.full(16, 0.01, np.float32))
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [w, ws, init(f"{name}_wz", np.zeros(16, np.int8))], [w + "d"]
            )
        )
        nodes.append(helper.make_node("Conv", [x, w + "d"], [name], pads=[1, 1, 1, 1]))
        return name

    x = qdq("x", 0.05, "in")
    y = conv(x, "c0")
    if after_add:
        y = qdq(
            nodes.append(helper.make_node("Add", [qdq(y, 0.05, "c0o"), x], ["add"])) or "add",
            0.05,
            "addo",
        )
    nodes.append(helper.make_node("Relu", [y], ["relu"]))
    a, b = conv(qdq("relu", 0.05, "g8"), "ca"), conv(qdq("relu", 0.1, "g4"), "cb")
    nodes.append(helper.make_node("Add", [qdq(a, 0.05, "ao"), qdq(b, 0.05, "bo")], ["y"]))
    return _graph_x_to_y(nodes, inits, "two_grids")


def _graph_x_to_y(nodes, inits, name: str) -> onnx.ModelProto:
    """The model of ``nodes`` from input x to output y, both (1, 16, 8, 8) float."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("after_add", [False, True])
def test_a_tensor_quantized_onto_two_grids_runs_float_as_in_ort(tmp_path, after_add):
    """ONNX Runtime cannot keep a tensor integer that is quantized onto two grids (lowbit's
    mixed-precision export of a residual output read at 4 and 8 bits): a ReLU out of a
    DequantizeLinear runs in float between a DequantizeLinear and one QuantizeLinear per
    grid; a conv (+ReLU) whose output is runs as a float FusedConv, its weights dequantized
    at every run. The importer says what ONNX Runtime's optimized graph runs."""
    from lowbit.models.export.ort import kernel_census

    model = _two_grid_graph(after_add=after_add)
    onnx.save(model, tmp_path / "m.onnx")
    census = kernel_census(model)
    layers = load_onnx_workload(tmp_path / "m.onnx").layers
    convs = [layer.compression.w_bits for layer in layers if layer.op == "conv2d"]
    kinds = [getattr(layer, "kind", "") for layer in layers]
    if after_add:
        assert census.get("Relu") == 1 and census.get("QLinearConv") == 3
        relu = next(layer for layer in layers if getattr(layer, "kind", "") == "relu")
        assert relu.compression.a_storage_bits == 32 and convs == [8, 8, 8]
    else:
        assert census.get("FusedConv") == 1 and census.get("QLinearConv") == 2
        assert convs == [None, 8, 8] and kinds.count("dequantize") >= 2  # input, weights
    # one QuantizeLinear per grid (and the graph input's)
    assert kinds.count("quantize") == 1 + 2
    float_ops = import_onnx(tmp_path / "m.onnx").float_ops
    assert [op for _, op, _ in float_ops] == (["Relu"] if after_add else ["Conv"])
    assert "more than one grid" in float_ops[0][2]


def test_two_float_convs_side_by_side_keep_every_runtime_layer(tmp_path):
    """Two QDQ convs ONNX Runtime runs in float (their shared bias on another conv's grid),
    side by side, each read by an integer conv: each keeps its weights' dequantization and
    its output's transpose back to channels-last, and ONNX Runtime's optimized graph agrees
    on which convs run float."""
    from lowbit.models.export.ort import kernel_census

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(array, name))
        return name

    def qdq(x, name):
        s, z = init(f"{name}_s", np.array(0.05, np.float32)), init(f"{name}_z", np.uint8(0))
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [f"{name}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", s, z], [f"{name}_d"]))
        return f"{name}_d"

    def dq(name, codes, scale):
        args = [init(f"{name}_c", codes), init(f"{name}_s", scale)]
        nodes.append(helper.make_node("DequantizeLinear", args, [f"{name}_d"], axis=0))
        return f"{name}_d"

    def conv(x, name, bias):
        w = dq(f"{name}_w", rng.integers(-127, 128, (16, 16, 3, 3)).astype(np.int8),
               np.full(16, 0.01, np.float32))  # fmt: skip
        nodes.append(helper.make_node("Conv", [x, w, bias], [name], pads=[1, 1, 1, 1]))
        return name

    def bias(name, scale):  # 0.05 x 0.01 = 0.0005 is the conv's own grid
        return dq(name, np.zeros(16, np.int32), np.full(16, scale, np.float32))

    x1 = qdq(conv(qdq("x", "in"), "c0", bias("b0", 0.0005)), "c0o")
    nodes.append(helper.make_node("Identity", [bias("shared", 0.001)], ["shared_id"]))
    ya = conv(qdq(conv(x1, "ca", "shared_id"), "cao"), "da", bias("bda", 0.0005))
    yb = conv(qdq(conv(x1, "cb", "shared_id"), "cbo"), "db", bias("bdb", 0.0005))
    nodes.append(helper.make_node("Add", [qdq(ya, "yao"), qdq(yb, "ybo")], ["y"]))
    model = _graph_x_to_y(nodes, inits, "side_by_side")
    onnx.save(model, tmp_path / "m.onnx")
    census = kernel_census(model)
    assert census.get("Conv") == 2 and census.get("QLinearConv") == 3
    layers = load_onnx_workload(tmp_path / "m.onnx").layers
    assert [c.compression.w_bits for c in layers if c.op == "conv2d"] == [8, None, 8, None, 8]
    names = {layer.name for layer in layers}
    assert {"dequantize:ca_w_d", "dequantize:cb_w_d", "layout:ca", "layout:cb"} <= names


@pytest.mark.parametrize("u8", [False, True])
def test_a_convs_weight_storage_comes_from_its_codes_type(tmp_path, u8):
    # the direct INT8 conv kernel takes int8 weights only (hwsim's DirectConvKernel): the
    # importer records the type the codes are stored in (the calibration's probe conv, its
    # 16 -> 16 neighbours always int8); a float conv records none
    from lowbit.models.hostcal.conv import _model

    path = tmp_path / "probe.onnx"
    onnx.save(_model(16, 16, u8=u8), str(path))
    workload = import_onnx(path, dims={"h": 8, "w": 8}).workload
    layers = {layer.name: layer for layer in workload.layers}
    storages = {
        name: layer.weight_storage for name, layer in layers.items() if hasattr(layer, "in_c")
    }
    probe = next(name for name in storages if "probe" in name)
    assert storages.pop(probe) == ("u8" if u8 else "s8")
    assert set(storages.values()) == {"s8"}
    float_conv = tmp_path / "float.onnx"
    torch.onnx.export(
        torch.nn.Conv2d(4, 8, 3), (torch.zeros(1, 4, 8, 8),), str(float_conv), dynamo=False
    )
    convs = [layer for layer in import_onnx(float_conv).workload.layers if hasattr(layer, "in_c")]
    assert [conv.weight_storage for conv in convs] == [""]
