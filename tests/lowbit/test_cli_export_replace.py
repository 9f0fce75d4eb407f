"""`lowbit export --out DIR` over an earlier export (issue 15): one warning line lists the
earlier files, and after the new export only its own files remain (old and new artifacts
never mix); an export that stops early leaves the earlier one as it was."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lowbit.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "search"))
from test_validate import PRUNED, write_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("zoo_cache")


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_an_export_over_an_earlier_one_replaces_it_whole(tmp_path, capsys):
    config = write_config(tmp_path / "run", "joint-00002", PRUNED)
    out = tmp_path / "export"
    argv = ["export", "--config", str(config), "--out", str(out), "--no-check"]
    assert main([*argv, "--format", "qonnx"]) == 0
    assert "warning" not in capsys.readouterr().err  # a new directory: nothing replaced
    # files of an earlier export that this one will not write again (firmware.json of a
    # built-in target, Vela's output of an Ethos-U one)
    (out / "firmware.json").write_text("{}")
    (out / "vela").mkdir()
    (out / "vela" / "model.int8_vela.tflite").write_bytes(b"old")
    earlier = _files(out)
    assert "model.qonnx.onnx" in earlier

    assert main([*argv, "--finetune-steps", "-1"]) == 2  # stops before writing anything
    assert _files(out) == earlier  # the earlier export is intact
    capsys.readouterr()

    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"lowbit: warning: --out {out} holds an earlier")
    assert err[0].endswith(": " + ", ".join(sorted(earlier)))
    deploy = json.loads((out / "deploy.json").read_text())
    assert set(_files(out)) == {*deploy["files"].values(), "deploy.json"}
    assert not (out / "vela").exists() and not (out / "model.qonnx.onnx").exists()
