"""Where Optuna studies live: chosen from a URL in one function.

* ``None`` (the default): an append-only journal file ``study.journal`` in the run directory
  (``optuna.storages.JournalStorage`` over ``optuna.storages.journal.JournalFileBackend``).
  Every ask/tell is one appended line, so a driver killed with SIGKILL loses nothing that
  was told; the study is rebuilt by replaying the file.
* a database URL (``sqlite:///path.db``, ``postgresql://...``, ``mysql://...``): Optuna's
  ``RDBStorage`` (SQLAlchemy).
* ``journal:///path/to/file`` or a path ending in ``.journal``/``.log``: a journal file there.

Also here: :func:`recover_interrupted`, which marks trials left RUNNING by a killed driver as
FAIL with the reason ``"interrupted"`` so the budget (which counts completed trials) is right,
and :func:`repair_journal`, run whenever a journal is opened: a driver killed in the middle of
an append leaves a torn last line, which Optuna would append the next record to (the study
then fails to load for good). The repair keeps a copy of the file, then completes a last
record that only lacks its newline or drops a torn one; a trial whose completion record was
torn was never told, and is recovered as interrupted.

The journal's own write lock (Optuna's ``NAME.lock`` file) records its owner
(:mod:`lowbit.search.journal_lock`): a lock left by a writer killed mid-append is removed,
with a warning, as soon as the journal is opened (or the lock is next wanted), instead of
stalling every writer for Optuna's 30 s grace period.

One driver per study: :func:`driver_lock` (held by :func:`lowbit.search.run.execute` for the
whole run) is an exclusive ``flock`` on a small file beside the storage file (in the run
directory for a database server), ``NAME.STUDY.driver.lock``, holding the owner's pid, host
and start time. A second driver of the same study in the same storage is refused with
:class:`StudyLockedError` naming the holder, before it recovers (and so fails) the first
one's running trials. The kernel drops the lock when its process dies, however it dies, so a
lock left by a killed driver never blocks: the next driver takes it over with a warning
naming the dead owner. The lock is advisory and local: drivers on two hosts sharing a
database server through different run directories are not kept apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.fileio import check_output_dir, check_output_file

from .journal_lock import OwnedJournalLock, break_stale_lock

__all__ = [
    "JOURNAL_FILE",
    "FAIL_REASON_ATTR",
    "StudyLockedError",
    "check_driver_lock",
    "check_storage",
    "driver_lock",
    "driver_lock_path",
    "fail_running",
    "open_storage",
    "recover_interrupted",
    "repair_journal",
]

log = logging.getLogger(__name__)

#: journal file name inside the run directory when no storage URL is given
JOURNAL_FILE = "study.journal"
#: trial user attribute holding why a trial failed
FAIL_REASON_ATTR = "fail_reason"

_DB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")


def open_storage(url: str | None, *, run_dir: str | Path) -> BaseStorage:
    """The Optuna storage for ``url`` (see the module docstring); creates ``run_dir``.

    Raises:
        ValueError: for a URL whose scheme is not a journal file or a database.
    """
    run_dir = Path(run_dir)
    check_storage(url, run_dir=run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    kind, path = _parse_url(url, run_dir)
    if kind == "journal":
        return _journal(path)
    try:
        return RDBStorage(url)
    except Exception as exc:  # SQLAlchemy's errors: a driver, a server or a file it lacks
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ValueError(f"storage {url!r}: cannot open the database: {reason}") from None


def _parse_url(url: str | None, run_dir: Path) -> tuple[str, Path | None]:
    """``("journal", file)`` or ``("db", sqlite file or None)`` for a storage URL."""
    if url is None or url == "":
        return "journal", run_dir / JOURNAL_FILE
    if url.startswith("journal://"):
        path = url[len("journal://") :]
        if not path:
            raise ValueError(f"storage {url!r}: give a file, e.g. journal:///tmp/run.journal")
        return "journal", Path(path)
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        return "db", Path(path) if path and path != ":memory:" else None
    if scheme in _DB_SCHEMES:
        return "db", None
    if not scheme and url.endswith((".journal", ".log")):
        return "journal", Path(url)
    valid = ", ".join(f"{s}://..." for s in _DB_SCHEMES[:3])
    raise ValueError(
        f"storage {url!r}: not a journal file or database URL "
        f"(use a path ending in .journal, journal:///PATH, or {valid})"
    )


def check_storage(url: str | None, *, run_dir: str | Path) -> None:
    """Raise before any work if the storage ``url`` (see :func:`open_storage`) or the run
    directory cannot be written: a bad URL (ValueError), a journal or SQLite file that is a
    directory or not writable, a SQLite file whose directory does not exist
    (:class:`~lowbit.hwsim.errors.OutputPathError`)."""
    check_output_dir(run_dir, flag="run directory")
    kind, path = _parse_url(url, Path(run_dir))
    if path is None:
        return
    check_output_file(path, flag="storage file")
    if kind == "db" and not path.absolute().parent.is_dir():
        raise ValueError(
            f"storage {url!r}: directory {path.absolute().parent} does not exist "
            "(SQLite creates the file, not its directory)"
        )


def _journal(path: Path) -> JournalStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Optuna's open() lock file (works on local disks and NFSv3+), with its owner in it: a
    # lock left by a writer killed mid-append is removed now, not after a 30 s grace period
    lock = OwnedJournalLock(path)
    break_stale_lock(path)
    repair_journal(path, lock=lock)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


def _tail_start(handle, size: int) -> int:
    """The offset just after the last newline of the open binary file (0: none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        handle.seek(start)
        newline = handle.read(end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _is_record(data: bytes) -> bool:
    try:
        record = json.loads(data)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


def _backup_path(path: Path) -> Path:
    candidate, n = path.with_name(f"{path.name}.bak"), 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}.bak{n}"), n + 1
    return candidate


def repair_journal(path: str | Path, *, lock: JournalFileOpenLock | None = None) -> str | None:
    """Make the journal file ``path`` end with a complete record and a newline.

    Under the journal's lock (so no append is in flight), a last line without its newline
    is completed when it is a whole record and cut off when it is torn; the file as it was
    is first copied beside it (``NAME.bak``, ``NAME.bak1``, ...). Returns the message also
    logged as a warning, or None when nothing needed repair (or there is no file).
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    lock = lock or OwnedJournalLock(path)
    lock.acquire()
    try:
        with path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            cut = _tail_start(handle, size)
            if cut == size:
                return None
            handle.seek(cut)
            tail = handle.read()
            backup = _backup_path(path)
            shutil.copy2(path, backup)
            if _is_record(tail):
                handle.seek(size)
                handle.write(b"\n")
                what = "its last record lacked the final newline (added)"
            else:
                handle.truncate(cut)
                what = f"dropped a torn last record ({size - cut} bytes, a write cut short)"
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        lock.release()
    message = f"study journal {path}: {what}; the file as it was is kept as {backup.name}"
    log.warning(message)
    return message


def recover_interrupted(storage: BaseStorage, study_name: str) -> list[int]:
    """Fail every RUNNING trial of the study ``study_name`` with reason ``"interrupted"``.

    Call it before the driver opens the study (so Optuna's per-study caches start from the
    fixed state), under the study's :func:`driver_lock`: no other driver evaluates the
    study's trials, so a RUNNING trial belongs to a driver that died. Returns their numbers
    (none for a new study).
    """
    return fail_running(storage, study_name, reason="interrupted")


def fail_running(
    storage: BaseStorage, study_name: str, *, reason: str, keep: Collection[int] = ()
) -> list[int]:
    """Fail the RUNNING trials of study ``study_name`` but those numbered in ``keep``, each
    with ``reason`` as its ``fail_reason``; their numbers."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    numbers = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in keep:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        numbers.append(trial.number)
    return numbers


class StudyLockedError(LowbitError):
    """Another live driver is searching the same study in the same storage."""


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def driver_lock_path(url: str | None, *, run_dir: str | Path, study: str) -> Path:
    """The lock file of study ``study`` in storage ``url`` (module docstring)."""
    run_dir = Path(run_dir)
    _, path = _parse_url(url, run_dir)
    tag = study if _PLAIN_NAME.fullmatch(study) else hashlib.sha256(study.encode()).hexdigest()
    if path is None:  # a database server (or SQLite in memory): the run directory
        return run_dir / f".{tag[:100]}.driver.lock"
    return path.with_name(f"{path.name}.{tag[:100]}.driver.lock")


def _owner(fd: int) -> dict:
    """The owner record in the open lock file (empty: released cleanly, or not written)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(owner: dict) -> str:
    started = owner.get("started")
    when = (
        time.strftime(", started %Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, (int, float))
        else ""
    )
    return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}{when}"


def _held(path: Path, fd: int, study: str) -> StudyLockedError:
    owner = _owner(fd)
    who = f"another driver ({_describe(owner)})" if owner else "another driver (starting up)"
    return StudyLockedError(
        f"study {study!r} is being searched by {who}, which holds {path}; wait for it to "
        "finish or stop it (its finished trials are kept), or use another study name"
    )


def check_driver_lock(url: str | None, *, run_dir: str | Path, study: str) -> None:
    """Raise :class:`StudyLockedError` if a live driver holds the lock of ``study`` (a cheap
    check before long work; creates nothing)."""
    path = driver_lock_path(url, run_dir=run_dir, study=study)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or none readable): nothing holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _held(path, fd, study) from None
    finally:
        os.close(fd)  # also releases the shared lock


@contextlib.contextmanager
def driver_lock(url: str | None, *, run_dir: str | Path, study: str) -> Iterator[Path]:
    """Hold the driver lock of ``study`` in storage ``url`` for the ``with`` block (module
    docstring); yields the lock file's path.

    Raises:
        StudyLockedError: a live driver holds it.
        ValueError / OutputPathError: as :func:`check_storage`.
    """
    check_storage(url, run_dir=run_dir)
    path = driver_lock_path(url, run_dir=run_dir, study=study)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _held(path, fd, study)
            os.close(fd)
            raise error from None
        try:  # the holder before us may have removed the file while we waited to lock it
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        previous = _owner(fd)
        if previous:
            log.warning(
                "study %s: took over the driver lock %s from %s, which ended without "
                "releasing it (killed); its running trials are recovered as interrupted",
                study,
                path,
                _describe(previous),
            )
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # still locked: a driver waiting on this inode retries
        os.close(fd)
