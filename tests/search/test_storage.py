"""Storage is chosen from a URL in one place; interrupted trials are recovered as FAIL."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.trial import TrialState

from lowbit.search.storage import FAIL_REASON_ATTR, JOURNAL_FILE, open_storage, recover_interrupted


def _study(storage, name="s"):
    return optuna.create_study(
        study_name=name, storage=storage, directions=["maximize", "minimize"], load_if_exists=True
    )


def test_default_is_a_journal_in_the_run_dir(tmp_path):
    storage = open_storage(None, run_dir=tmp_path / "run")
    assert isinstance(storage, JournalStorage)
    study = _study(storage)
    study.tell(study.ask(), [0.5, 1.0])
    assert (tmp_path / "run" / JOURNAL_FILE).stat().st_size > 0
    # a second storage over the same file sees the told trial (the file is the state)
    again = _study(open_storage(None, run_dir=tmp_path / "run"))
    assert [t.values for t in again.trials] == [[0.5, 1.0]]


@pytest.mark.parametrize("form", ["journal://{}", "{}"])
def test_journal_file_urls(tmp_path, form):
    path = tmp_path / "elsewhere" / "x.journal"
    storage = open_storage(form.format(path), run_dir=tmp_path / "run")
    assert isinstance(storage, JournalStorage)
    _study(storage).ask()
    assert path.exists()


def test_sqlite_url_is_rdb_and_persists(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    storage = open_storage(url, run_dir=tmp_path / "run")
    assert isinstance(storage, RDBStorage)
    study = _study(storage, "db")
    study.tell(study.ask(), [0.9, 2.0])
    again = _study(open_storage(url, run_dir=tmp_path / "run"), "db")
    assert [t.values for t in again.trials] == [[0.9, 2.0]]


def test_bad_url_names_the_valid_forms(tmp_path):
    with pytest.raises(ValueError, match="sqlite://"):
        open_storage("ftp://host/x", run_dir=tmp_path)
    with pytest.raises(ValueError, match="journal"):
        open_storage("results.txt", run_dir=tmp_path)


@pytest.mark.parametrize("url", [None, "sqlite"])
def test_recover_interrupted_fails_running_trials(tmp_path, url):
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'r.db'}"
    storage = open_storage(url, run_dir=tmp_path)
    assert recover_interrupted(storage, "missing") == []  # no such study yet: nothing to do
    study = _study(storage)
    study.tell(study.ask(), [0.1, 0.2])
    study.ask()  # left RUNNING, as by a killed driver
    assert recover_interrupted(storage, "s") == [1]
    trials = _study(open_storage(url, run_dir=tmp_path)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs[FAIL_REASON_ATTR] == "interrupted"
