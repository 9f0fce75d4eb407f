"""Vela on an attention model's TFLite export, against lowbit's ``npu-ethos-u55`` profile.

Vela's operators map to lowbit's layers (:func:`lowbit.models.export.vela.assign_layers`:
the steps of a decomposed LayerNorm or softmax, the heads' transposes, a requantization onto
the next layer's grid count to the layer they compute). Vela runs the export's int16 attention
scores and int16 GELU on the CPU and counts them 0 cycles: those layers are left out of the
comparison on both sides. Tolerance (stated once): over the layers Vela runs on the NPU, the
totals agree within a factor 1.25 (measured on digits-vit W8A8 with Vela 5.2.0: 1.04; before
the profile priced LayerNorm, softmax and the attention matmul as Vela runs them: 0.22).
"""

from __future__ import annotations

import pytest
import torch

from lowbit import hwsim, models
from lowbit.hwsim.profiles import load_profile
from lowbit.models.export.vela import assign_layers

#: the ViT export's operator names in Vela's order (one block, abridged) -> lowbit layer
VELA_NAMES = {
    "patch_embed": "patch_embed",
    "embed.padded": "embed",
    "blocks.0.ln1.mean_intermediate": "blocks.0.ln1",
    "blocks.0.ln1.rstd": "blocks.0.ln1",
    "blocks.0.ln1": "blocks.0.ln1",
    "blocks.0.attn.q.input": "blocks.0.ln1",  # LN's output onto q's int8 grid
    "blocks.0.attn.v": "blocks.0.attn.v",
    "#1119": "blocks.0.attn.v",  # a transpose Vela inserts
    "blocks.0.attn.v.transposed/Transpose": "blocks.0.attn.v",
    "blocks.0.attn.q": "blocks.0.attn.q",
    "blocks.0.attn.q.transposed.int16": "blocks.0.attn.qk",
    "blocks.0.attn.scores": "blocks.0.attn.qk",
    "blocks.0.attn.scores_softmax_0": "blocks.0.attn.softmax",
    "one_const/SHL": "blocks.0.attn.softmax",
    "blocks.0.attn.scores_softmax_11/lut": "blocks.0.attn.softmax",
    "blocks.0.attn.softmax": "blocks.0.attn.softmax",
    "blocks.0.attn.probs": "blocks.0.attn.softmax",
    "blocks.0.attn.av": "blocks.0.attn.av",
    "blocks.0.attn.merged": "blocks.0.attn.av",
    "blocks.0.mlp.act": "blocks.0.mlp.act",
    "blocks.0.mlp.fc2.input": "blocks.0.mlp.act",  # GELU's output onto fc2's grid
    "blocks.0.mlp.fc2": "blocks.0.mlp.fc2",
    "head.input": "blocks.0.mlp.fc2",
    "logits": "head",
}
LAYERS = [
    "patch_embed",
    "embed",
    "blocks.0.ln1",
    "blocks.0.attn.q",
    "blocks.0.attn.k",
    "blocks.0.attn.v",
    "blocks.0.attn.qk",
    "blocks.0.attn.softmax",
    "blocks.0.attn.av",
    "blocks.0.mlp.act",
    "blocks.0.mlp.fc2",
    "head",
]


def test_vela_operators_of_the_attention_export_count_to_their_layer():
    got = assign_layers(list(VELA_NAMES), layers=LAYERS)
    assert dict(zip(VELA_NAMES, got, strict=True)) == VELA_NAMES
    # an unnamed operator before any named one has no layer
    assert assign_layers(["#7", "patch_embed"], layers=LAYERS) == [None, "patch_embed"]


def test_vela_estimates_a_tiny_vit_as_lowbit_simulates_it():
    pytest.importorskip("ethosu.vela")
    pytest.importorskip("ai_edge_litert")
    from lowbit.models.accuracy import as_model_input
    from lowbit.models.bridge import to_workload
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.export.deploy import deploy_copy, to_onnx
    from lowbit.models.export.onnx_quant import quantize_graph
    from lowbit.models.export.tflite import build_tflite
    from lowbit.models.export.vela import run_vela, vela_estimate, vela_target
    from lowbit.models.zoo import build

    torch.manual_seed(0)
    net = build("digits-vit", seed=0).eval()  # untrained: cycles do not depend on accuracy
    x_val, _ = models.load_split("digits", "val")
    calib = as_model_input(net, x_val[:128])
    plan = CompressionPlan.uniform(w_bits=8, a_bits=8, pin_first_last=False)
    small = models.compress(net, plan, calib=calib).eval()
    plain, quants, _ = deploy_copy(small)
    qdq, _ = quantize_graph(to_onnx(plain, input_shape=small.input_shape), quants)
    tfl = build_tflite(compressed=small, qdq=qdq, calib=calib)
    profile = load_profile("npu-ethos-u55")
    result = run_vela(tfl.content, target=vela_target(profile), name="digits-vit")
    sim = hwsim.simulate(to_workload(net, plan, name="digits-vit"), profile)
    est = vela_estimate(result, files={}, sim=sim)

    layers = {r.name for r in sim.layers}
    assert set(est["cycles_by_layer"]) == layers  # every operator counts to a layer
    blocks = len(net.blocks)
    assert result.cpu_operators == 2 * blocks and est["cpu_layers"] == sorted(
        f"blocks.{i}.{part}" for i in range(blocks) for part in ("attn.qk", "mlp.act")
    )
    assert all(row["cycles"] == 0 for row in est["layers"] if row["target"] == "CPU")
    ratio = est["lowbit"]["cycles_npu_layers"] / est["cycles_npu_layers"]
    assert 1 / 1.25 <= ratio <= 1.25, ratio
    # the decomposed layers agree one by one (measured within 2 %)
    for name in ("blocks.0.ln1", "blocks.0.attn.softmax"):
        assert est["lowbit"]["layers"][name] == pytest.approx(est["cycles_by_layer"][name], rel=0.2)
