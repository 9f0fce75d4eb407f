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
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from lowbit.hwsim.fileio import check_output_dir, check_output_file

__all__ = [
    "JOURNAL_FILE",
    "FAIL_REASON_ATTR",
    "check_storage",
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
    # the open() lock (O_EXCL create) works on local disks and NFSv3+, and needs no symlinks
    lock = JournalFileOpenLock(str(path))
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
    lock = lock or JournalFileOpenLock(str(path))
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
    fixed state): nothing else evaluates the study's trials (one driver per study), so a
    RUNNING trial belongs to a driver that died. Returns their numbers (none for a new study).
    """
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    numbers = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, "interrupted")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        numbers.append(trial.number)
    return numbers
