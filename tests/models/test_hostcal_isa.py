"""ISA detection from recorded /proc/cpuinfo flag sets (trimmed to the flags that matter
plus neighbours that must not mislead: the CPUs this project has run on, and two Arm cores)."""

from __future__ import annotations

import pytest

from lowbit.models._host import u8s8_saturates
from lowbit.models.hostcal.isa import cpu_flags, cpu_info, detect_isa, host_label

#: flags as /proc/cpuinfo prints them (x86 "flags", Arm "Features")
RECORDED = {
    # AMD EPYC Zen 3 (family 25 model 1): AVX2, no AVX-512
    "zen3": "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes vpclmulqdq",
    # AMD EPYC Zen 4 (family 25 model 17): AVX-512 with VNNI and BF16, no AMX
    "zen4": "sse4_1 sse4_2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 "
    "avx512vbmi avx512_vbmi2 gfni avx512_vnni avx512_bitalg avx512_vpopcntdq",
    # Intel Xeon Sapphire Rapids: AVX-512 VNNI, AVX-VNNI and AMX
    "spr": "sse4_1 sse4_2 avx avx2 avx512f avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 "
    "amx_bf16 amx_tile amx_int8",
    # Intel Alder Lake P-cores as shipped: AVX2 + AVX-VNNI, AVX-512 fused off
    "adl": "sse4_1 sse4_2 avx avx2 fma avx_vnni",
    # Intel Skylake-SP: AVX-512BW without VNNI
    "skx": "sse4_1 sse4_2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl",
    # Arm Neoverse V1 (Graviton3): dot product and i8mm
    "neoverse-v1": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
    "asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat "
    "ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng",
    # Arm Cortex-A76 (Raspberry Pi 5): dot product, no i8mm
    "cortex-a76": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
    "asimdrdm lrcpc dcpop asimddp",
    # Arm Cortex-A53: NEON only
    "cortex-a53": "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid",
}
EXPECTED = {
    "zen3": ("avx2", 8, False),
    "zen4": ("avx512-vnni", 16, True),
    "spr": ("amx-int8", 16, True),
    "adl": ("avx-vnni", 8, True),
    "skx": ("avx512", 16, False),
    "neoverse-v1": ("arm-i8mm", 4, True),
    "cortex-a76": ("arm-dotprod", 4, True),
    "cortex-a53": ("arm-neon", 4, False),
}


@pytest.mark.parametrize("cpu", sorted(RECORDED))
def test_recorded_flag_sets(cpu):
    isa = detect_isa(RECORDED[cpu].split())
    assert (isa.name, isa.simd_lanes_32bit, isa.vnni) == EXPECTED[cpu]
    assert isa.name not in isa.fallbacks


@pytest.mark.parametrize("cpu", sorted(RECORDED))
def test_depthwise_channel_block_is_the_x86_kernels_16_channels(cpu):
    # ONNX Runtime's x86 depthwise kernel steps 16 channels (16-bit lanes of a 256-bit
    # register) on AVX2 and AVX-512 alike; elsewhere the 32-bit lanes stand in
    isa = detect_isa(RECORDED[cpu].split())
    expected = 4 if cpu.startswith(("neoverse", "cortex")) else 16
    assert isa.depthwise_channel_block == expected
    # the integer conv kernels' output channels at a time: the same 16 on x86
    assert isa.conv_out_channel_block == expected
    # a float conv takes ONNX Runtime's blocked layout at a multiple of 4 channels on x86
    # (none on Arm: every channel count is the plain path's)
    assert isa.float_layout_channel_multiple == (1 if expected == 4 else 4)


@pytest.mark.parametrize("cpu", sorted(RECORDED))
def test_u8s8_saturates_exactly_on_x86_without_vnni(cpu):
    # vpmaddubsw's saturating pairs: AVX2 (and AVX-512BW) without VNNI, never on Arm; there
    # the export stores 8-bit weights as uint8 and a host profile prices them so
    flags = RECORDED[cpu].split()
    expected = cpu in ("zen3", "skx")
    assert u8s8_saturates(flags) is expected
    assert u8s8_saturates(flags) is (not detect_isa(flags).vnni and "avx2" in flags)


def test_amx_machines_fall_back_to_avx512_vnni_then_avx2():
    isa = detect_isa(RECORDED["spr"].split())
    assert isa.fallbacks[:3] == ("avx512-vnni", "avx-vnni", "avx512")
    assert "avx2" in isa.fallbacks


def test_no_flags_is_generic():
    isa = detect_isa([])
    assert (isa.name, isa.vnni, isa.fallbacks) == ("generic", False, ())


def test_this_host_is_labelled_with_its_model_and_isa():
    info = cpu_info()
    isa = detect_isa(cpu_flags())
    assert info["isa"] == isa.name and info["simd_lanes_32bit"] == isa.simd_lanes_32bit
    assert info["label"] == host_label(info["model"], isa) and isa.label in info["label"]
