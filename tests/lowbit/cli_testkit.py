"""Helpers shared by the CLI tests."""

from __future__ import annotations

from lowbit.cli import main


def error_of(capsys, *argv: str) -> str:
    """Run a command that must fail with a user error; return its one-line message."""
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lowbit: error: "), captured.err
    return lines[0]
