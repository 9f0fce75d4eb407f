"""lowbit demo: a previous run from another lowbit version or profile content is kept aside,
not resumed (the search would refuse it; its numbers are not comparable)."""

from __future__ import annotations

import json

import lowbit
from lowbit import hwsim
from lowbit.commands.demo import _set_aside_stale_run


def _summary(out, *, content_hash: str, version: str) -> None:
    out.mkdir()
    (out / "trials.csv").write_text("trial\n1\n")
    summary = {
        "hardware": {"name": "npu-bitfusion", "content_hash": content_hash},
        "versions": {"lowbit": version},
    }
    (out / "summary.json").write_text(json.dumps(summary))


def test_a_run_of_this_version_and_profile_is_resumed(tmp_path):
    profile = hwsim.load_profile("npu-bitfusion")
    out = tmp_path / "demo"
    _summary(out, content_hash=profile.content_hash(), version=lowbit.__version__)
    assert _set_aside_stale_run(out, profile) is None and (out / "trials.csv").is_file()
    assert _set_aside_stale_run(tmp_path / "missing", profile) is None


def test_a_stale_run_is_moved_aside_with_everything_in_it(tmp_path):
    profile = hwsim.load_profile("npu-bitfusion")
    for i, (content_hash, version) in enumerate(
        ((profile.content_hash(), "0.0.1"), ("0" * 64, lowbit.__version__))
    ):
        out = tmp_path / f"demo{i}"
        _summary(out, content_hash=content_hash, version=version)
        aside = _set_aside_stale_run(out, profile)
        assert aside is not None and not out.exists()
        assert aside.name.startswith(f"demo{i}.") and (aside / "trials.csv").is_file()


def test_an_unusable_out_is_one_line_before_any_work(tmp_path, capsys):
    from lowbit.cli import main

    (tmp_path / "afile").write_text("x")
    assert main(["demo", "--out", str(tmp_path / "afile")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing simulated, trained or searched
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "is a file, not a directory" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
