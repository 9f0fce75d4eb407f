"""A cancelled search (Ctrl-C, SIGTERM) fails the trials it has in flight with a reason, shuts
down the Ray it started (no process of its group is left) and releases its driver lock; the
next run resumes with every completed trial (issue 15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_testkit import driver_script

from lowbit.search.run import SearchSetup, execute
from lowbit.search.runner import RayPool, optimize
from lowbit.search.storage import FAIL_REASON_ATTR, driver_lock_path, open_storage
from lowbit.search.testing import SyntheticSpec


def _group(pgid: int) -> list[str]:
    """The command lines of the live processes in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue
    return found


def _evaluations(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_cancelled_search_fails_its_flight_and_leaves_no_ray(
    ray_session, synthetic_space, tmp_path, signum
):
    run, log = tmp_path / "run", tmp_path / "evals.log"
    code = driver_script(run=run, log=log, workers=1)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while _evaluations(log) < 4:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the search subprocess made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signum)  # the driver only, as `kill` or the service's cancel does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    expected = "SIGTERM" if signum == signal.SIGTERM else ""
    assert proc.returncode == 130, err
    assert err.splitlines()[-1].strip() == f"interrupted {expected}".strip()
    deadline = time.monotonic() + 60  # Ray's processes exit as ray.shutdown stops them
    while _group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group(proc.pid) == []  # no Ray process orphaned
    assert not driver_lock_path(None, run_dir=run, study="k").exists()  # released

    storage = open_storage(None, run_dir=run)
    trials = optuna.load_study(study_name="k", storage=storage).trials
    assert TrialState.RUNNING not in [t.state for t in trials]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(
        t.user_attrs[FAIL_REASON_ATTR] == f"interrupted ({expected or 'KeyboardInterrupt'})"
        for t in failed
    )
    complete = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) >= 3

    # the study goes on: nothing completed is lost or recomputed
    setup = SearchSetup(
        n_trials=len(complete) + 2, out_dir=run, study_name="k", workers=2, progress=False
    )
    execute(space=synthetic_space, evaluator=SyntheticSpec(), setup=setup)
    after = optuna.load_study(study_name="k", storage=open_storage(None, run_dir=run)).trials
    assert {n: after[n].values for n in complete} == complete
    assert sum(t.state == TrialState.COMPLETE for t in after) == len(complete) + 2


class _InterruptedSampler(optuna.samplers.RandomSampler):
    """Random sampling, with Ctrl-C arriving while trial ``at`` is being sampled (the
    sampler is where the driver spends its own time)."""

    def __init__(self, at: int) -> None:
        super().__init__(seed=0)
        self.at = at

    def sample_independent(self, study, trial, param_name, param_distribution):
        if trial.number == self.at:
            raise KeyboardInterrupt
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_ctrl_c_between_ask_and_submit_leaves_no_running_trial(
    ray_session, synthetic_space, tmp_path
):
    storage = open_storage(None, run_dir=tmp_path)
    study = optuna.create_study(
        study_name="c",
        storage=storage,
        sampler=_InterruptedSampler(5),
        directions=["maximize", "minimize"],
    )
    pool = RayPool(SyntheticSpec(sleep_s=0.05), workers=2)
    try:
        with pytest.raises(KeyboardInterrupt):
            optimize(study, synthetic_space, pool, n_trials=20, objectives=("accuracy", "latency"))
    finally:
        pool.close()
    trials = optuna.load_study(study_name="c", storage=open_storage(None, run_dir=tmp_path)).trials
    by_number = {t.number: t for t in trials}
    assert by_number[5].state == TrialState.FAIL  # asked, never submitted
    assert by_number[5].user_attrs[FAIL_REASON_ATTR] == "interrupted (KeyboardInterrupt)"
    assert TrialState.RUNNING not in [t.state for t in trials]
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 1
