"""The write lock of a study journal: Optuna's ``NAME.lock`` file, with its owner written in it.

Optuna's :class:`~optuna.storages.journal.JournalFileOpenLock` creates an empty
``NAME.lock`` for every append and removes it after. A writer killed mid-append (SIGKILL,
OOM) leaves the file behind, and the next writer waits for its grace period (30 s without
a change) before breaking it -- the stall a resume after a kill used to show.

:class:`OwnedJournalLock` takes the same file (so it excludes, and is excluded by, plain
Optuna processes on the same journal) but creates it with its owner in it, atomically: a
temporary file holding ``{"pid", "host", "start"}`` (``start``: the kernel's start time of
the process, so a reused pid is not taken for the owner) is hard-linked to ``NAME.lock``.
A lock file whose owner is a process of this host that is gone is stale, whoever finds it:
:func:`break_stale_lock` removes it at once, under an ``flock`` on the journal file (so two
processes finding the same stale lock cannot remove a fresh one taken in between), and
logs one warning naming the dead owner. Studies sharing a journal are safe: a lock is only
broken when its own writer is dead, never because of who holds a study's driver lock.

A lock file without a readable owner (written by plain Optuna, or on a file system without
hard links) or owned by a process of another host (a journal on NFS) is left to Optuna's
rule: broken after ``grace_period`` seconds without a change.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from optuna.storages.journal import JournalFileOpenLock

__all__ = ["OwnedJournalLock", "break_stale_lock", "lock_owner", "stale_owner"]

log = logging.getLogger(__name__)

#: Optuna's suffix of a journal's lock file
LOCK_SUFFIX = ".lock"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of process ``pid``; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _start_time(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _owner_record() -> bytes:
    pid = os.getpid()
    record = {"pid": pid, "host": socket.gethostname(), "start": _start_time(pid)}
    return json.dumps(record).encode()


def _parse_owner(data: bytes) -> dict | None:
    try:
        owner = json.loads(data or b"null")
    except ValueError:
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int) or owner["pid"] <= 0:
        return None
    return owner


def lock_owner(lock_path: str | Path) -> dict | None:
    """The owner written in the lock file ``lock_path``; None if none is readable."""
    try:
        with open(lock_path, "rb") as handle:
            return _parse_owner(handle.read(4096))
    except OSError:
        return None


def _dead(owner: dict | None) -> bool:
    """Whether ``owner`` is a process of this host that is gone (its pid is free, a zombie,
    or taken by a process started later); False if it is alive or cannot be told."""
    if owner is None or owner.get("host") != socket.gethostname():
        return False
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    stat = _proc_stat(pid)
    if stat is None:
        return False  # no /proc: the pid is taken, so alive
    state, started = stat
    if state in ("Z", "X"):
        return True  # killed, not yet reaped by its parent
    start = owner.get("start")
    return isinstance(start, int) and started != start  # the pid was reused


def stale_owner(lock_path: str | Path) -> dict | None:
    """The owner of the lock file ``lock_path`` if it is dead (a process of this host that is
    gone); None if it is alive or unknown."""
    owner = lock_owner(lock_path)
    return owner if _dead(owner) else None


def break_stale_lock(journal: str | Path) -> str | None:
    """Remove the journal's lock file if its owner is dead (:func:`stale_owner`); the
    warning logged (one line), or None if there was nothing to remove."""
    journal = Path(journal)
    lock_path = Path(f"{journal}{LOCK_SUFFIX}")
    if stale_owner(lock_path) is None:
        return None
    fd = os.open(journal, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one breaker at a time (module docstring)
        try:
            held = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # another process broke it first
        try:  # the same file, still with a dead owner: nobody took the lock meanwhile
            owner = _parse_owner(os.pread(held, 4096, 0))
            if not _dead(owner) or os.stat(lock_path).st_ino != os.fstat(held).st_ino:
                return None
            os.unlink(lock_path)
        except FileNotFoundError:
            return None
        finally:
            os.close(held)
    finally:
        os.close(fd)  # releases the flock
    message = (
        f"study journal {journal}: removed the lock {lock_path.name} left by pid "
        f"{owner['pid']} on this host, which died while writing; no wait needed"
    )
    log.warning(message)
    return message


class OwnedJournalLock(JournalFileOpenLock):
    """Optuna's open() lock on ``JOURNAL.lock`` (its ``release`` is Optuna's), created with
    its owner in it; a lock left by a dead owner is broken at once, any other one after
    Optuna's grace period (module docstring)."""

    def __init__(self, journal: str | Path, grace_period: int = 30) -> None:
        super().__init__(str(journal), grace_period=grace_period)
        self._journal = Path(journal)
        self._lock_path = Path(f"{journal}{LOCK_SUFFIX}")
        #: how many times acquire() found the lock held by a live or unknown owner and waited
        self.waits = 0

    @property
    def path(self) -> Path:
        return self._lock_path

    def _create(self) -> bool:
        """Create the lock file with the owner in it; False if it exists."""
        tmp = self._lock_path.with_name(f"{self._lock_path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, _owner_record())
            os.close(fd)
            fd = -1
            os.link(tmp, self._lock_path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:  # no hard links here: Optuna's plain open(O_EXCL)
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            try:
                os.close(os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return False
            return True
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def acquire(self) -> bool:
        sleep_s, mtime, changed = 0.001, None, time.monotonic()
        while True:
            if self._create():
                return True
            if break_stale_lock(self._journal) is not None:
                continue
            self.waits += 1
            try:
                current = os.stat(self._lock_path).st_mtime_ns
            except FileNotFoundError:
                continue  # released meanwhile
            if current != mtime:
                mtime, changed = current, time.monotonic()
            elif time.monotonic() - changed > self.grace_period:
                log.warning(
                    "study journal %s: its lock %s has not changed for %.0f s; breaking it",
                    self._journal,
                    self._lock_path.name,
                    self.grace_period,
                )
                with contextlib.suppress(RuntimeError):
                    self.release()
                continue
            time.sleep(sleep_s)
            sleep_s = min(sleep_s * 2, 0.25)
