"""Resume after the driver is killed with SIGKILL: completed trials are kept and never
recomputed; trials that were running are failed as "interrupted"; the budget counts
completed trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lowbit.search.run import SearchSetup, execute
from lowbit.search.storage import FAIL_REASON_ATTR, open_storage
from lowbit.search.testing import SyntheticSpec

HERE = Path(__file__).parent

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from search_testkit import SYNTHETIC_LAYERS, bitfusion_profile
    from lowbit.search.run import SearchSetup, execute
    from lowbit.search.space import build_space
    from lowbit.search.testing import SyntheticSpec

    space = build_space(SYNTHETIC_LAYERS, bitfusion_profile(), model="synthetic-cnn")
    setup = SearchSetup(n_trials=200, out_dir={run!r}, study_name="k", workers=2,
                        ray_address={address!r}, progress=False)
    execute(space=space, evaluator=SyntheticSpec(sleep_s=0.2, log_path={log!r}), setup=setup)
    """
)


def _evaluated(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(line.split()[0]) for line in log.read_text().splitlines() if line.endswith("val")]


def _study(run: Path) -> optuna.Study:
    return optuna.load_study(study_name="k", storage=open_storage(None, run_dir=run))


@pytest.mark.slow
def test_resume_after_sigkill(ray_session, synthetic_space, tmp_path):
    run, log = tmp_path / "run", tmp_path / "evals.log"
    address = ray_session.get_runtime_context().gcs_address
    code = SCRIPT.format(here=str(HERE), run=str(run), address=address, log=str(log))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_evaluated(log)) < 8:
            assert proc.poll() is None, "the search subprocess ended before it was killed"
            assert time.monotonic() < deadline, "the search subprocess made no progress"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its process group, no cleanup
        proc.wait()
    before = {t.number: t for t in _study(run).trials}
    complete = {n: t for n, t in before.items() if t.state == TrialState.COMPLETE}
    running = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    assert len(complete) >= 5 and running  # killed mid-run, with trials in flight
    evaluated_before = len(_evaluated(log))

    setup = SearchSetup(n_trials=10, out_dir=run, study_name="k", workers=2, progress=False)
    execute(space=synthetic_space, evaluator=SyntheticSpec(log_path=str(log)), setup=setup)

    after = {t.number: t for t in _study(run).trials}
    for n, t in complete.items():  # nothing lost or changed
        assert after[n].state == TrialState.COMPLETE
        assert after[n].values == t.values and after[n].params == t.params
    for n in running:
        assert after[n].state == TrialState.FAIL
        assert after[n].user_attrs[FAIL_REASON_ATTR] == "interrupted"
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == 10
    new = _evaluated(log)[evaluated_before:]
    assert len(new) == 10 - len(complete) and not set(new) & set(before)  # none recomputed
