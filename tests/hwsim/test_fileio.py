"""hwsim.fileio: atomic writes keep the old file on failure and get umask permissions; the
input reader turns every unreadable file into one error naming it."""

from __future__ import annotations

import json
import os

import pytest

from lowbit.hwsim.errors import InputFileError
from lowbit.hwsim.fileio import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    read_text,
    read_toml,
)


def test_round_trip_and_creates_parent(tmp_path):
    path = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_text(path, "old")

    def explode(handle):
        handle.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_permissions_follow_the_umask_not_mkstemp(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# --- the input reader: one error naming the file, finite JSON numbers only ------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (bytes(range(256)), "not a UTF-8 text file (not a plan)"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply to be a plan"),
        (b"[" * 100 + b"]" * 100, "JSON nested too deeply to be a plan"),  # no RecursionError
        (b'{"a": NaN}', "not valid JSON (plan): NaN is not a number JSON allows"),
        (b'{"a": -Infinity}', "not valid JSON (plan): -Infinity is not a number JSON allows"),
        (b'{"a": 1e999}', "not valid JSON (plan): number 1e999 is out of range"),
        (b"{nope", "not valid JSON (plan)"),
    ],
)
def test_read_json_refuses_with_one_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "in.json"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as err:
        read_json(path, what="plan")
    assert str(err.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(err.value)


def test_read_text_limits_size_and_names_missing_files_and_directories(tmp_path):
    (tmp_path / "big.json").write_bytes(b" " * (2 * 2**20 + 1))
    with pytest.raises(InputFileError, match=r"big.json: larger than 2 MiB"):
        read_text(tmp_path / "big.json", what="plan", max_bytes=2 * 2**20)
    with pytest.raises(InputFileError, match="missing.json: plan not found"):
        read_json(tmp_path / "missing.json", what="plan")
    with pytest.raises(InputFileError, match="is a directory"):
        read_json(tmp_path, what="plan")


def test_read_json_and_toml_accept_what_lowbit_writes(tmp_path):
    data = {"a": [1, 2.5, {"b": None}], "c": "é"}
    atomic_write_text(tmp_path / "ok.json", json.dumps(data))
    assert read_json(tmp_path / "ok.json", what="plan") == data
    atomic_write_text(tmp_path / "ok.toml", 'x = 1.5\n[t]\ny = "z"\n')
    assert read_toml(tmp_path / "ok.toml", what="profile") == {"x": 1.5, "t": {"y": "z"}}
    atomic_write_text(tmp_path / "deep.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InputFileError, match="deep.toml: TOML nested too deeply"):
        read_toml(tmp_path / "deep.toml", what="profile")
