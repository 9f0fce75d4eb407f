"""The journal's write lock has an owner (issue 15): a lock left by a writer killed mid-append
is removed, with one warning, when the journal is next opened -- the resume never waits for
it -- while a lock of a live writer (another study sharing the journal), one without an owner
(plain Optuna) or one of another host is kept."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types

import optuna
import pytest
from optuna.storages.journal import JournalFileOpenLock
from optuna.trial import TrialState

from lowbit.search import journal_lock
from lowbit.search.journal_lock import OwnedJournalLock, break_stale_lock, lock_owner
from lowbit.search.storage import JOURNAL_FILE, open_storage

#: a journal writer that takes the lock, starts an append (argv[2]: torn bytes) and holds
#: the lock until its stdin closes (or it is killed)
WRITER = textwrap.dedent(
    """
    import sys
    from lowbit.search.journal_lock import OwnedJournalLock
    lock = OwnedJournalLock(sys.argv[1])
    lock.acquire()
    with open(sys.argv[1], "ab") as handle:
        handle.write(sys.argv[2].encode())
        handle.flush()
    print("held", flush=True)
    sys.stdin.read()
    lock.release()
    """
)


def _writer(journal, torn: str = "") -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(journal), torn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _no_waiting(monkeypatch) -> None:
    """Make any wait for the journal lock fail the test (the lock's only sleep)."""

    def sleep(seconds):
        raise AssertionError(f"waited {seconds} s for the journal lock")

    monkeypatch.setattr(
        journal_lock, "time", types.SimpleNamespace(sleep=sleep, monotonic=time.monotonic)
    )


def _study_with_trials(run, n: int) -> dict[int, list[float]]:
    study = optuna.create_study(
        study_name="k", storage=open_storage(None, run_dir=run), directions=["maximize", "minimize"]
    )
    for i in range(n):
        study.tell(study.ask(), [0.5 + i / 100, 1.0 + i])
    return {t.number: t.values for t in study.trials}


def test_a_killed_writers_lock_is_removed_before_the_resume(tmp_path, monkeypatch, caplog):
    run = tmp_path / "run"
    done = _study_with_trials(run, 3)
    journal = run / JOURNAL_FILE
    lock_path = journal.with_name(JOURNAL_FILE + ".lock")
    proc = _writer(journal, torn='{"op_code": 4, "worker_id": "x", "stu')
    owner = lock_owner(lock_path)
    assert owner["pid"] == proc.pid and owner["host"] == socket.gethostname()
    proc.send_signal(signal.SIGKILL)  # mid-append, holding the lock
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert lock_path.exists()  # as a killed writer leaves it

    _no_waiting(monkeypatch)
    with caplog.at_level(logging.WARNING):
        storage = open_storage(None, run_dir=run)
    assert not lock_path.exists()  # removed before the storage was used
    removed = [r.getMessage() for r in caplog.records if "removed the lock" in r.getMessage()]
    assert len(removed) == 1 and f"pid {proc.pid}" in removed[0] and "\n" not in removed[0]

    study = optuna.load_study(study_name="k", storage=storage)  # the resume
    study.tell(study.ask(), [0.9, 0.5])
    trials = optuna.load_study(study_name="k", storage=open_storage(None, run_dir=run)).trials
    assert {t.number: t.values for t in trials[:3]} == done  # nothing completed lost
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert not lock_path.exists()


def test_a_live_writers_lock_is_waited_for_not_broken(tmp_path):
    """Two studies share a journal: the other study's writer holds the lock; ours waits
    until it is released and never removes it."""
    journal = tmp_path / "shared.journal"
    journal.touch()
    proc = _writer(journal)
    lock_path = journal.with_name("shared.journal.lock")
    try:
        assert break_stale_lock(journal) is None
        assert lock_owner(lock_path)["pid"] == proc.pid
        ours = OwnedJournalLock(journal)
        taken = threading.Event()
        thread = threading.Thread(target=lambda: (ours.acquire(), taken.set()), daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while ours.waits < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ours.waits >= 3 and not taken.is_set()  # waiting, the live lock still there
        assert lock_owner(lock_path)["pid"] == proc.pid
    finally:
        proc.stdin.close()  # the writer releases its lock
        proc.wait()
    thread.join(timeout=60)
    assert taken.is_set()
    assert lock_owner(lock_path)["pid"] == os.getpid()  # ours now, with its owner
    ours.release()
    assert not lock_path.exists()


@pytest.mark.parametrize(
    "content",
    [
        b"",  # plain Optuna's lock (JournalFileOpenLock): no owner
        b"\xff\xfe garbage",
        json.dumps({"pid": 2**22 + 1, "host": "another-host", "start": 1}).encode(),
        json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(),  # alive
    ],
    ids=["optuna", "garbage", "other-host", "alive"],
)
def test_a_lock_whose_owner_may_live_is_kept(tmp_path, content):
    journal = tmp_path / "x.journal"
    journal.touch()
    lock_path = tmp_path / "x.journal.lock"
    lock_path.write_bytes(content)
    assert break_stale_lock(journal) is None
    assert lock_path.read_bytes() == content


def test_a_killed_writer_not_yet_reaped_is_dead(tmp_path):
    """Its parent has not waited for it yet (a zombie): its lock is stale all the same."""
    journal = tmp_path / "x.journal"
    journal.touch()
    proc = _writer(journal)
    proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 60
    while journal_lock._proc_stat(proc.pid)[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert journal_lock._proc_stat(proc.pid)[0] == "Z"
    assert f"pid {proc.pid}" in break_stale_lock(journal)
    assert not (tmp_path / "x.journal.lock").exists()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


def test_a_reused_pid_does_not_keep_a_lock(tmp_path):
    """The owner's pid now names another process (started at another time): stale."""
    journal = tmp_path / "x.journal"
    journal.touch()
    lock_path = tmp_path / "x.journal.lock"
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "start": 1}
    lock_path.write_text(json.dumps(owner))
    assert "removed the lock x.journal.lock" in break_stale_lock(journal)
    assert not lock_path.exists()


def test_plain_optuna_and_the_owned_lock_exclude_each_other(tmp_path):
    journal = tmp_path / "x.journal"
    journal.touch()
    plain = JournalFileOpenLock(str(journal))
    plain.acquire()
    ours = OwnedJournalLock(journal)
    assert not ours._create()  # held by plain Optuna
    plain.release()
    assert ours._create()
    assert lock_owner(tmp_path / "x.journal.lock")["pid"] == os.getpid()
    ours.release()
    assert [p.name for p in tmp_path.iterdir()] == ["x.journal"]  # no temp files left
