"""Bad profiles and bad overrides: each gives ONE ProfileError naming the file and the key
path of every problem, never another exception."""

from __future__ import annotations

import pytest

import lowbit.hwsim.profiles
from lowbit.hwsim._profile_schema import SCHEMA, Key, Table
from lowbit.hwsim.errors import LowbitError, ProfileError
from lowbit.hwsim.profile import Overheads
from lowbit.hwsim.profiles import (
    load_profile,
    load_profile_data,
    parse_set,
    profile_from_dict,
    validate_profile_data,
)

TINY = """\
schema_version = 1
name = "tiny"
description = "a minimal profile for tests"
family = "npu"
clock_hz = 1e9

[compute]
kind = "systolic"
rows = 4
cols = 4
dataflow = "os"
dataflows = ["os", "ws"]

[[compute.precision]]
w_bits = 8
a_bits = 8
macs_per_pe_per_cycle = 1.0
energy_pj_per_mac = 0.3

[[memory]]
name = "dram"
size_bytes = 1048576
bandwidth_bytes_per_cycle = 8.0
energy_pj_per_byte = 40.0
holds = ["weights", "inputs", "outputs"]
off_chip = true

[[memory]]
name = "sram"
size_bytes = 4096
bandwidth_bytes_per_cycle = 16.0
energy_pj_per_byte = 2.0
holds = ["weights", "inputs", "outputs"]
double_buffered = true
"""


def write(tmp_path, text, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path, **kwargs) -> tuple[str, list[str]]:
    with pytest.raises(ProfileError) as info:
        load_profile(path, **kwargs)
    error = info.value
    assert isinstance(error, LowbitError)
    assert str(path) in str(error) and error.source == str(path)
    return str(error), error.problems


def test_the_tiny_profile_is_valid(tmp_path):
    profile = load_profile(write(tmp_path, TINY))
    assert profile.compute.peak_macs_per_cycle(8, 8) == 16
    assert profile.compute.cores == 1 and profile.weight_storage == "packed"
    assert profile.sparsity.nm_patterns == () and profile.overheads.layer_cycles == 0
    # the schema's default per-tile cost is the dataclass's (hwsim/profile.py Overheads)
    assert profile.overheads.tile_cycles == Overheads().tile_cycles == 16


def test_tile_cycles_is_read_from_the_file(tmp_path):
    text = TINY.replace("[compute]", "[overheads]\ntile_cycles = 40\n\n[compute]", 1)
    assert load_profile(write(tmp_path, text)).overheads.tile_cycles == 40


