"""Golden results: what every built-in profile, and a CPU with a calibrated host's
``[overheads]`` (padded and unpadded convs), simulates for three workloads on both engines.

GOLDEN was computed by :func:`golden` at commit f4f6ef5, before issue 13 moved the precision
models and the CPU cost quirks into strategy classes (``_precision_models``,
``_cost_rules``); the refactor changed none of it. Each entry is the workload's total cycles
and a digest of every layer's whole result (cycles, bytes, energy, bound ...), so a change
to any layer shows. The workloads: MobileNetV2 at W8A8 (depthwise kernels, padded stems,
window gathers) and at FP32, ResNet-18 with a seeded per-layer mix of bit-widths, pruning, N:M and
unstructured sparsity and low rank, and a small network of every layer kind (transformer
block, grouped and deployed convs, a pool that knows its channels, data movement).

An intended change of the model changes these numbers: regenerate them with
``python tests/hwsim/test_golden_equivalence.py`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from lowbit import hwsim
from lowbit.hwsim.profiles import (
    builtin_profile_names,
    load_profile,
    load_profile_data,
    profile_from_dict,
)
from lowbit.hwsim.workload import (
    Compression,
    Conv2d,
    Elementwise,
    Linear,
    MatMul,
    Pool,
    Workload,
)

#: ``[overheads]`` of a host calibrated by ``lowbit calibrate-host`` (AVX-512 VNNI, ONNX
#: Runtime 1.32, one thread): every CPU cost rule is in use
HOST_OVERHEADS = {
    "layer_cycles": 748,
    "gemm_cycles": 2008,
    "run_cycles": 10427,
    "narrow_activation_cycles": 748,
    "conv_channel_multiple": 4,
    "conv_min_out_channels": 16,
    "unaligned_conv_cycles_per_pixel": 36.61,
    "conv_cycles_per_pixel": 17.69,
    "conv_cycles_per_image": 101.2,
    "requant_cycles_per_output": 0.2225,
    "pool_channel_block": 64,
    "pad_conv_channels": True,
    "warm_cache": True,
    "depthwise_cycles_per_mac": 0.09577,
    "depthwise_cycles_per_pixel": 18.25,
    "depthwise_unaligned_cycles_per_mac": 0.2269,
    "fp32_depthwise_cycles_per_mac": 0.07953,
    "depthwise_channel_multiple": 16,
    "elementwise_cycles_per_element": {
        "add": 1.178,
        "concat": 0.0532,
        "dequantize": 0.2914,
        "gelu": 1.64,
        "layernorm": 2.381,
        "maxpool": 0.1052,
        "quantize": 0.3377,
        "relu": 0.2149,
        "softmax": 1.494,
        "softmax_int8": 7.222,
        "transpose": 0.1195,
    },
}


def _host(*, padded: bool):
    data = load_profile_data("cpu-x86-avx2")
    data["overheads"] = {**HOST_OVERHEADS, "pad_conv_channels": padded}
    return profile_from_dict(data, source="golden host")


def profiles() -> dict:
    out = {name: load_profile(name) for name in builtin_profile_names()}
    out["host"] = _host(padded=True)
    out["host-unpadded"] = _host(padded=False)
    return out


def _mixed(workload: Workload, seed: int) -> Workload:
    """A seeded mix of integer bit-widths (8 bits and under: every profile runs them),
    pruning, sparsity and low rank, layer by layer."""
    rng = random.Random(seed)
    by_name = {}
    for layer in workload.layers:
        if layer.op not in ("conv2d", "linear", "matmul"):
            continue
        w, a = rng.choice([(2, 2), (4, 4), (4, 8), (8, 8), (3, 6), (8, 4), (1, 2)])
        if layer.op == "matmul":
            by_name[layer.name] = Compression(w_bits=w, a_bits=a)
            continue
        grouped = isinstance(layer, Conv2d) and layer.groups > 1
        (dense,) = layer.with_compression(Compression()).gemms()
        rank = max(1, min(dense.N, dense.K) // 4)
        by_name[layer.name] = Compression(
            w_bits=w,
            a_bits=a,
            keep=rng.choice([1.0, 0.9, 0.5]),
            in_keep=rng.choice([1.0, 0.8]),
            density=rng.choice([1.0, 0.7]),
            nm=rng.choice([None, (2, 4), (1, 4)]),
            rank=rank if not grouped and rng.random() < 0.4 else None,
        )
    return workload.with_compression(by_name)


def _every_kind() -> Workload:
    """A small network of every layer kind the cost rules tell apart."""
    t, d, h = 16, 64, 4
    sparse = Compression(nm=(2, 4), w_bits=4)

    def conv(name, in_c, out_c, k, **kw):
        return Conv2d(
            name=name,
            in_h=16,
            in_w=16,
            in_c=in_c,
            out_c=out_c,
            k_h=k,
            k_w=k,
            out_h=16,
            out_w=16,
            **kw,
        )

    layers = (
        Elementwise(name="in.quantize", elements=16 * 16 * 3, kind="quantize"),
        conv("stem", 3, 18, 3),
        Pool(name="pool", in_elements=4608, out_elements=1152, kind="maxpool", channels=18),
        conv("grouped", 24, 24, 3, groups=4),
        conv("dw", 24, 24, 3, groups=24, compression=Compression(w_bits=4, a_bits=4)),
        conv("deployed", 24, 20, 1, as_deployed=True),
        conv("lowrank", 20, 40, 3, pad_out=False, compression=Compression(rank=6, a_bits=4)),
        Elementwise(name="to_tokens", elements=t * d, kind="transpose"),
        Linear(name="qkv", in_features=d, out_features=3 * d, tokens=t),
        MatMul(name="scores", M=t, N=t, K=d // h, heads=h, compression=Compression(a_bits=4)),
        Elementwise(name="softmax", elements=h * t * t, kind="softmax"),
        MatMul(name="context", M=t, N=d // h, K=t, heads=h),
        Linear(name="proj", in_features=d, out_features=d, tokens=t),
        Elementwise(name="residual", elements=t * d, inputs=2, kind="add"),
        Elementwise(name="norm", elements=t * d, kind="layernorm"),
        Linear(name="fc1", in_features=d, out_features=4 * d, tokens=t, compression=sparse),
        Elementwise(name="gelu", elements=4 * t * d, kind="gelu"),
        Linear(name="fc2", in_features=4 * d, out_features=d, tokens=t),
        Elementwise(name="out.dequantize", elements=t * d, kind="dequantize"),
    )
    return Workload("every-kind", layers)


def workloads() -> dict[str, Workload]:
    mobilenet = hwsim.builtin_workload("mobilenetv2")
    fp32 = Compression(w_bits=None, a_bits=None)
    return {
        "mobilenetv2": mobilenet,
        # float kernels (FP32 depthwise); targets without a float mode refuse it
        "mobilenetv2-fp32": mobilenet.with_compression(
            {layer.name: fp32 for layer in mobilenet.layers if layer.op in ("conv2d", "linear")}
        ),
        "resnet18-mixed": _mixed(hwsim.builtin_workload("resnet18"), seed=13),
        "every-kind": _every_kind(),
    }


def outcome(workload: Workload, profile, engine: str) -> list:
    """[total cycles, digest of every layer's result], or [the error's type] if it cannot
    run."""
    try:
        result = hwsim.simulate(workload, profile, engine=engine)
    except ValueError as exc:  # UnsupportedPrecision: the target has no float mode
        return [type(exc).__name__]
    blob = json.dumps([r.to_dict() for r in result.layers], sort_keys=True).encode()
    return [result.total_cycles, hashlib.sha256(blob).hexdigest()[:16]]


def golden() -> dict[str, list]:
    found = {}
    for pname, profile in profiles().items():
        for wname, workload in workloads().items():
            for engine in ("analytic", "event"):
                found[f"{pname} {wname} {engine}"] = outcome(workload, profile, engine)
    return found


# fmt: off
GOLDEN: dict[str, list] = {
    'cpu-arm-a76 mobilenetv2 analytic': [19593110, 'ac5514e232ce2b48'],
    'cpu-arm-a76 mobilenetv2 event': [19593110, 'ac5514e232ce2b48'],
    'cpu-arm-a76 mobilenetv2-fp32 analytic': [57298252, 'e967edc61fe448fb'],
    'cpu-arm-a76 mobilenetv2-fp32 event': [57298252, 'e967edc61fe448fb'],
    'cpu-arm-a76 resnet18-mixed analytic': [27404036, '3071f6358896a69e'],
    'cpu-arm-a76 resnet18-mixed event': [27404036, '3071f6358896a69e'],
    'cpu-arm-a76 every-kind analytic': [171270, 'a9f50dfb178218ab'],
    'cpu-arm-a76 every-kind event': [171270, 'a9f50dfb178218ab'],
    'cpu-x86-avx2 mobilenetv2 analytic': [21059588, '9bdbfdd62504d9b1'],
    'cpu-x86-avx2 mobilenetv2 event': [21059588, '9bdbfdd62504d9b1'],
    'cpu-x86-avx2 mobilenetv2-fp32 analytic': [39758027, 'c594ea4960903e5e'],
    'cpu-x86-avx2 mobilenetv2-fp32 event': [39758027, 'c594ea4960903e5e'],
    'cpu-x86-avx2 resnet18-mixed analytic': [27564753, 'd3231bb27f0ee8c5'],
    'cpu-x86-avx2 resnet18-mixed event': [27564753, 'd3231bb27f0ee8c5'],
    'cpu-x86-avx2 every-kind analytic': [221299, 'd9083ad0da5524fd'],
    'cpu-x86-avx2 every-kind event': [221299, 'd9083ad0da5524fd'],
    'fpga-bitserial mobilenetv2 analytic': [23825868, '141db3163978ec62'],
    'fpga-bitserial mobilenetv2 event': [23825868, '141db3163978ec62'],
    'fpga-bitserial mobilenetv2-fp32 analytic': ['UnsupportedPrecision'],
    'fpga-bitserial mobilenetv2-fp32 event': ['UnsupportedPrecision'],
    'fpga-bitserial resnet18-mixed analytic': [2129417, 'c94cbeb881c08110'],
    'fpga-bitserial resnet18-mixed event': [2129417, 'c94cbeb881c08110'],
    'fpga-bitserial every-kind analytic': [57755, '91a8847fb5ccb07f'],
    'fpga-bitserial every-kind event': [57755, '91a8847fb5ccb07f'],
    'fpga-zcu102-dsp mobilenetv2 analytic': [2630529, 'b224cc998ca04495'],
    'fpga-zcu102-dsp mobilenetv2 event': [2630529, 'b224cc998ca04495'],
    'fpga-zcu102-dsp mobilenetv2-fp32 analytic': [12786604, '9a8ada2650075173'],
    'fpga-zcu102-dsp mobilenetv2-fp32 event': [12786604, '9a8ada2650075173'],
    'fpga-zcu102-dsp resnet18-mixed analytic': [301620, 'a3573f9915b0d657'],
    'fpga-zcu102-dsp resnet18-mixed event': [301620, 'a3573f9915b0d657'],
    'fpga-zcu102-dsp every-kind analytic': [42306, '70cea3fd856a740c'],
    'fpga-zcu102-dsp every-kind event': [42306, '70cea3fd856a740c'],
    'npu-bitfusion mobilenetv2 analytic': [3852838, 'fd00e2c88bed200c'],
    'npu-bitfusion mobilenetv2 event': [3852838, 'fd00e2c88bed200c'],
    'npu-bitfusion mobilenetv2-fp32 analytic': ['UnsupportedPrecision'],
    'npu-bitfusion mobilenetv2-fp32 event': ['UnsupportedPrecision'],
    'npu-bitfusion resnet18-mixed analytic': [974373, 'ad6b7c1ece117efa'],
    'npu-bitfusion resnet18-mixed event': [974373, 'ad6b7c1ece117efa'],
    'npu-bitfusion every-kind analytic': [28273, '8feb0b7681e7da38'],
    'npu-bitfusion every-kind event': [28273, '8feb0b7681e7da38'],
    'npu-ethos-u55 mobilenetv2 analytic': [6077035, '353628fc7b198a5e'],
    'npu-ethos-u55 mobilenetv2 event': [6076980, 'cd9536e33f40c638'],
    'npu-ethos-u55 mobilenetv2-fp32 analytic': ['UnsupportedPrecision'],
    'npu-ethos-u55 mobilenetv2-fp32 event': ['UnsupportedPrecision'],
    'npu-ethos-u55 resnet18-mixed analytic': [5747269, '85de594e4db68403'],
    'npu-ethos-u55 resnet18-mixed event': [5747269, '85de594e4db68403'],
    'npu-ethos-u55 every-kind analytic': [129052, '43029c361780a29b'],
    'npu-ethos-u55 every-kind event': [129052, '43029c361780a29b'],
    'npu-systolic-128 mobilenetv2 analytic': [5309996, 'a238ee3c4a5d49ed'],
    'npu-systolic-128 mobilenetv2 event': [5309996, 'a238ee3c4a5d49ed'],
    'npu-systolic-128 mobilenetv2-fp32 analytic': ['UnsupportedPrecision'],
    'npu-systolic-128 mobilenetv2-fp32 event': ['UnsupportedPrecision'],
    'npu-systolic-128 resnet18-mixed analytic': [376884, '4922e953bf10d879'],
    'npu-systolic-128 resnet18-mixed event': [376884, '4922e953bf10d879'],
    'npu-systolic-128 every-kind analytic': [44457, 'bdffe9005e836400'],
    'npu-systolic-128 every-kind event': [44457, 'bdffe9005e836400'],
    'npu-systolic-32 mobilenetv2 analytic': [6388235, '5a6d481fbad2b629'],
    'npu-systolic-32 mobilenetv2 event': [6388235, '5a6d481fbad2b629'],
    'npu-systolic-32 mobilenetv2-fp32 analytic': ['UnsupportedPrecision'],
    'npu-systolic-32 mobilenetv2-fp32 event': ['UnsupportedPrecision'],
    'npu-systolic-32 resnet18-mixed analytic': [1577279, '0fa81c7d1c76ca8c'],
    'npu-systolic-32 resnet18-mixed event': [1577279, '0fa81c7d1c76ca8c'],
    'npu-systolic-32 every-kind analytic': [31357, 'e06d4a8b3d0a2d98'],
    'npu-systolic-32 every-kind event': [31357, 'e06d4a8b3d0a2d98'],
    'host mobilenetv2 analytic': [13088106, '38774d4f18fb7541'],
    'host mobilenetv2 event': [13088106, '38774d4f18fb7541'],
    'host mobilenetv2-fp32 analytic': [19950659, '085397a6a1920066'],
    'host mobilenetv2-fp32 event': [19950659, '085397a6a1920066'],
    'host resnet18-mixed analytic': [29875941, '4c2e26ec84e98529'],
    'host resnet18-mixed event': [29875941, '4c2e26ec84e98529'],
    'host every-kind analytic': [263533, '0293c6d32e97cd36'],
    'host every-kind event': [263533, '0293c6d32e97cd36'],
    'host-unpadded mobilenetv2 analytic': [13446242, '3a08154290eec794'],
    'host-unpadded mobilenetv2 event': [13446242, '3a08154290eec794'],
    'host-unpadded mobilenetv2-fp32 analytic': [19950659, '085397a6a1920066'],
    'host-unpadded mobilenetv2-fp32 event': [19950659, '085397a6a1920066'],
    'host-unpadded resnet18-mixed analytic': [30741970, '330153bd6bd1bd73'],
    'host-unpadded resnet18-mixed event': [30741970, '330153bd6bd1bd73'],
    'host-unpadded every-kind analytic': [284330, '450fe2e290cc9005'],
    'host-unpadded every-kind event': [284330, '450fe2e290cc9005'],
}
# fmt: on


@pytest.mark.parametrize("engine", ["analytic", "event"])
@pytest.mark.parametrize(
    "wname", ["mobilenetv2", "mobilenetv2-fp32", "resnet18-mixed", "every-kind"]
)
def test_results_are_those_before_the_strategy_classes(wname, engine):
    workload = workloads()[wname]
    for pname, profile in profiles().items():
        key = f"{pname} {wname} {engine}"
        assert outcome(workload, profile, engine) == GOLDEN[key], key


def test_the_golden_set_covers_every_builtin_and_both_engines():
    assert set(GOLDEN) == {
        f"{p} {w} {e}" for p in profiles() for w in workloads() for e in hwsim.engine_names()
    }
    # every integer workload runs everywhere; FP32 where the target has a float mode
    ran = {k for k, v in GOLDEN.items() if isinstance(v[0], int) and v[0] > 0}
    assert {k for k in GOLDEN if "fp32" not in k} <= ran
    assert {f"{p} mobilenetv2-fp32 analytic" for p in ("cpu-x86-avx2", "host")} <= ran


if __name__ == "__main__":
    print("GOLDEN: dict[str, list] = {")
    for key, value in golden().items():
        print(f"    {key!r}: {value!r},")
    print("}")
