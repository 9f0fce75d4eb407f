"""Ray's processes die with the driver that started them, however the driver dies (Linux).

``ray.init(address="local")`` starts a cluster from the driver: its children (GCS server,
raylet, dashboard head, monitors) are killed with it by Ray (``PR_SET_PDEATHSIG``), but the
raylet's own children are not. Workers exit as soon as the raylet is gone; the dashboard
agent and the runtime-env agent notice it too, then try to report the death to the GCS, which
is gone as well, and linger for about a minute (Ray 2.60) after a driver killed with SIGKILL.

:func:`start_reaper` (called right after a local ``ray.init``) starts a small watcher in its
own session that holds the read end of a pipe whose write end only the driver has. When the
driver ends -- exits, or is killed -- the pipe closes, and the watcher SIGKILLs what is left of
this cluster: the processes the driver started for it (recorded by pid and start time, so a
reused pid is never hit), and every process of the driver's login session started since then
that has a file of this cluster's session directory open (``/tmp/ray/session_*``: every Ray
process logs there; an agent's environment and command line are no help, ``setproctitle``
overwrites them). Nothing else is touched: other Ray clusters have other session
directories. :func:`stop_reaper`, after ``ray.shutdown()``, closes the pipe itself (what
shutdown left is reaped the same way) and waits for the watcher.

A process the driver forks (not execs) after Ray started inherits the pipe: the watcher then
acts when the last of them has ended too.

The watcher runs this file's source with ``python -I -S -c`` (standard library only: nothing
to import, nothing that depends on how the driver found lowbit). Where ``/proc`` is missing
it is not started.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

__all__ = ["children", "start_reaper", "stop_reaper", "targets"]

log = logging.getLogger(__name__)


def _stat(pid: int) -> tuple[int, int, str, int] | None:
    """(parent pid, start time in clock ticks, state, session id) of process ``pid``; None
    if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        return int(fields[1]), int(fields[19]), fields[0], int(fields[3])
    except (OSError, ValueError, IndexError):
        return None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc (not Linux): nothing is watched
        return []


def children(pid: int | None = None) -> dict[int, int]:
    """The child processes of ``pid`` (default: this one): pid -> start time."""
    pid = os.getpid() if pid is None else pid
    found = {}
    for child in _pids():
        stat = _stat(child)
        if stat is not None and stat[0] == pid:
            found[child] = stat[1]
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _session_dir(pids: list[int]) -> str | None:
    """The Ray session directory named on the command line of one of ``pids``."""
    for pid in pids:
        for arg in _cmdline(pid):
            if arg.startswith("--session-dir=") and len(arg) > len("--session-dir="):
                return os.path.normpath(arg.split("=", 1)[1])
    return None


def start_reaper(*, before: dict[int, int]) -> subprocess.Popen | None:
    """Start the watcher (module docstring) of the Ray processes this process started since
    its children were ``before`` (:func:`children`, taken just before ``ray.init``); None
    where there is no ``/proc`` or no Ray session directory is found."""
    if not os.path.isdir("/proc/self"):
        return None
    started = {p: t for p, t in children().items() if before.get(p) != t}
    session = _session_dir(list(started))
    if session is None:
        return None
    # Ray's own: every one names the session directory (another thread's child does not)
    started = {p: t for p, t in started.items() if any(session in a for a in _cmdline(p))}
    spec = {
        "processes": [[p, t] for p, t in started.items()],
        "session_dir": session,
        "sid": os.getsid(0),
    }
    try:
        with open(__file__, encoding="utf-8") as handle:
            source = handle.read()
        return subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", source, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the driver's process group: outlives a killpg
        )
    except OSError as exc:  # no process left to start one: Ray runs, unwatched
        log.warning(
            "Ray's processes are not watched (a driver killed outright leaves "
            "them running): cannot start the watcher: %s",
            exc,
        )
        return None


def stop_reaper(reaper: subprocess.Popen | None) -> None:
    """Close the watcher's pipe (it reaps what is left, then exits) and wait for it."""
    if reaper is None:
        return
    reaper.stdin.close()
    try:
        reaper.wait(timeout=60)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()


def _uses(pid: int, prefix: str) -> bool:
    """Whether process ``pid`` has a file under ``prefix`` open (False: none, gone, or
    another user's)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def targets(spec: dict) -> dict[int, int]:
    """The live processes of the cluster described by ``spec`` (see :func:`start_reaper`):
    pid -> start time. Those recorded at start, and those of the driver's login session
    started since that hold a file of the cluster's session directory open (its logs: every
    Ray process writes some)."""
    found, first = {}, min((t for _, t in spec["processes"]), default=0)
    for pid, start in spec["processes"]:
        stat = _stat(pid)
        if stat is not None and stat[1] == start and stat[2] not in "ZX":
            found[pid] = start
    prefix = spec["session_dir"].rstrip("/") + "/"
    for pid in _pids():
        stat = _stat(pid)
        if pid == os.getpid() or pid in found or stat is None or stat[2] in "ZX":
            continue
        if stat[1] >= first and stat[3] == spec["sid"] and _uses(pid, prefix):
            found[pid] = stat[1]
    return found


def _reap(spec: dict) -> None:
    for _ in range(3):  # a process may start a child while its parent is being killed
        found = targets(spec)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _main() -> None:
    spec = json.loads(sys.argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the driver's terminal
    while sys.stdin.buffer.read(65536):
        pass  # only the driver writes (nothing): EOF when it has ended
    _reap(spec)


if __name__ == "__main__":
    _main()
