"""A search driver killed with SIGKILL leaves no Ray process behind (issue 15): the local
cluster it started -- its own children and the raylet's (the dashboard and runtime-env
agents, the workers) -- is reaped by the watcher it started with Ray
(:mod:`lowbit.search.ray_reaper`); a clean shutdown ends the watcher too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from search_testkit import driver_script

from lowbit.search import ray_reaper


def _tree(root: int) -> dict[int, int]:
    """The live descendants of ``root``: pid -> start time."""
    found, frontier = {}, [root]
    while frontier:
        kids = ray_reaper.children(frontier.pop())
        found.update(kids)
        frontier.extend(kids)
    return found


def _alive(processes: dict[int, int]) -> list[str]:
    """The names of the processes among ``processes`` still running (not zombies)."""
    names = []
    for pid, start in processes.items():
        stat = ray_reaper._stat(pid)
        if stat is not None and stat[1] == start and stat[2] not in "ZX":
            names.append(ray_reaper._comm(pid))
    return names


@pytest.mark.slow
def test_a_killed_drivers_ray_processes_all_end(tmp_path):
    run, log = tmp_path / "run", tmp_path / "evals.log"
    code = driver_script(run=run, log=log, workers=2)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ray_processes: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 180
        while not (log.exists() and len(log.read_text().splitlines()) >= 4):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the search subprocess made no progress"
            time.sleep(0.05)
        ray_processes = _tree(proc.pid)
        names = _alive(ray_processes)
        # the raylet's children are there: what the kernel would not kill with the driver
        raylet = [p for p in ray_processes if ray_reaper._comm(p) == "raylet"]
        assert len(raylet) == 1, names
        grandchildren = ray_reaper.children(raylet[0])
        assert len(grandchildren) >= 3, names  # two agents, two workers
        assert any(n.startswith("ray::Dashboard") for n in names), names
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, mid-search
        proc.wait()
        # bounded poll on a count: Ray's own agents would linger about a minute
        deadline = time.monotonic() + 20
        while _alive(ray_processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(ray_processes) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid, start in ray_processes.items():  # never leave anything behind
            if ray_reaper._stat(pid) and ray_reaper._stat(pid)[1] == start:
                os.kill(pid, signal.SIGKILL)


#: a stand-in Ray process: logs into the session directory named by its argument, sleeps
SLEEPER = (
    "import sys, time; d = sys.argv[1].split('=', 1)[1]; "
    "log = open(d + '/' + sys.argv[2], 'a'); print('up', flush=True); time.sleep(600)"
)


def _sleeper(session: Path, log: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLEEPER, f"--session-dir={session}", log],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "up"
    return proc


def test_the_watcher_kills_its_cluster_only(tmp_path):
    """A "cluster" of two processes started before the watcher and one started after it
    (as Ray's workers are) in one session directory: all three are killed when the
    driver's pipe closes; processes of another session directory are left alone."""
    ours, elsewhere = tmp_path / "session_a", tmp_path / "session_b"
    ours.mkdir()
    elsewhere.mkdir()
    others = [_sleeper(elsewhere, "raylet.out")]  # started before "ray.init"
    before = ray_reaper.children()
    cluster = [_sleeper(ours, "gcs.out"), _sleeper(ours, "raylet.out")]
    try:
        reaper = ray_reaper.start_reaper(before=before)
        cluster.append(_sleeper(ours, "worker.out"))
        others.append(_sleeper(elsewhere, "worker.out"))  # another cluster's late worker
        assert reaper.poll() is None  # watching
        ray_reaper.stop_reaper(reaper)
        assert reaper.returncode == 0
        for proc in cluster:
            assert proc.wait(timeout=60) == -signal.SIGKILL
        assert [proc.poll() for proc in others] == [None, None]
    finally:
        for proc in (*cluster, *others):
            proc.kill()
            proc.wait()
            proc.stdout.close()
