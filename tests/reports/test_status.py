"""reports.run_status: progress read from a finished run and from its journal alone."""

from __future__ import annotations

import json
import shutil

import pytest

from lowbit.reports import run_status


def test_finished_run_status_is_the_summary(tiny_run):
    summary = json.loads((tiny_run / "summary.json").read_text())
    status = run_status(tiny_run)
    assert status["finished"] and set(status["methods"]) == set(summary["methods"])
    for name, method in summary["methods"].items():
        got = status["methods"][name]
        assert got["completed"] == method["completed"]
        assert got["hypervolume"] == method["hypervolume_val"]
        assert [p["config_id"] for p in got["pareto"]] == method["pareto"]


def test_status_of_a_running_search_from_its_journal(tiny_run, tmp_path):
    """Without summary.json (the search is still running) the journal alone gives the same
    counts and hypervolumes (W8A8 normalisation from the uniform study's W8A8 trial)."""
    run_dir = tmp_path / "running"
    shutil.copytree(tiny_run, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").unlink()
    status = run_status(run_dir, study=summary["study"])
    assert not status["finished"]
    assert status["w8a8_latency_ms"] == pytest.approx(summary["reference"]["w8a8_latency_ms"])
    for name, method in summary["methods"].items():
        got = status["methods"][name]
        assert (got["completed"], got["failed"], got["running"]) == (
            method["completed"],
            method["failed"],
            0,
        )
        assert got["hypervolume"] == pytest.approx(method["hypervolume_val"])
        latencies = [p["latency_ms"] for p in got["pareto"]]
        assert latencies == sorted(latencies)


def test_status_before_the_search_started(tmp_path):
    assert run_status(tmp_path) == {"finished": False, "w8a8_latency_ms": None, "methods": {}}
