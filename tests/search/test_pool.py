"""The local Ray cluster lowbit starts (:func:`lowbit.search.pool.start_ray`)."""

from __future__ import annotations

import subprocess
import sys

START_AND_STOP = """
import ray
from lowbit.search.pool import shutdown_ray, start_ray
assert start_ray(1, None) and ray.is_initialized()
shutdown_ray()
print("started and stopped")
"""


def test_a_local_cluster_starts_without_rays_token_notice():
    """Ray >= 2.59 protects a local cluster with a token by default and logs a WARNING that
    it did, at every start: lowbit's local cluster keeps the protection and leaves the
    notice out of its output (a process of its own: other tests keep a cluster running)."""
    done = subprocess.run(
        [sys.executable, "-c", START_AND_STOP], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "started and stopped" in done.stdout
    assert "Token authentication is enabled" not in done.stdout + done.stderr
