"""Background searches: one worker process per search, all state in files.

Layout under the state directory::

    searches/<id>/job.json     the request, the study name, the worker's pid and start time
    searches/<id>/run/         the search's run directory (journal, CSVs, configs, report)
    searches/<id>/worker.log   the worker's stdout and stderr
    searches/<id>/status.json  how it ended: completed / failed (with the reason) / cancelled
    searches/<id>/cancel       present once a cancel was requested

The worker (``python -m lowbit.service.worker <dir>``) runs in its own session, so it keeps
running while the service restarts; the service finds it again from job.json (pid plus the
process start time, so a reused pid is not mistaken for it). A worker that is gone without
a status.json crashed or was killed: the search is then recorded as failed with the reason,
never left "running". Ids are random hex and checked with a regex before any path is built.

A partial entry (a crash mid-write, a full disk: a job.json or status.json that is not a
JSON object, or holds values of the wrong type) is answered as a failed search whose reason
names the file, never as a server error; a missing job.json (a crash between the mkdir and
the write) hides the directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["JobError", "Jobs", "TERMINAL", "valid_id"]

_ID = re.compile(r"^[0-9a-f]{32}$")
TERMINAL = ("completed", "failed", "cancelled")
#: seconds a cancelled worker gets to stop its Ray cluster before it is killed
CANCEL_GRACE_S = 15.0


class JobError(Exception):
    """A request the job table cannot honour; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def valid_id(text: str) -> bool:
    return bool(_ID.match(text))


def _write_json(path: Path, data: Any) -> None:
    from lowbit.search.results import write_json

    write_json(path, data)


