"""Errors a user can cause and fix. The CLI prints them as one line (exit code 2)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["InputFileError", "LowbitError", "OutputPathError", "ProfileError", "WorkloadError"]


class LowbitError(Exception):
    """Base of every error caused by user input (a file, a flag, a request body)."""


class ProfileError(LowbitError):
    """A hardware profile failed to parse or validate.

    ``problems`` lists every problem found as ``"key.path: message"``; the message names the
    file, so one error tells the user everything to fix.
    """

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class WorkloadError(LowbitError):
    """A workload (built-in name, topology CSV, ONNX file) could not be read."""


class InputFileError(LowbitError):
    """An input file that cannot be read as what it should be (see :mod:`lowbit.hwsim.fileio`).

    ``source`` is the file, ``problem`` what is wrong with it; the message is both.
    """

    def __init__(self, source: str | Path, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class OutputPathError(LowbitError):
    """An output path (``--out``, ``--storage``, ``--state-dir``) that cannot be written."""
