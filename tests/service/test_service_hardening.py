"""The service against hostile clients and damaged state (issue 15), on a real ``lowbit
serve`` process: a chunked body over the limit is refused with 413 without being read to
its end, 422 messages name no file of the server, and partially written state entries are
failed searches, never a 500."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lowbit
from lowbit.service.app import MAX_BODY_BYTES, public_message

httpx = pytest.importorskip("httpx")

PACKAGE_DIR = str(Path(lowbit.__file__).parent)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A ``lowbit serve`` on loopback; yields (port, state_dir)."""
    state_dir = tmp_path_factory.mktemp("service-state")
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "lowbit.cli",
        "serve",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        yield port, state_dir
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def _chunked_post(port: int, path: str, *, cap: int) -> tuple[int, bytes]:
    """POST a chunked body of up to ``cap`` bytes, stopping once the server answers (or
    stops reading); the bytes sent and the response."""
    chunk = 64 * 1024
    frame = b"%x\r\n" % chunk + b" " * chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.settimeout(5)  # a server that stopped reading blocks the send
        try:
            while sent < cap and not select.select([sock], [], [], 0)[0]:
                sock.sendall(frame)
                sent += chunk
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        sock.settimeout(30)
        # the status line and headers may come in one segment and the body in the next:
        # read until the chunked body's last chunk (or the server closes)
        response = b""
        while not response.endswith(b"0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                break
            response += data
        return sent, response


def test_an_oversized_chunked_body_is_413_without_reading_it_all(server):
    port, _ = server
    cap = 256 * 1024 * 1024
    sent, response = _chunked_post(port, "/v1/simulate", cap=cap)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert f"larger than {MAX_BODY_BYTES} bytes".encode() in response
    assert sent < cap  # answered while the client was still sending
    # the server is fine afterwards, and a small chunked body still goes through
    body = json.dumps({"profile": "npu-bitfusion", "workload": "resnet18", "bits": "W4A8"})
    small = httpx.post(
        f"http://127.0.0.1:{port}/v1/simulate",
        content=iter([body.encode()]),
        headers={"content-type": "application/json"},
    )
    assert small.status_code == 200 and small.json()["hardware"] == "npu-bitfusion"


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"overrides": {"nope.key": 1}}, "npu-bitfusion.toml: override nope.key: unknown key"),
        ({"overrides": {"compute.rows": 0}}, "override compute.rows"),
    ],
)
def test_422_messages_name_no_server_path(server, body, expected):
    port, state_dir = server
    request = {"profile": "npu-bitfusion", "workload": "resnet18", **body}
    response = httpx.post(f"http://127.0.0.1:{port}/v1/simulate", json=request)
    assert response.status_code == 422
    message = response.json()["detail"][0]["msg"]
    assert expected in message
    for secret in (PACKAGE_DIR, str(state_dir), str(Path.home()), "--set"):
        assert secret not in response.text


def test_public_message_cuts_paths_and_flags():
    text = "/srv/x/lowbit/hardware_profiles/a.toml: --set k: bad (at /usr/lib/y.py:3); --bits: 5"
    assert public_message(text) == "a.toml: override k: bad (at y.py:3); bits: 5"
    assert public_message("W4A8 and 1/2 and http://host/a") == "W4A8 and 1/2 and http://host/a"


JOB = {"id": "", "created": 1.0, "request": {"model": "digits-mlp"}, "study": "s"}
#: damaged entries: file name -> bytes, and what the failure reason must say
DAMAGED = {
    "truncated-job": ({"job.json": json.dumps({**JOB, "note": "é"}).encode()[:-4]}, "job.json"),
    "empty-job": ({"job.json": b""}, "job.json"),
    "job-not-object": ({"job.json": b"[1, 2]"}, "job.json"),
    "truncated-status": (
        {"job.json": json.dumps(JOB).encode(), "status.json": b'{"state": "compl'},
        "status.json",
    ),
}


def test_partial_state_entries_are_failed_searches_not_500s(server):
    port, state_dir = server
    ids = {}
    for n, (name, (files, _)) in enumerate(DAMAGED.items()):
        job_id = f"{n:032x}"
        ids[name] = job_id
        entry = state_dir / "searches" / job_id
        entry.mkdir(parents=True)
        for file, data in files.items():
            (entry / file).write_bytes(data)
    # a job.json of the wrong types: read as missing values, not served as they are
    odd = state_dir / "searches" / f"{len(DAMAGED):032x}"
    odd.mkdir()
    (odd / "job.json").write_text('{"created": "yesterday", "request": [], "study": 5}')
    base = f"http://127.0.0.1:{port}/v1/searches"
    listing = httpx.get(base)
    assert listing.status_code == 200
    assert {s["id"] for s in listing.json()} >= set(ids.values())
    for name, job_id in ids.items():
        state = httpx.get(f"{base}/{job_id}")
        assert state.status_code == 200, (name, state.text)
        body = state.json()
        assert body["state"] == "failed"
        assert f"its {DAMAGED[name][1]} is unreadable" in body["reason"], body["reason"]
        assert httpx.get(f"{base}/{job_id}/report").status_code == 409
        assert httpx.delete(f"{base}/{job_id}").status_code == 409
    state = httpx.get(f"{base}/{odd.name}").json()
    assert state["state"] == "failed"
    assert (state["created"], state["request"], state["study"]) == (None, {}, None)