BAD_FILES = [
    # (replace this, with this, expected problem text)
    ("clock_hz = 1e9\n", "", "clock_hz: missing"),
    ("rows = 4", 'rows = "32"', 'compute.rows: must be an integer, got "32"'),
    ("rows = 4", "rows = 4.0", "compute.rows: must be an integer, got 4"),
    ("off_chip = true", "off_chip = 1", "memory[0].off_chip: must be true or false, got 1"),
    (
        "bandwidth_bytes_per_cycle = 16.0",
        "bandwidth_bytes_per_cycle = -4",
        "memory[1].bandwidth_bytes_per_cycle: must be >= 0.001, got -4",
    ),
    ("clock_hz = 1e9", "clock_hz = 0", "clock_hz: must be >= 1000, got 0"),
    # tiny positive rates made latency, energy and cycle counts overflow to infinity
    ("clock_hz = 1e9", "clock_hz = 1e-308", "clock_hz: must be >= 1000, got 1e-308"),
    (
        "bandwidth_bytes_per_cycle = 16.0",
        "bandwidth_bytes_per_cycle = 1e-308",
        "memory[1].bandwidth_bytes_per_cycle: must be >= 0.001, got 1e-308",
    ),
    ("clock_hz = 1e9", "clock_hz = 5e12", "clock_hz: must be <= 10000000000 Hz (implausibly"),
    ("clock_hz = 1e9", "clock_hz = nan", "clock_hz: must be a finite number, got nan"),
    ("rows = 4", "rows = 100000", "compute.rows: must be <= 65536"),
    ("size_bytes = 4096", "size_bytes = 0", "memory[1].size_bytes: must be >= 1, got 0"),
    ("size_bytes = 4096", f"size_bytes = {2**51}", "memory[1].size_bytes: must be <="),
    ('dataflow = "os"', 'dataflow = "xs"', "compute.dataflow: unknown 'xs' (valid: os, ws, is)"),
    ("rows = 4", "rows = 4\nrowz = 4", 'compute.rowz: unknown key (did you mean "rows"?)'),
    ('family = "npu"', 'family = "gpu"', "family: unknown 'gpu' (valid: npu, fpga, cpu, mcu)"),
    ("schema_version = 1", "schema_version = 2", "schema_version: unsupported 2 (supported: 1)"),
    ('dataflow = "os"', 'dataflow = "is"', "compute.dataflow: 'is' is not in compute.dataflows"),
    ('kind = "systolic"', 'kind = "vector"', "compute.dataflow: unknown 'os' (valid: vector)"),
    ("w_bits = 8", "w_bits = 3\nw_bits_ = 1", "compute.precision[0].w_bits_: unknown key"),
    ("a_bits = 8", "a_bits = 20", "compute.precision[0].a_bits: must be 1-16, or 32 for float"),
    ('name = "sram"', 'name = "dram"', 'memory[1].name: "dram" is also the name of memory[0]'),
    ('name = "sram"', 'name = "l2 cache"', "memory[1].name: must start with a letter"),
    ("off_chip = true", "off_chip = false", "memory: no off-chip level holds weights"),
    (
        'holds = ["weights", "inputs", "outputs"]\noff_chip',
        'holds = ["inputs", "outputs"]\noff_chip',
        "memory: no off-chip level holds weights",
    ),
    ('holds = ["weights", "inputs", "outputs"]\ndouble', 'holds = ["wts"]\ndouble', "holds[0]"),
    ("[compute]", "[sparsity]\nnm_patterns = [[4, 2]]\n\n[compute]", "nm_patterns[0]: must be"),
    ("[compute]", "[overheads]\nlayer_cycles = -1\n\n[compute]", "overheads.layer_cycles: must"),
    (
        "[compute]",
        "[overheads]\ntile_cycles = -1\n\n[compute]",
        "overheads.tile_cycles: must be >= 0, got -1",
    ),
    (
        "[compute]",
        "[overheads]\ntile_cycles = 2.5\n\n[compute]",
        "overheads.tile_cycles: must be an integer, got 2.5",
    ),
    (
        "[compute]",
        "[overheads]\ntile_cycles = 10_000_000\n\n[compute]",
        "overheads.tile_cycles: must be <= 1000000",
    ),
    (
        "[compute]",
        "[overheads]\ntile_cycle = 8\n\n[compute]",
        'overheads.tile_cycle: unknown key (did you mean "tile_cycles"?)',
    ),
    (
        'dataflows = ["os", "ws"]',
        'dataflows = ["os", "ws"]\nprecision_model = "bitfusion"',
        'compute.bitfusion: missing (precision_model = "bitfusion" needs it)',
    ),
    (
        "[[memory]]",
        "[[compute.precision]]\nw_bits = 8\na_bits = 8\n"
        "macs_per_pe_per_cycle = 2.0\nenergy_pj_per_mac = 1.0\n\n[[memory]]",
        "compute.precision[1]: W8A8 is already defined by an earlier entry",
    ),
    (
        "[compute]",
        '[[tunables]]\nkey = "compute.rowz"\nvalues = [1]\n\n[compute]',
        "tunables[0].key: compute.rowz: unknown key",
    ),
    (
        "[compute]",
        '[[tunables]]\nkey = "compute.rows"\nvalues = [8, 100000]\n\n[compute]',
        "tunables[0].values[1]: compute.rows = 100000 gives",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), BAD_FILES)
def test_each_bad_file_names_file_and_key_path(tmp_path, old, new, expected):
    assert old in TINY
    message, problems = problems_of(write(tmp_path, TINY.replace(old, new, 1)))
    assert expected in message
    assert any(expected in p for p in problems)


def test_three_problems_are_reported_in_one_error(tmp_path):
    text = (
        TINY.replace("clock_hz = 1e9\n", "")
        .replace('dataflow = "os"', 'dataflow = "xs"')
        .replace("bandwidth_bytes_per_cycle = 16.0", "bandwidth_bytes_per_cycle = -4")
    )
    message, problems = problems_of(write(tmp_path, text))
    assert len(problems) == 3
    for expected in ("clock_hz: missing", "compute.dataflow: unknown 'xs'", "memory[1].band"):
        assert expected in message


def test_duplicate_key_is_a_toml_error_with_line(tmp_path):
    message, problems = problems_of(write(tmp_path, TINY.replace("rows = 4", "rows = 4\nrows = 8")))
    assert len(problems) == 1 and "not valid TOML" in message and "line 10" in message
    assert "given twice" in message


def test_duplicate_table_is_a_toml_error(tmp_path):
    message, _ = problems_of(write(tmp_path, TINY + "\n[compute]\nrows = 2\n"))
    assert "not valid TOML" in message and "line" in message


def test_not_toml(tmp_path):
    message, problems = problems_of(write(tmp_path, "this is = not [toml\n"))
    assert len(problems) == 1 and "not valid TOML" in message and "line 1" in message


