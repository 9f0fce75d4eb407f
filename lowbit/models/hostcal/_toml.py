"""The host profile as TOML (:func:`profile_toml`), with comments saying what each number
was measured from; split from :mod:`lowbit.models.hostcal.calibration`, which re-exports it."""

from __future__ import annotations

import json
from typing import Any, Protocol

from lowbit.hwsim.profile import DEPTHWISE_KEYS


class _Calibrated(Protocol):
    """What :func:`profile_toml` reads of a ``calibration.Calibration`` (structural, so this
    module does not import the one that imports it)."""

    data: dict[str, Any]
    measurements: dict[str, Any]


#: the host profile's name (re-exported by models.hostcal)
PROFILE_NAME = "host-cpu"


def profile_toml(calibration: _Calibrated) -> str:
    """The profile as TOML, with comments saying what each number was measured from."""
    d, m = calibration.data, calibration.measurements
    cpu, fit, o = m["cpu"], m["fit"], d["overheads"]
    lanes = cpu["simd_lanes_32bit"]
    lines = [
        f"# {PROFILE_NAME}: measured by `lowbit calibrate-host` on {m['date']}",
        f"# CPU: {cpu.get('label', cpu['model'])}; flags: {' '.join(cpu['flags'])}",
        f"# integer ISA: {cpu.get('isa', '?')}; VNNI: {cpu['vnni']}; "
        f"ONNX Runtime {m['onnxruntime']}, 1 thread. Raw data: the .json sidecar.",
        f"# INT8 fit on {fit['int8_measurements']} layer chains, single convs and GEMMs: "
        f"mean |error| "
        f"{fit['mean_abs_pct_error_int8']:.1f}% (FP32 chains: "
        f"{fit['mean_abs_pct_error_fp32']:.1f}%).",
        f"# Measured: a small chain's intercept ~{m['run_overhead_s'] * 1e6:.2f} us; "
        f"each operator's dispatch ~{m['op_overhead_s'] * 1e6:.2f} us.",
        "schema_version = 1",
        f"name = {json.dumps(d['name'])}",
        f"description = {json.dumps(d['description'])}",
        'family = "cpu"',
        f"clock_hz = {d['clock_hz']!r}  # {cpu.get('clock_source', '/proc/cpuinfo cpu MHz')}",
        'weight_storage = "promoted"  # exported weights are int8 codes whatever their grid',
        f"static_power_w = {d.get('static_power_w', 0.0)!r}  # cpu-x86-avx2 estimate",
        "",
        "[compute]",
        'kind = "vector"',
        f"rows = {d['compute']['rows']}",
        f"cols = {d['compute']['cols']}  # fitted N blocking: {d['compute']['cols'] // lanes} "
        f"register(s) of {lanes} 32-bit lanes",
        "cores = 1",
        'dataflow = "vector"',
        'dataflows = ["vector"]',
        'precision_model = "table"',
    ]
    for mode in d["compute"]["precision"]:
        what = "FP32" if mode["w_bits"] == 32 else "INT8 (lower bits promote here)"
        lines += [
            "",
            f"# {what}: effective rate fitted on the layer chains",
            "[[compute.precision]]",
            f"w_bits = {mode['w_bits']}",
            f"a_bits = {mode['a_bits']}",
            f"macs_per_pe_per_cycle = {mode['macs_per_pe_per_cycle']!r}",
            f"energy_pj_per_mac = {mode['energy_pj_per_mac']!r}  # cpu-x86-avx2 estimate",
        ]
    share = fit.get("l3_weight_share_bytes")
    for mem in d["memory"]:
        size = "  # /proc/meminfo" if mem["name"] == "dram" else "  # /sys/.../cpu0/cache"
        if mem["name"] == "l3" and share:
            reported = cpu["caches_bytes"].get("L3")
            size = (
                f"  # this core's share (measured: {share / 2**20:.1f} MB of weights stay, the "
                f"rest streams from DRAM; the CPU reports {reported})"
            )
        lines += [
            "",
            f"# {mem['name']}: "
            + (
                "fitted: weights too big for the inner caches stream from here at every run, "
                "not hidden behind the kernels' arithmetic"
                if not mem.get("off_chip") and not mem.get("double_buffered")
                else "copy bandwidth measured with numpy"
            ),
            "[[memory]]",
            f"name = {json.dumps(mem['name'])}",
            f"size_bytes = {mem['size_bytes']}{size}",
            f"bandwidth_bytes_per_cycle = {mem['bandwidth_bytes_per_cycle']!r}",
            f"energy_pj_per_byte = {mem['energy_pj_per_byte']!r}  # cpu-x86-avx2 estimate",
            f"holds = {json.dumps(mem['holds'])}",
            f"off_chip = {str(mem.get('off_chip', False)).lower()}",
            f"double_buffered = {str(mem.get('double_buffered', False)).lower()}",
        ]
    lines += [
        "",
        "[sparsity]  # ONNX Runtime's CPU kernels do not skip zeros",
        "nm_patterns = []",
        "zero_skipping = false",
        "index_bits_per_nonzero = 0.0",
        "",
        "[overheads]",
        f"layer_cycles = {o['layer_cycles']}  # measured: one operator's dispatch",
        f"gemm_cycles = {o.get('gemm_cycles', 0)}  # fitted: the rest of an INT8 GEMM "
        "operator's fixed cost (packing, requantization setup)",
        f"run_cycles = {o.get('run_cycles', 0)}  # measured: one Run call, without the "
        "input quantize / output dequantize / layout changes (layers of their own)",
        f"float_run_cycles = {o.get('float_run_cycles', 0)}  # measured: a float graph's "
        "Run call, without its reorders",
        f"narrow_activation_cycles = {o.get('narrow_activation_cycles', 0)}  # one "
        "operator's dispatch: the Clip that clamps a sub-8-bit activation",
        f"conv_channel_multiple = {o.get('conv_channel_multiple', 1)}  # the direct "
        "INT8 conv kernel's channel blocking (channel sweep)",
        f"conv_min_out_channels = {o.get('conv_min_out_channels', 1)}",
        f"conv_out_channel_block = {o.get('conv_out_channel_block', 1)}  # the integer conv "
        "kernels' output channels at a time (the ISA's)",
        "unaligned_conv_cycles_per_pixel = "
        f"{o.get('unaligned_conv_cycles_per_pixel', 0.0)!r}  # fitted: generic im2col path",
        "unaligned_conv_cycles_per_output = "
        f"{o.get('unaligned_conv_cycles_per_output', 0.0)!r}  # fitted: its int32 output pass",
        f"im2col_copy_cycles = {o.get('im2col_copy_cycles', 0.0)!r}  # fitted: one copy of "
        "its im2col (a window row; a tap in a grouped conv)",
        f"gemm_library_speedup = {o.get('gemm_library_speedup', 1.0)!r}  # fitted: the GEMM "
        "library's INT8 rate (Gemm/MatMul, generic convs) over the direct conv kernel's",
        f"activation_gemm_speedup = {o.get('activation_gemm_speedup', 1.0)!r}  # fitted: "
        "the same for a product of two activations (attention's QLinearMatMul)",
        f"activation_gemm_cycles = {o.get('activation_gemm_cycles', 0)}  # fitted: its "
        "cost per instance (attention head)",
        f"float_gemm_library_speedup = {o.get('float_gemm_library_speedup', 1.0)!r}  # "
        "fitted: a float linear layer's or matmul's rate (SGEMM) over a float conv's",
        f"conv_cycles_per_pixel = {o.get('conv_cycles_per_pixel', 0.0)!r}  # fitted: "
        "every INT8 k x k conv's per-pixel gather and requantization",
        f"conv_cycles_per_image = {o.get('conv_cycles_per_image', 0.0)!r}  # fitted: "
        "its per-image setup",
        f"requant_cycles_per_output = {o.get('requant_cycles_per_output', 0.0)!r}  # "
        "fitted: every INT8 GEMM's requantization of one output",
        f"library_requant_cycles_per_output = "
        f"{o.get('library_requant_cycles_per_output', 0.0)!r}  # fitted: the GEMM library's "
        "int32 output requantized in a pass of its own (linear layers, matmuls)",
        f"library_cycles_per_row = {o.get('library_cycles_per_row', 0.0)!r}  # fitted: "
        "the GEMM library's packing of each row of its first operand",
        f"fused_bias_cycles_per_column = {o.get('fused_bias_cycles_per_column', 0.0)!r}  # "
        "fitted: a Gemm's (QGemm's) bias and scale setup per output column, per call",
        f"fused_bias_cycles_per_output = {o.get('fused_bias_cycles_per_output', 0.0)!r}  # "
        "fitted: ...and its extra per output over a bare MatMul (QLinearMatMul)",
        f"pool_channel_block = {o.get('pool_channel_block', 0)}  # uint8 per SIMD "
        "register: NhwcMaxPool pools a pixel's channels a register at a time",
        f"pad_conv_channels = {str(o.get('pad_conv_channels', False)).lower()}  # lowbit "
        "export pads conv channels to the direct kernel's",
        f"u8_weight_bits = {o.get('u8_weight_bits', 0)}  # lowbit export stores weights of "
        "this many bits as uint8 (0: never), which run the generic conv path",
        f"u8_gemm_library_speedup = {o.get('u8_gemm_library_speedup', 0.0)!r}  # fitted: "
        "the u8·u8 GEMM library's rate over the direct kernel's (0: the s8 library's)",
        f"two_grid_round_trip = {str(o.get('two_grid_round_trip', False)).lower()}  # a "
        "tensor on two grids runs a float round trip in ONNX Runtime",
        f"warm_cache = {str(o.get('warm_cache', False)).lower()}  # timed in steady "
        "state: weights that fit the last-level cache stay there between runs",
        *(
            [
                f"activation_cache_bytes = {o['activation_cache_bytes']}  # a core's L2: "
                "activations beyond it (a layer's inputs and output together) spill to L3",
                f"activation_spill_bytes_per_cycle = {o['activation_spill_bytes_per_cycle']!r}"
                "  # measured: a copy twice the L2's size",
            ]
            if o.get("activation_spill_bytes_per_cycle")
            else []
        ),
        "# fitted on depthwise 3x3 chains (INT8 mean |error| "
        f"{fit.get('mean_abs_pct_error_int8_depthwise', 0.0):.1f}%, FP32 "
        f"{fit.get('mean_abs_pct_error_fp32_depthwise', 0.0):.1f}%): their own kernel",
        *(f"{k} = {o.get(k, 0.0)!r}" for k in DEPTHWISE_KEYS),
        f"depthwise_channel_multiple = {o.get('depthwise_channel_multiple', 1)}  # the "
        "depthwise kernels' channel block (other channel counts at the unaligned rate)",
        f"fp32_depthwise_layout_multiple = {o.get('fp32_depthwise_layout_multiple', 1)}  # "
        "float depthwise convs of other channel counts run a grouped conv",
        "",
        "# measured: cycles per element of memory-bound operators (FP32 chains; "
        "maxpool: uint8 NHWC between INT8 convs)",
        "[overheads.elementwise_cycles_per_element]",
        *(f"{k} = {v!r}" for k, v in o.get("elementwise_cycles_per_element", {}).items()),
        "",
    ]
    if o.get("elementwise_cycles_per_row"):
        lines += [
            "# measured: cycles per row of the operators that normalize row by row (FP32 "
            "chains on rows of 32 and 256)",
            "[overheads.elementwise_cycles_per_row]",
            *(f"{k} = {v!r}" for k, v in o["elementwise_cycles_per_row"].items()),
            "",
        ]
    return "\n".join(lines)
