"""``--data-dir``: on every command that loads data, sets ``$LOWBIT_DATA`` before any work."""

from __future__ import annotations

import os

import pytest
from cli_testkit import error_of

from lowbit.cli import build_parser, main
from lowbit.commands import _data_dir
from lowbit.models import data

DATA_COMMANDS = ("train", "evaluate", "search", "models", "export", "validate", "demo")


@pytest.fixture(autouse=True)
def no_user_data(monkeypatch):
    """Start without ``$LOWBIT_DATA``; whatever a command sets is undone after the test."""
    monkeypatch.delenv("LOWBIT_DATA", raising=False)


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_data_commands_accept_data_dir(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "--data-dir DIR" in capsys.readouterr().out


def test_data_dir_is_set_before_any_work(tmp_path, capsys):
    # the unknown model fails after --data-dir took effect: nothing ran before it
    line = error_of(
        capsys,
        "evaluate",
        "--data-dir",
        str(tmp_path),
        "--model",
        "no-such-model",
        "--bits",
        "W8A8",
    )
    assert "no-such-model" in line
    assert os.environ["LOWBIT_DATA"] == str(tmp_path.resolve())
    assert _data_dir.DATA_ENV == data.DATA_ENV  # the CLI sets what the data module reads


def test_relative_data_dir_is_made_absolute(tmp_path, monkeypatch, capsys):
    (tmp_path / "datasets").mkdir()
    monkeypatch.chdir(tmp_path)
    error_of(capsys, "train", "--data-dir", "datasets", "--model", "no-such-model")
    assert os.environ["LOWBIT_DATA"] == str((tmp_path / "datasets").resolve())


def test_missing_data_dir_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    line = error_of(capsys, "train", "--data-dir", str(missing), "--model", "digits-cnn")
    assert line == (
        f"lowbit: error: --data-dir {missing}: no such directory; pass the directory holding "
        "the dataset files"
    )
    assert "LOWBIT_DATA" not in os.environ
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "not a directory" in error_of(
        capsys, "search", "--data-dir", str(a_file), "--model", "digits-cnn", "--hardware", "x"
    )


def test_without_data_dir_the_environment_is_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOWBIT_DATA", str(tmp_path))
    assert main(["train", "--model", "no-such-model"]) == 2
    capsys.readouterr()
    assert os.environ["LOWBIT_DATA"] == str(tmp_path)