def test_not_utf8(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00name")
    _, problems = problems_of(path)
    assert "UTF-8" in problems[0]


def test_missing_file(tmp_path):
    message, _ = problems_of(tmp_path / "nowhere.toml")
    assert "file not found" in message


def test_unsupported_suffix(tmp_path):
    with pytest.raises(ProfileError, match="unsupported profile file type '.yaml'"):
        load_profile(tmp_path / "chip.yaml")


def test_bad_override_paths_are_named(tmp_path):
    path = write(tmp_path, TINY)
    for key, expected in [
        ("compute.rowz", '--set compute.rowz: unknown key (did you mean "rows"?)'),
        ("memory.dramm.size_bytes", '--set memory.dramm.size_bytes: memory has no entry "dramm"'),
        ("memory.7.size_bytes", 'memory has no entry "7"'),
        ("compute", "--set compute: compute is a table"),
        ("memory.dram", "--set memory.dram: memory is an array of tables"),
        ("clock_hz.x", "--set clock_hz.x: clock_hz is a value, not a table"),
        ("compute..rows", "empty segment"),
    ]:
        message, problems = problems_of(path, overrides={key: 1})
        assert expected in message, (key, message)
        assert len(problems) == 1


def test_bad_override_values_are_validated_like_the_file(tmp_path):
    path = write(tmp_path, TINY)
    overrides = parse_set(["compute.rows=abc", "memory.dram.bandwidth_bytes_per_cycle=0"])
    message, problems = problems_of(path, overrides=overrides)
    assert 'compute.rows: must be an integer, got "abc" (from --set compute.rows)' in message
    assert "memory[0].bandwidth_bytes_per_cycle: must be >= 0.001, got 0 (from --set" in message
    assert len(problems) == 2


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["compute.rows"], "expected key.path=value"),
        (["=3"], "expected key.path=value"),
        (["compute.rows="], "compute.rows: no value"),
        (["compute.rows=[1,"], "is not a TOML value"),
        (["compute.rows=1", "compute.rows=2"], "compute.rows: set twice"),
    ],
)
def test_parse_set_rejects_malformed_items(items, expected):
    with pytest.raises(ProfileError) as info:
        parse_set(items)
    assert info.value.source == "--set" and expected in str(info.value)


def test_builtin_name_must_equal_its_file_name(tmp_path, monkeypatch):
    (tmp_path / "foo.toml").write_text(TINY)  # name = "tiny"
    monkeypatch.setattr(lowbit.hwsim.profiles, "PROFILE_DIR", tmp_path)
    assert lowbit.hwsim.profiles.builtin_profile_names() == ["foo"]
    with pytest.raises(ProfileError, match='must equal its file name "foo", got "tiny"'):
        load_profile("foo")


def _leaf_paths(table: Table, prefix: str = "") -> list[str]:
    paths = []
    for name, child in table.keys.items():
        if isinstance(child, Key):
            paths.append(prefix + name)
        elif isinstance(child, Table):
            paths += _leaf_paths(child, f"{prefix}{name}.")
    return paths


@pytest.mark.parametrize("base", ["tiny", "npu-bitfusion", "fpga-bitserial", "npu-systolic-32"])
def test_any_wrong_value_anywhere_is_a_profile_error_not_a_crash(base, tmp_path):
    data = load_profile_data(write(tmp_path, TINY) if base == "tiny" else base)
    paths = _leaf_paths(SCHEMA) + [
        "memory.0.size_bytes",
        "memory.1.holds",
        "memory.0.off_chip",
        "memory.1.name",
    ]
    if "precision" in data["compute"]:
        paths += ["compute.precision.0.w_bits", "compute.precision.0.macs_per_pe_per_cycle"]
    if "tunables" in data:
        paths += ["tunables.0.key", "tunables.0.values"]
    values = ["x", -1, 0, 1e300, 10**400, [1, "a"], {"a": 1}, True, [], None, float("inf")]
    values += [[[2, 4]], float("nan")]
    built = 0
    for path in paths:
        for value in values:
            try:
                profile_from_dict(data, source="fuzz", overrides={path: value})
                built += 1
            except ProfileError as exc:
                assert exc.problems and exc.source == "fuzz"
    assert built > 0  # some values are legal somewhere (e.g. 0 static power)


def test_validate_profile_data_lists_problems_without_raising():
    assert validate_profile_data({"schema_version": 1}) == [
        "name: missing",
        "family: missing",
        "clock_hz: missing",
        "compute: missing",
        "memory: missing",
    ]
    assert validate_profile_data([]) == ["profile: must be a table, got []"]
    with pytest.raises(ProfileError, match="request body: profile: must be a table"):
        profile_from_dict([1, 2], source="request body")


def test_an_override_key_with_a_line_break_stays_one_line():
    from lowbit.hwsim.errors import LowbitError
    from lowbit.hwsim.profiles import load_profile

    with pytest.raises(LowbitError) as caught:
        load_profile("npu-bitfusion", overrides={"a\nb": 1})
    assert "\n" not in str(caught.value).strip() and "'a\\nb'" in str(caught.value)
