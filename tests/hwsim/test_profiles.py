"""Built-in hardware profiles: they load, their peaks match the datasheets, promotion,
precision models, overrides, documentation. Bad input is in test_profile_errors.py."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from lowbit.hwsim._precision_models import expand_precisions
from lowbit.hwsim._profile_schema import SCHEMA, Key, Table, TableArray
from lowbit.hwsim._profile_walk import fill_defaults
from lowbit.hwsim.errors import ProfileError
from lowbit.hwsim.profile import UnsupportedPrecision
from lowbit.hwsim.profiles import (
    PROFILE_DIR,
    builtin_profile_names,
    load_profile,
    load_profile_data,
    parse_set,
    profile_from_dict,
)

EXPECTED = {
    "npu-systolic-32",
    "npu-systolic-128",
    "npu-bitfusion",
    "fpga-zcu102-dsp",
    "fpga-bitserial",
    "cpu-x86-avx2",
    "cpu-arm-a76",
    "npu-ethos-u55",
}
NAMES = builtin_profile_names()


def test_builtin_names_are_the_toml_stems():
    assert set(NAMES) == EXPECTED
    assert NAMES == sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


@pytest.mark.parametrize("name", NAMES)
def test_every_builtin_loads_with_its_file_name(name):
    profile = load_profile(name)
    assert profile.name == name
    assert Path(profile.source) == PROFILE_DIR / f"{name}.toml"
    assert profile.schema_version == 1
    assert profile.description
    # by path too, and the same content
    by_path = load_profile(PROFILE_DIR / f"{name}.toml")
    assert by_path.content_hash() == profile.content_hash()


@pytest.mark.parametrize("name", NAMES)
def test_content_hash_is_stable_and_ignores_formatting(name, tmp_path):
    profile = load_profile(name)
    assert profile.content_hash() == load_profile(name).content_hash()
    # the same data without comments, blank lines or digit separators hashes the same
    text = (PROFILE_DIR / f"{name}.toml").read_text()
    stripped = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if line:
            stripped.append(re.sub(r"(?<=\d)_(?=\d)", "", line))
    copy = tmp_path / "copy.toml"
    copy.write_text("\n".join(stripped) + "\n")
    assert load_profile(copy).content_hash() == profile.content_hash()
    # and a real change changes it
    changed = load_profile(name, overrides={"clock_hz": profile.clock_hz / 2})
    assert changed.content_hash() != profile.content_hash()
    # an optional key written at its default is no change (a key added to the schema later
    # leaves existing profiles' hashes, and so their studies, as they were)
    explicit = load_profile(name, overrides={"overheads.requant_cycles_per_output": 0.0})
    assert explicit.content_hash() == profile.content_hash()
    costly = load_profile(name, overrides={"overheads.requant_cycles_per_output": 0.5})
    assert costly.content_hash() != profile.content_hash()


def _comment_block(lines: list[str], header: str) -> str:
    """Comments just above ``header`` plus those inside its section."""
    i = lines.index(header)
    j = i
    while j > 0 and lines[j - 1].startswith("#"):
        j -= 1
    k = i + 1
    while k < len(lines) and not lines[k].startswith("["):
        k += 1
    return "\n".join(line for line in lines[j:k] if "#" in line)


@pytest.mark.parametrize("name", NAMES)
def test_builtin_numbers_cite_a_source(name):
    lines = (PROFILE_DIR / f"{name}.toml").read_text().splitlines()
    assert "source" in "\n".join(lines[:12]).lower(), "header comment must cite a source"
    for header in ("[compute]", "[[memory]]"):
        assert "source" in _comment_block(lines, header).lower(), header
    precision = next(h for h in lines if h.startswith(("[[compute.precision]]", "[compute.bit")))
    assert "source" in _comment_block(lines, precision).lower()
    # both fixed costs are set in the file, each explained ("Source:" or "Estimate:")
    overheads = _comment_block(lines, "[overheads]")
    keys = load_profile_data(name)["overheads"].keys()
    assert {"layer_cycles", "tile_cycles"} <= keys
    for key in ("layer_cycles", "tile_cycles"):
        assert f"# {key}. source" in overheads.lower() or f"# {key}. estimate" in overheads.lower()
    # any further cost (the Ethos-U55's, learnt from Vela) has its own comment citing it
    for key in sorted(keys - {"layer_cycles", "tile_cycles"}):
        starts = (f"{key} =", f"[overheads.{key}]")
        at = next(i for i, line in enumerate(lines) if line.startswith(starts))
        above = []
        while at > 0 and lines[at - 1].startswith(("#", "conv_", "output_")):
            at -= 1
            above.append(lines[at].lower())
        assert any(w in " ".join(above) for w in ("source", "estimate", "vela")), key


# Peak MACs/cycle at (w_bits, a_bits), each from the datasheet / paper cited in the profile.
GOLDEN_PEAKS = [
    # SCALE-Sim scale.cfg: a 32x32 array, one INT8 MAC per PE per cycle
    ("npu-systolic-32", 8, 8, 1024),
    # TPU v1 is 256x256 = 65536 MACs (Jouppi et al. 2017); this profile is 1/4 of it
    ("npu-systolic-128", 8, 8, 65536 / 4),
    # TPU v1: 8-bit x 16-bit at half speed, 16 x 16 at quarter speed
    ("npu-systolic-128", 8, 16, 65536 / 8),
    ("npu-systolic-128", 16, 16, 65536 / 16),
    # BitFusion: 16x32 fusion units, one W8A8 MAC each; 16 fused 2-bit MACs at W2A2
    ("npu-bitfusion", 8, 8, 512),
    ("npu-bitfusion", 2, 2, 16 * 512),
    ("npu-bitfusion", 2, 8, 4 * 512),
    # ZCU102: 2520 DSP48E2 (DS891) x 2 INT8 MACs (WP486); 4 INT4 MACs (WP521)
    ("fpga-zcu102-dsp", 8, 8, 2520 * 2),
    ("fpga-zcu102-dsp", 4, 4, 2520 * 4),
    # BISMO on PYNQ-Z1: Dm x Dk x Dn = 8 x 256 x 8 binary MACs per cycle; W8A8 = 64 passes
    ("fpga-bitserial", 1, 1, 8 * 256 * 8),
    ("fpga-bitserial", 8, 8, 8 * 256 * 8 / 64),
    # Zen 3: 2 FMA pipes x 8 FP32 lanes; INT8 (vpmaddubsw, no VNNI) ~2x
    ("cpu-x86-avx2", 32, 32, 16),
    ("cpu-x86-avx2", 8, 8, 32),
    # Cortex-A76: 2 x FMLA (4 lanes) and 2 x SDOT (16 MACs) per cycle
    ("cpu-arm-a76", 32, 32, 8),
    ("cpu-arm-a76", 8, 8, 32),
    # Ethos-U55-256: 256 INT8 MACs/cycle, 16-bit activations at half rate
    ("npu-ethos-u55", 8, 8, 256),
    ("npu-ethos-u55", 8, 16, 128),
]


@pytest.mark.parametrize(("name", "w", "a", "peak"), GOLDEN_PEAKS)
def test_peak_macs_per_cycle_matches_the_datasheet(name, w, a, peak):
    assert load_profile(name).compute.peak_macs_per_cycle(w, a) == pytest.approx(peak)


def test_published_throughput_and_bandwidth():
    # TPU v1 at full size: 256x256 x 2 ops x 700 MHz = 92 TOPS (Jouppi et al. 2017)
    tpu = load_profile("npu-systolic-128", overrides={"compute.rows": 256, "compute.cols": 256})
    assert 2 * tpu.compute.peak_macs_per_cycle(8, 8) * tpu.clock_hz == pytest.approx(92e12, 0.01)
    # BISMO PYNQ-Z1: 6.5 binary TOPS (Umuroglu et al. 2018)
    bismo = load_profile("fpga-bitserial")
    assert 2 * bismo.compute.peak_macs_per_cycle(1, 1) * bismo.clock_hz == pytest.approx(
        6.5e12, 0.01
    )

    def gbps(profile, level):
        (m,) = [m for m in profile.memory if m.name == level]
        return m.bandwidth_bytes_per_cycle * profile.clock_hz / 1e9

    # Vela's default Ethos-U55 system: SRAM 4 GB/s, flash 0.5 GB/s
    ethos = load_profile("npu-ethos-u55")
    assert gbps(ethos, "sram") == pytest.approx(4.0)
    assert gbps(ethos, "flash") == pytest.approx(0.5)
    # LPDDR4-3200 x32 = 12.8 GB/s; DDR4-2133 x64 = 17.06 GB/s; TPU v1 DDR3 30 GB/s
    assert gbps(load_profile("npu-systolic-32"), "dram") == pytest.approx(12.8)
    assert gbps(load_profile("fpga-zcu102-dsp"), "ddr") == pytest.approx(17.06, 0.01)
    assert gbps(load_profile("npu-systolic-128"), "dram") == pytest.approx(30.0, 0.01)


@pytest.mark.parametrize("name", NAMES)
def test_memory_hierarchy_invariants(name):
    profile = load_profile(name)
    for operand in ("weights", "inputs", "outputs"):
        assert profile.off_chip(operand).off_chip
    names = [m.name for m in profile.memory]
    assert len(set(names)) == len(names)
    off = [m.off_chip for m in profile.memory]
    assert off == sorted(off, reverse=True), "off-chip levels come first"
    assert profile.overheads.layer_cycles >= 0 and profile.clock_hz > 0
    assert profile.overheads.tile_cycles >= 0


def test_promotion_to_the_cheapest_covering_mode():
    cpu = load_profile("cpu-x86-avx2")
    mode = cpu.compute.resolve(4, 8)
    assert (mode.w_bits, mode.a_bits) == (8, 8)
    assert cpu.compute.peak_macs_per_cycle(4, 8) == cpu.compute.peak_macs_per_cycle(8, 8)
    assert cpu.compute.resolve(32, 32).w_bits == 32  # a float layer runs in FP32
    arm = load_profile("cpu-arm-a76")
    assert (arm.compute.resolve(2, 8).w_bits, arm.compute.resolve(2, 8).a_bits) == (8, 8)
    bitfusion = load_profile("npu-bitfusion")
    mode = bitfusion.compute.resolve(3, 8)
    assert (mode.w_bits, mode.a_bits) == (4, 8)
    ethos = load_profile("npu-ethos-u55")
    assert (ethos.compute.resolve(8, 12).a_bits, ethos.compute.resolve(4, 4).w_bits) == (16, 8)


@pytest.mark.parametrize("name", ["npu-systolic-32", "npu-ethos-u55", "npu-bitfusion"])
def test_float_on_an_integer_only_target_is_unsupported(name):
    with pytest.raises(UnsupportedPrecision):
        load_profile(name).compute.resolve(32, 32)


def test_bitfusion_model_follows_the_fusion_law():
    # Sharma et al. 2018: (8/w)(8/a) MACs per fusion unit, energy ~ w*a/64
    data = load_profile_data("npu-bitfusion")
    fill_defaults(SCHEMA, data)
    compute = data["compute"]
    base = compute["bitfusion"]["w8a8_energy_pj_per_mac"]
    modes = {(p.w_bits, p.a_bits): p for p in expand_precisions(compute)}
    assert set(modes) == {(w, a) for w in (2, 4, 8, 16) for a in (2, 4, 8, 16)}
    for (w, a), p in modes.items():
        assert p.macs_per_pe_per_cycle == pytest.approx((8 / w) * (8 / a))
        assert p.energy_pj_per_mac == pytest.approx(base * w * a / 64)
    # energy per MAC x MACs per cycle is the same at every width: the bricks just regroup
    assert {round(p.energy_pj_per_mac * p.macs_per_pe_per_cycle, 9) for p in modes.values()} == {
        base
    }


def test_bitserial_model_follows_the_bit_plane_law():
    # BISMO: a w-bit x a-bit product is w*a binary passes
    profile = load_profile("fpga-bitserial")
    pes = profile.compute.pes
    for p in profile.compute.precisions:
        assert p.macs_per_pe_per_cycle == pytest.approx(1 / (p.w_bits * p.a_bits))
        assert profile.compute.peak_macs_per_cycle(p.w_bits, p.a_bits) * p.w_bits * p.a_bits == (
            pytest.approx(pes)
        )
    assert len(profile.compute.precisions) == 64
    assert profile.compute.peak_macs_per_cycle(3, 5) == pytest.approx(pes / 15)  # exact mode


def test_set_overrides_round_trip_and_change_peak():
    base = load_profile("npu-systolic-32")
    bigger = load_profile("npu-systolic-32", overrides=parse_set(["compute.rows=64"]))
    assert bigger.compute.rows == 64
    assert bigger.compute.peak_macs_per_cycle(8, 8) == 2 * base.compute.peak_macs_per_cycle(8, 8)
    assert "compute.rows=64" in bigger.source
    # by name and by index address the same level
    by_name = load_profile("npu-systolic-32", overrides={"memory.dram.size_bytes": 2**31})
    by_index = load_profile("npu-systolic-32", overrides={"memory.0.size_bytes": 2**31})
    assert by_name.content_hash() == by_index.content_hash() != base.content_hash()
    assert by_name.memory[0].size_bytes == 2**31
    # a table missing from the file is created
    zs = load_profile("npu-ethos-u55", overrides={"sparsity.zero_skipping": True})
    assert zs.sparsity.zero_skipping
    # setting a value back to the file's value restores the same profile
    same = load_profile("npu-systolic-32", overrides={"compute.dataflow": "os"})
    assert same.content_hash() == base.content_hash()


def test_parse_set_reads_toml_values():
    values = parse_set(
        [
            "clock_hz=1e9",
            "compute.rows = 64",
            "compute.dataflow=ws",
            'description="two words"',
            "sparsity.zero_skipping=true",
            "sparsity.nm_patterns=[[2, 4]]",
        ]
    )
    assert values == {
        "clock_hz": 1e9,
        "compute.rows": 64,
        "compute.dataflow": "ws",
        "description": "two words",
        "sparsity.zero_skipping": True,
        "sparsity.nm_patterns": [[2, 4]],
    }
    assert isinstance(values["compute.rows"], int) and isinstance(values["clock_hz"], float)


def test_profile_from_dict_round_trips_and_does_not_mutate_its_input():
    data = load_profile_data("fpga-zcu102-dsp")
    snapshot = repr(data)
    built = profile_from_dict(data, source="inline", overrides={"compute.cols": 35})
    assert repr(data) == snapshot
    assert built.compute.cols == 35 and built.source.startswith("inline")
    plain = profile_from_dict(data, source="inline")
    assert plain.content_hash() == load_profile("fpga-zcu102-dsp").content_hash()


@pytest.mark.parametrize("name", [n for n in NAMES if load_profile(n).tunables])
def test_every_tunable_value_builds_a_distinct_valid_profile(name):
    profile = load_profile(name)
    for tunable in profile.tunables:
        hashes = {
            load_profile(name, overrides={tunable.key: value}).content_hash()
            for value in tunable.values
        }
        assert len(hashes) == len(tunable.values), tunable.key


def test_cfg_paths_go_to_the_scalesim_loader(monkeypatch, tmp_path):
    calls = []

    def fake(path):
        calls.append(Path(path))
        return load_profile_data("npu-systolic-32")

    monkeypatch.setitem(
        sys.modules, "lowbit.hwsim.scalesim", types.SimpleNamespace(read_scalesim_cfg=fake)
    )
    cfg = tmp_path / "scale.cfg"
    profile = load_profile(cfg, overrides={"compute.rows": 8})
    assert profile.name == "npu-systolic-32" and profile.compute.rows == 8
    assert calls == [cfg]


def _schema_keys(table: Table, prefix: str = "") -> tuple[set[str], set[str]]:
    """(leaf key names, table paths) of the schema."""
    leaves, tables = set(), set()
    for name, child in table.keys.items():
        if isinstance(child, Key):
            leaves.add(name)
            continue
        tables.add(prefix + name)
        sub = child if isinstance(child, Table) else child.table
        more_leaves, more_tables = _schema_keys(sub, f"{prefix}{name}.")
        leaves |= more_leaves
        tables |= more_tables
    return leaves, tables


def test_readme_documents_every_schema_key():
    readme = (PROFILE_DIR / "README.md").read_text()
    leaves, tables = _schema_keys(SCHEMA)
    assert not [k for k in sorted(leaves) if f"`{k}`" not in readme]
    assert not [t for t in sorted(tables) if f"[{t}]" not in readme]  # [x] or [[x]] headers
    assert isinstance(SCHEMA.keys["memory"], TableArray)
    for name in NAMES:
        assert f"`{name}`" in readme


def test_readme_example_is_a_valid_profile(tmp_path):
    readme = (PROFILE_DIR / "README.md").read_text()
    (example,) = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    path = tmp_path / "my-npu.toml"
    path.write_text(example)
    profile = load_profile(path)
    assert profile.name == "my-npu"
    assert profile.compute.resolve(4, 8).macs_per_pe_per_cycle == 2.0
    assert load_profile_data(path)["compute"]["rows"] == profile.compute.rows


def test_unknown_builtin_lists_the_valid_names():
    with pytest.raises(ProfileError) as info:
        load_profile("npu-systolic-33")
    message = str(info.value)
    assert "npu-systolic-33" in message and all(name in message for name in NAMES)
    assert 'did you mean "npu-systolic-32"' in message