def _read_json(path: Path) -> Any:
    """The parsed file, or None: missing, unreadable, not UTF-8 or not JSON (truncated)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError: UnicodeDecode, JSONDecode
        return None


def _damaged(path: Path) -> str | None:
    """Why the state file ``path`` cannot be used (it exists but is not a JSON object)."""
    if not path.exists():
        return None
    data = _read_json(path)
    if isinstance(data, dict):
        return None
    what = "not a JSON object" if data is not None else "not valid UTF-8 JSON (a partial write?)"
    return f"its {path.name} is unreadable: {what}"


#: job.json keys -> their type; a value of another type is read as missing
_JOB_TYPES = {"created": (int, float), "request": dict, "study": str, "pid": int}


def _start_ticks(pid: int) -> int | None:
    """The process start time (clock ticks since boot, /proc/<pid>/stat field 22), or None
    if there is no such live process (a zombie counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(job: dict[str, Any]) -> bool:
    pid, ticks = job.get("pid"), job.get("start_ticks")
    if not isinstance(pid, int):
        return False
    if Path("/proc").is_dir():
        return ticks is not None and _start_ticks(pid) == ticks
    try:  # pragma: no cover - no procfs
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


@dataclass
class Jobs:
    """The searches under ``state_dir`` (see the module docstring).

    Args:
        state_dir: where searches live; created if missing.
        max_running: searches allowed to run at once (each starts its own Ray).
    """

    state_dir: Path
    max_running: int = 1

    def __post_init__(self) -> None:
        self.root = Path(self.state_dir) / "searches"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen] = {}

    # --- paths ---------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """The directory of search ``job_id``; 404 for an id that is malformed or unknown."""
        if not valid_id(job_id) or not (self.root / job_id / "job.json").is_file():
            raise JobError(404, f"no search with id {job_id!r}")
        return self.root / job_id

    def run_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "run"

    # --- lifecycle -----------------------------------------------------------------------
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a search for ``request`` (a validated SearchRequest as a dict)."""
        with self._lock:
            running = [j for j in self.ids() if self.state(j)["state"] == "running"]
            if len(running) >= self.max_running:
                raise JobError(
                    429,
                    f"{len(running)} search(es) already running (the limit is "
                    f"{self.max_running}); wait for one to finish or cancel it",
                )
            job_id = secrets.token_hex(16)
            job_dir = self.root / job_id
            job_dir.mkdir()
            suffix = "-codesign" if request.get("co_design") else ""
            job = {
                "id": job_id,
                "created": time.time(),
                "request": request,
                "study": f"{request['model']}-{request['profile']}-s{request['seed']}{suffix}",
            }
            _write_json(job_dir / "job.json", job)
            log = (job_dir / "worker.log").open("ab")
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "lowbit.service.worker", str(job_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=job_dir,
                    start_new_session=True,  # survives the service; killpg reaches its Ray
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            finally:
                log.close()
            job.update(pid=proc.pid, start_ticks=_start_ticks(proc.pid))
            _write_json(job_dir / "job.json", job)
            self._children[job_id] = proc
        return self.state(job_id)

    def ids(self) -> list[str]:
        """Every search, oldest first."""
        found = [p.name for p in self.root.iterdir() if valid_id(p.name)]
        jobs = [(self._job(i) or {}).get("created", 0.0) for i in found]
        return [i for _, i in sorted(zip(jobs, found, strict=True))]

    def _job(self, job_id: str) -> dict[str, Any] | None:
        data = _read_json(self.root / job_id / "job.json")
        if not isinstance(data, dict):
            return None
        return {
            k: v
            for k, v in data.items()
            if k not in _JOB_TYPES or (isinstance(v, _JOB_TYPES[k]) and not isinstance(v, bool))
        }

    def state(self, job_id: str) -> dict[str, Any]:
        """``{"id", "state", "reason", "created", "finished", "request"}`` of a search.

        A worker found dead without a status is recorded as failed here (status.json is
        written), so the answer never changes back.
        """
        job_dir = self.job_dir(job_id)
        job = self._job(job_id) or {}
        status = _read_json(job_dir / "status.json")
        if isinstance(status, dict) and status.get("state") not in TERMINAL:
            status = None  # a status is written once, at the end: this one is damaged
        if not isinstance(status, dict):
            status = self._check_worker(job_id, job_dir, job)
        return {
            "id": job_id,
            "state": status["state"],
            "reason": status.get("reason"),
            "created": job.get("created"),
            "finished": status.get("finished"),
            "study": job.get("study"),
            "request": job.get("request", {}),
        }

    def _check_worker(self, job_id: str, job_dir: Path, job: dict[str, Any]) -> dict[str, Any]:
        child = self._children.get(job_id)
        code = child.poll() if child is not None else None  # reaps our own children
        if code is None and _alive(job):
            return {"state": "running"}
        time.sleep(0.2)  # the worker may be writing its status right now
        if child is not None:
            try:  # it died just now: its exit status says how
                code = child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return {"state": "running"}
        status = _read_json(job_dir / "status.json")
        if isinstance(status, dict) and status.get("state") in TERMINAL:
            return status
        damaged = _damaged(job_dir / "job.json") or _damaged(job_dir / "status.json")
        if damaged:
            status = {"state": "failed", "reason": f"the search's state is damaged: {damaged}"}
        elif (job_dir / "cancel").exists():
            status = {"state": "cancelled", "reason": "cancelled by request"}
        else:
            how = "ended"
            if code is not None and code < 0:
                how = f"was killed by signal {signal.Signals(-code).name}"
            elif code is not None:
                how = f"exited with code {code}"
            last = _last_line(job_dir / "worker.log")
            status = {
                "state": "failed",
                "reason": f"the search worker {how} without a result (crashed or killed)"
                + (f"; last log line: {last}" if last else ""),
            }
        status["finished"] = time.time()
        _write_json(job_dir / "status.json", status)
        return status

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a running search to stop (SIGTERM to the worker, SIGKILL to its whole process
        group after :data:`CANCEL_GRACE_S`); 409 if it already ended."""
        state = self.state(job_id)
        if state["state"] in TERMINAL:
            raise JobError(409, f"search {job_id} already {state['state']}")
        job_dir = self.job_dir(job_id)
        (job_dir / "cancel").touch()
        job = self._job(job_id) or {}
        try:  # the worker first: it stops its search and shuts its Ray cluster down
            os.kill(job["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        threading.Thread(target=self._escalate, args=(job_id, job), daemon=True).start()
        return {**state, "state": "cancelling"}

    def _escalate(self, job_id: str, job: dict[str, Any]) -> None:
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline:
            child = self._children.get(job_id)
            if child is not None:
                child.poll()
            if not _alive(job):
                return
            time.sleep(0.2)
        try:
            os.killpg(job["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
