"""One driver per study (issue 15): a second driver of a study in the same storage is refused
with one line naming the holder, before it touches the study; a lock left by a killed driver
is taken over with a warning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from lowbit.cli import main
from lowbit.search.run import SearchSetup, execute
from lowbit.search.storage import (
    JOURNAL_FILE,
    StudyLockedError,
    check_driver_lock,
    driver_lock,
    driver_lock_path,
    open_storage,
)
from lowbit.search.testing import SyntheticSpec

#: a driver that holds the lock of study "k" in RUN, with one trial RUNNING (after a completed
#: one unless ``fresh``), until killed
HOLDER = textwrap.dedent(
    """
    import sys, time, optuna
    from lowbit.search.storage import driver_lock, open_storage
    with driver_lock({url!r}, run_dir={run!r}, study="k"):
        storage = open_storage({url!r}, run_dir={run!r})
        study = optuna.create_study(study_name="k", storage=storage,
                                    directions=["maximize", "minimize"])
        if not {fresh}:
            study.tell(study.ask(), [0.5, 1.0])
        study.ask()  # in flight
        print("held", flush=True)
        time.sleep(600)
    """
)


def _holder(run, url=None, *, fresh=False) -> subprocess.Popen:
    code = HOLDER.format(run=str(run), url=url, fresh=fresh)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _states(run, url=None) -> list[TrialState]:
    study = optuna.load_study(study_name="k", storage=open_storage(url, run_dir=run))
    return [t.state for t in study.trials]


@pytest.mark.parametrize("url", [None, "sqlite"])
def test_a_second_driver_is_refused_and_the_study_untouched(synthetic_space, tmp_path, url):
    run = tmp_path / "run"
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'studies.db'}"
    proc = _holder(run, url)
    try:
        journal = run / JOURNAL_FILE
        before = journal.read_bytes() if url is None else None
        setup = SearchSetup(n_trials=3, out_dir=run, study_name="k", storage=url, progress=False)
        with pytest.raises(StudyLockedError) as info:
            execute(space=synthetic_space, evaluator=SyntheticSpec(), setup=setup)
        message = str(info.value)
        assert f"pid {proc.pid} on host" in message and "'k'" in message
        assert str(driver_lock_path(url, run_dir=run, study="k")) in message
        assert "\n" not in message
        with pytest.raises(StudyLockedError):  # the cheap check before any work says the same
            check_driver_lock(url, run_dir=run, study="k")
        # the first driver's trial in flight was not failed under it
        assert _states(run, url) == [TrialState.COMPLETE, TrialState.RUNNING]
        if url is None:
            assert journal.read_bytes() == before
        # another study in the same storage is not held
        with driver_lock(url, run_dir=run, study="other"):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_the_cli_refuses_with_one_line_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        argv = [
            "search",
            "--model",
            "digits-mlp",
            "--hardware",
            "npu-bitfusion",
            "--study",
            "k",
            "--out",
            str(run),
            "--trials",
            "2",
            "--quiet",
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("lowbit: error: study 'k' is being searched by another driver")
        assert f"pid {proc.pid}" in err and err.count("\n") == 1
        assert sorted(p.name for p in run.iterdir()) == sorted(
            [JOURNAL_FILE, f"{JOURNAL_FILE}.k.driver.lock"]
        )  # nothing written: no space.json, no Ray started
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_drivers_lock_is_taken_over_with_a_warning(
    ray_session, synthetic_space, tmp_path, caplog
):
    run = tmp_path / "run"
    proc = _holder(run, fresh=True)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup: the lock file stays, naming it
    proc.wait()
    lock = driver_lock_path(None, run_dir=run, study="k")
    assert f'"pid": {proc.pid}' in lock.read_text()
    setup = SearchSetup(n_trials=3, out_dir=run, study_name="k", workers=2, progress=False)
    with caplog.at_level("WARNING"):
        execute(space=synthetic_space, evaluator=SyntheticSpec(), setup=setup)
    assert f"took over the driver lock {lock} from pid {proc.pid}" in caplog.text
    states = _states(run)
    assert states[0] == TrialState.FAIL  # the killed driver's trial, recovered as interrupted
    assert states.count(TrialState.COMPLETE) == 3 and TrialState.RUNNING not in states
    assert not lock.exists()  # released when the run ended
    with driver_lock(None, run_dir=run, study="k"):  # and free again
        assert lock.exists()
