"""The shared ``--data-dir DIR`` option of the commands that load datasets.

``--data-dir`` sets ``$LOWBIT_DATA``, where :mod:`lowbit.models.data` looks for the real
datasets' files before the Debian package's directory. It is an environment variable, not
an argument passed down, so every process this one starts later (the Ray workers of a
search) sees the same directory: :func:`apply_data_dir` must run before any work.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lowbit.hwsim.errors import LowbitError

__all__ = ["DATA_ENV", "add_data_dir_argument", "apply_data_dir"]

#: the variable :mod:`lowbit.models.data` reads (spelled here too: importing that module
#: pulls in torch, and building the parser must stay instant)
DATA_ENV = "LOWBIT_DATA"


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir DIR`` (``args.data_dir``) to ``parser``."""
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"directory with dataset files (Fashion-MNIST/MNIST IDX files, cifar-10-batches-py/)"
        f"; sets ${DATA_ENV} (default: ${DATA_ENV}, then Debian's /usr/share/datasets)",
    )


def apply_data_dir(args: argparse.Namespace) -> None:
    """Set ``$LOWBIT_DATA`` to ``--data-dir`` (made absolute) when it is given.

    Raises:
        LowbitError: the directory does not exist or is not a directory.
    """
    directory = getattr(args, "data_dir", None)
    if directory is None:
        return
    path = Path(directory).expanduser()
    if not path.is_dir():
        problem = "not a directory" if path.exists() else "no such directory"
        raise LowbitError(
            f"--data-dir {directory}: {problem}; pass the directory holding the dataset files"
        )
    os.environ[DATA_ENV] = str(path.resolve())
