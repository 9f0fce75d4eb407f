"""Where the files of the file-backed datasets are: ``$LOWBIT_DATA`` first, then Debian.

A dataset's files are found when *all* of them are in one directory. The directories tried,
in order:

1. under ``$LOWBIT_DATA`` (set directly or by the CLI's ``--data-dir``): each of the
   dataset's subdirectories (``fashion-mnist``, torchvision's ``FashionMNIST/raw``, ...),
   then the directory itself;
2. the Debian package's directory, for a dataset that has one
   (``/usr/share/datasets/fashion-mnist`` from ``dataset-fashion-mnist``).

A directory holding some of the files but not all of them is an error (a partial copy is
never silently passed over for another one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ._base import DatasetError

__all__ = ["DATA_ENV", "FileLayout", "Found", "data_directory", "locate"]

#: the environment variable naming the user's data directory (``--data-dir`` sets it)
DATA_ENV = "LOWBIT_DATA"


@dataclass(frozen=True, slots=True)
class FileLayout:
    """How to find one dataset's files.

    Attributes:
        dataset: registry name (for messages).
        files: the file names that must all be present in one directory.
        gz: each file may also be stored gzip-compressed as ``name + ".gz"``.
        subdirs: relative directories tried under the data directory before the data
            directory itself.
        debian_dir: where a Debian package installs the files, if one exists.
        debian_package: that package's name.
        fix: how to provide the files, for the message when they are missing.
    """

    dataset: str
    files: tuple[str, ...]
    gz: bool
    subdirs: tuple[str, ...]
    debian_dir: Path | None = None
    debian_package: str | None = None
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Found:
    """A directory holding all of a dataset's files.

    Attributes:
        directory: the directory as found (not resolved).
        paths: the files, resolved, in :attr:`FileLayout.files` order.
        how: what pointed there (``$LOWBIT_DATA`` or the Debian package).
    """

    directory: Path
    paths: tuple[Path, ...]
    how: str

    @property
    def source(self) -> str:
        """``"<directory> (<how>)"``, for listings."""
        return f"{self.directory} ({self.how})"

    def key(self) -> tuple[tuple[str, int, int], ...]:
        """Path, size and modification time of every file: a cache key that changes when a
        file is replaced."""
        out = []
        for path in self.paths:
            stat = path.stat()
            out.append((str(path), stat.st_size, stat.st_mtime_ns))
        return tuple(out)


def data_directory() -> Path | None:
    """The directory in ``$LOWBIT_DATA``, or ``None`` when the variable is unset or empty.

    Raises:
        DatasetError: the variable names something that is not a directory.
    """
    raw = os.environ.get(DATA_ENV, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"{DATA_ENV}={raw}: not a directory; point {DATA_ENV} (or --data-dir) at the "
            "directory holding the dataset files, or unset it"
        )
    return path


def _file_in(directory: Path, name: str, *, gz: bool) -> Path | None:
    plain = directory / name
    if plain.is_file():
        return plain
    packed = directory / f"{name}.gz"
    if gz and packed.is_file():
        return packed
    return None


def _look_in(directory: Path, layout: FileLayout, how: str) -> Found | None:
    """All of the layout's files in ``directory``; ``None`` when none of them is there."""
    if not directory.is_dir():
        return None
    paths = {name: _file_in(directory, name, gz=layout.gz) for name in layout.files}
    missing = [name for name, path in paths.items() if path is None]
    if not missing:
        found = tuple(paths[name].resolve() for name in layout.files)  # type: ignore[union-attr]
        return Found(directory, found, how)
    if len(missing) == len(layout.files):
        return None
    suffix = "[.gz]" if layout.gz else ""
    raise DatasetError(
        f"{directory}: holds only part of {layout.dataset} "
        f"(missing {', '.join(name + suffix for name in missing)}); copy the missing files "
        "there or remove the partial copy"
    )


def locate(layout: FileLayout) -> Found:
    """The first directory holding all of ``layout``'s files (order: module docstring).

    Raises:
        DatasetError: ``$LOWBIT_DATA`` is not a directory; a directory holds part of the
            files; or no directory holds them (one line: what was looked for, where, and
            the fix).
    """
    tried: list[str] = []
    root = data_directory()
    if root is not None:
        for directory in (*(root / sub for sub in layout.subdirs), root):
            found = _look_in(directory, layout, f"${DATA_ENV}")
            if found is not None:
                return found
            tried.append(str(directory))
        where = f"${DATA_ENV} ({', '.join(tried)})"
    else:
        where = f"${DATA_ENV} (not set)"
    if layout.debian_dir is not None:
        package = f"Debian package {layout.debian_package}"
        found = _look_in(layout.debian_dir, layout, package)
        if found is not None:
            return found
        where += f" or {layout.debian_dir} ({package}, not installed)"
    gz = " (each plain or .gz)" if layout.gz else ""
    raise DatasetError(
        f"{layout.dataset}: dataset files not found: looked for {', '.join(layout.files)}{gz} "
        f"in {where}; fix: {layout.fix}"
    )
