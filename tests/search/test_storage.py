"""Storage is chosen from a URL in one place; interrupted trials are recovered as FAIL."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.trial import TrialState

from lowbit.search.storage import (
    FAIL_REASON_ATTR,
    JOURNAL_FILE,
    open_storage,
    recover_interrupted,
    repair_journal,
)


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


def _complete(storage) -> list[int]:
    return [t.number for t in _study(storage).trials if t.state == TrialState.COMPLETE]


def test_a_journal_cut_anywhere_in_its_last_record_resumes_without_losing_trials(tmp_path):
    run = tmp_path / "run"
    study = _study(open_storage(None, run_dir=run))
    for i in range(3):
        study.tell(study.ask(), [i / 10, 1.0 + i])
    data = (run / JOURNAL_FILE).read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # the last record: trial 2's completion
    before = tmp_path / "before"
    before.mkdir()
    (before / JOURNAL_FILE).write_bytes(data[:last])
    told_before_last = _complete(open_storage(None, run_dir=before))
    assert told_before_last == [0, 1]
    for end in range(last + 1, len(data)):  # torn at every byte, or only the newline lost
        case = tmp_path / f"cut{end}"
        case.mkdir()
        (case / JOURNAL_FILE).write_bytes(data[:end])
        storage = open_storage(None, run_dir=case)
        # the file as it was is kept; the journal now ends with a complete record
        assert (case / f"{JOURNAL_FILE}.bak").read_bytes() == data[:end]
        assert (case / JOURNAL_FILE).read_bytes() in (data, data[:last])
        recover_interrupted(storage, "s")
        expected = [0, 1, 2] if end == len(data) - 1 else told_before_last
        assert _complete(storage) == expected, end
        resumed = _study(storage)
        resumed.tell(resumed.ask(), [0.9, 0.5])  # the study goes on, and reloads
        assert _complete(open_storage(None, run_dir=case)) == [*expected, 3]


def test_repair_says_what_it_did_and_leaves_sound_journals_alone(tmp_path, caplog):
    path = tmp_path / "x.journal"
    assert repair_journal(path) is None  # no file yet
    _study(open_storage(str(path), run_dir=tmp_path)).ask()
    sound = path.read_bytes()
    assert repair_journal(path) is None and path.read_bytes() == sound
    path.write_bytes(sound + b'{"op_code":')
    with caplog.at_level("WARNING", logger="lowbit.search.storage"):
        message = repair_journal(path)
    assert "dropped a torn last record (11 bytes" in message and "x.journal.bak" in message
    assert message in caplog.text
    assert path.read_bytes() == sound
