"""The corpus of nasty input files the CLI fuzz tests write (issue 15): file contents by
kind (JSON plans and deployment configs, TOML profiles, SCALE-Sim topologies and configs, run
summaries), hostile variants of a valid deployment config, and :func:`corpus`, which writes
them plus a directory named like a file, a missing file and a sparse 65 MiB file."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "CFG_CONTENTS",
    "CONFIG_CONTENTS",
    "CONTENTS",
    "CSV_CONTENTS",
    "PLAN",
    "SUMMARY_CONTENTS",
    "TOML_CONTENTS",
    "config_dict",
    "minimal_config",
    "corpus",
    "run_dir",
]


PLAN = {"version": 1, "layers": {"_default": {"w_bits": 4, "a_bits": 8}}}


def config_dict() -> dict:
    return minimal_config().to_dict()


def minimal_config():
    """A small valid deployment config (digits-cnn, an empty plan)."""
    from lowbit.search.testing import example_config

    return example_config(
        study="s",
        accuracy_val=0.9,
        accuracy_test=0.9,
        fp32_val=0.9,
        fp32_test=0.9,
        latency_ms=1.0,
        energy_mj=1.0,
        size_kib=1.0,
        lowbit_version="0.1.0",
        val_samples=None,
        test_samples=None,
        calib_samples=100,
        threads=None,
    )


def _truncations(text: str) -> dict[str, bytes]:
    raw = text.encode()
    return {f"cut{n}": raw[: len(raw) * n // 4] for n in (1, 2, 3)}


#: the file contents of the corpus (a directory, a missing file and a sparse giant are added
#: by :func:`corpus`)
CONTENTS: dict[str, bytes] = {
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "latin1": '{"version": 1, "name": "caf\xe9"}'.encode("latin-1"),
    "utf16": '{"version": 1}'.encode("utf-16"),
    "nul": b'{"version": 1}\x00',
    "deep-list": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "deep-valid": (b"[" * 70 + b"]" * 70),
    "huge-float": b'{"version": 1e999}',
    "huge-int": b'{"version": 1' + b"0" * 5_000 + b"}",
    "big-int": b'{"version": 9223372036854775808}',
    "nan": b'{"version": NaN}',
    "infinity": b'{"version": 1, "layers": {"_default": {"w_bits": Infinity}}}',
    "list": b"[]",
    "string": b'"plan"',
    "number": b"5",
    "null": b"null",
    "true": b"true",
    "dup-keys": b'{"version": 1, "version": 2}',
    "nel-key": b'{"version": 1, "\\u0085": 1}',  # a line break to str.splitlines
    "escape-key": b'{"version": 1, "layers": {"\\u001b[2J\\nx": {}}}',  # clears a terminal
    "bad-regex": b'{"version": 1, "layers": {"re:(": {"w_bits": 4}}}',
    "wrong-types": b'{"version": "1", "layers": [], "pin_first_last": "no"}',
    "layer-types": b'{"version": 1, "layers": {"_default": {"w_bits": "4", "keep": [1]}}}',
    "neg-bits": b'{"version": 1, "layers": {"_default": {"w_bits": -4, "a_bits": 0}}}',
    "zero-keep": b'{"version": 1, "layers": {"_default": {"keep": 0, "rank_fraction": 1e-308}}}',
    "bom": b'\xef\xbb\xbf{"version": 1, "layers": {}}',
    "crlf-tail": b'{"version": 1, "layers": {}}\r\n\x1a',
    "toml": b"version = 1\n[layers._default]\nw_bits = 4\n",
    **_truncations(json.dumps(PLAN)),
    **{f"config-{k}": v for k, v in _truncations(json.dumps(config_dict())).items()},
}


def _edit(data: dict, path: str, value) -> dict:
    """A deep copy of ``data`` with the key at dotted ``path`` set to ``value`` (removed if
    ``value`` is :data:`REMOVE`)."""
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is REMOVE:
        node.pop(last, None)
    else:
        node[last] = value
    return data


REMOVE = object()


def _config_variants() -> dict[str, bytes]:
    """Deployment configs with one field made hostile."""
    edits = {
        "cfg-nan-acc": ("accuracy.val", float("nan")),
        "cfg-acc-2": ("accuracy.test", 2.0),
        "cfg-neg-cycles": ("simulation.total_cycles", -5),
        "cfg-huge-cycles": ("simulation.total_cycles", 10**400),
        "cfg-neg-latency": ("simulation.latency_ms", -1.0),
        "cfg-huge-seed": ("seed", 2**64),
        "cfg-neg-seed": ("seed", -1),
        "cfg-bool-seed": ("seed", True),
        "cfg-str-latency": ("simulation.latency_ms", "fast"),
        "cfg-plan-list": ("plan", []),
        "cfg-plan-bad": ("plan", {"version": 1, "layers": {"_default": {"w_bits": 99}}}),
        "cfg-layers-str": ("simulation.layers", "conv1"),
        "cfg-layers-bad": ("simulation.layers", [{"name": "x"}]),
        "cfg-model-num": ("model", 7),
        "cfg-no-model": ("model", REMOVE),
        "cfg-unknown-model": ("model", "no-such-model"),
        "cfg-hardware-str": ("hardware", "npu-bitfusion"),
        "cfg-bad-hw": ("hardware.name", "../../etc/passwd"),
        "cfg-schema": ("schema_version", 99),
        "cfg-kind": ("kind", "something-else"),
        "cfg-qat-huge": ("qat.steps", 10**20),
        "cfg-calib-neg": ("calibration.samples", -3),
        "cfg-calib-split": ("calibration.split", "train; rm -rf /"),
    }
    return {
        name: json.dumps(_edit(config_dict(), key, value), allow_nan=True).encode()
        for name, (key, value) in edits.items()
    }


CONFIG_CONTENTS = {**CONTENTS, **_config_variants()}


def corpus(root: Path, contents: dict[str, bytes], suffix: str = ".json") -> list[Path]:
    """Write ``contents`` under ``root`` (one file each), plus a directory named like a file,
    a missing file and a sparse file larger than any input lowbit reads."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in contents.items():
        path = root / f"{name}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    (root / f"dir{suffix}").mkdir()
    with open(root / f"giant{suffix}", "wb") as handle:
        handle.truncate(65 * 2**20)  # sparse: no disk used
    return [*paths, root / f"dir{suffix}", root / f"missing{suffix}", root / f"giant{suffix}"]


