"""Where Optuna studies live: chosen from a URL in one function.

* ``None`` (the default): an append-only journal file ``study.journal`` in the run directory
  (``optuna.storages.JournalStorage`` over ``optuna.storages.journal.JournalFileBackend``).
  Every ask/tell is one appended line, so a driver killed with SIGKILL loses nothing that
  was told; the study is rebuilt by replaying the file.
* a database URL (``sqlite:///path.db``, ``postgresql://...``, ``mysql://...``): Optuna's
  ``RDBStorage`` (SQLAlchemy).
* ``journal:///path/to/file`` or a path ending in ``.journal``/``.log``: a journal file there.

Also here: :func:`recover_interrupted`, which marks trials left RUNNING by a killed driver as
FAIL with the reason ``"interrupted"`` so the budget (which counts completed trials) is right.
"""

from __future__ import annotations

from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

__all__ = ["JOURNAL_FILE", "FAIL_REASON_ATTR", "open_storage", "recover_interrupted"]

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
    run_dir.mkdir(parents=True, exist_ok=True)
    if url is None or url == "":
        return _journal(run_dir / JOURNAL_FILE)
    if url.startswith("journal://"):
        path = url[len("journal://") :]
        if not path:
            raise ValueError(f"storage {url!r}: give a file, e.g. journal:///tmp/run.journal")
        return _journal(Path(path))
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme in _DB_SCHEMES:
        return RDBStorage(url)
    if not scheme and url.endswith((".journal", ".log")):
        return _journal(Path(url))
    valid = ", ".join(f"{s}://..." for s in _DB_SCHEMES[:3])
    raise ValueError(
        f"storage {url!r}: not a journal file or database URL "
        f"(use a path ending in .journal, journal:///PATH, or {valid})"
    )


def _journal(path: Path) -> JournalStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    # the open() lock (O_EXCL create) works on local disks and NFSv3+, and needs no symlinks
    lock = JournalFileOpenLock(str(path))
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


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