BITFUSION = Path(__file__).parents[2] / "lowbit" / "hardware_profiles" / "npu-bitfusion.toml"


TOML_CONTENTS = {
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "latin1": 'name = "caf\xe9"\n'.encode("latin-1"),
    "json": b'{"name": "x"}',
    "deep": b"a = " + b"[" * 10_000 + b"]" * 10_000 + b"\n",
    "nan": b'name = "x"\nclock_hz = nan\n',
    "inf": b'name = "x"\nclock_hz = inf\n',
    "huge": b'name = "x"\nclock_hz = 1' + b"0" * 5000 + b"\n",
    "wrong": b'name = 5\ncompute = 3\nmemory = "x"\n',
    "cut": BITFUSION.read_bytes()[:700],
}


_HEADER = (
    b"Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
    b"Num Filter, Strides,\n"
)


CSV_CONTENTS = {
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "header-only": _HEADER,
    "nan": _HEADER + b"conv1, nan, 224, 3, 3, 3, 64, 1,\n",
    "huge": _HEADER + b"conv1, 1" + b"0" * 400 + b", 224, 3, 3, 3, 64, 1,\n",
    "huge-channels": _HEADER + b"conv1, 224, 224, 3, 3, 1" + b"0" * 30 + b", 64, 1,\n",
    "zero": _HEADER + b"conv1, 0, 0, 3, 3, 3, 64, 0,\n",
    "negative": _HEADER + b"conv1, 224, 224, 3, 3, -3, 64, 1,\n",
    "float": _HEADER + b"conv1, 224.5, 224, 3, 3, 3, 64, 1,\n",
    "cut": _HEADER + b"conv1, 224, 22",
}


CFG = b"[general]\nrun_name = x\n\n[architecture_presets]\nArrayHeight: 32\nArrayWidth: 32\n"


CFG_CONTENTS = {
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "no-sections": b"ArrayHeight: 32\n",
    "huge": CFG.replace(b"32\nArrayWidth", b"1" + b"0" * 5000 + b"\nArrayWidth"),
    "nan": CFG.replace(b"ArrayWidth: 32", b"ArrayWidth: nan"),
    "float": CFG.replace(b"ArrayWidth: 32", b"ArrayWidth: 1e308"),
    "dup": CFG + b"[general]\n",
    "cut": CFG[:30],
}


def run_dir(root: Path) -> Path:
    """A run directory as a search writes it, as far as validate/report read it first."""
    run = root / "run"
    (run / "configs").mkdir(parents=True)
    (run / "configs" / "joint-00001.json").write_text(json.dumps(config_dict()))
    summary = {"model": "digits-cnn", "hardware": "npu-bitfusion", "methods": {}}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


SUMMARY_CONTENTS = {
    **{k: v for k, v in CONTENTS.items() if not k.startswith(("config-", "cut"))},
    "methods-int": b'{"model": "digits-cnn", "hardware": "npu-bitfusion", "methods": 5}',
    "methods-list": b'{"model": "digits-cnn", "hardware": "npu-bitfusion", "methods": [1]}',
    "method-str": b'{"model": "digits-cnn", "hardware": "npu-bitfusion", "methods": {"j": "x"}}',
    "model-num": b'{"model": 5, "hardware": [], "methods": {}}',
    "no-model": b'{"methods": {}}',
}
