"""``lowbit serve`` as a real server process on loopback (a free port per server).

Covers the read-only routes, /v1/simulate against ``lowbit simulate --format json``, body
validation (422 naming the field, 413), unknown ids and traversal attempts (404), the
bearer token, and searches end to end: one that survives a restart of the service, one
whose worker is killed (failed, with the reason) and one that is cancelled.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from lowbit.cli import main  # noqa: E402
from lowbit.search import load_config  # noqa: E402

#: workers train models into LOWBIT_CACHE: a temporary one unless one is set (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("zoo_cache")

TINY_SEARCH = {
    "model": "digits-mlp",
    "profile": "npu-bitfusion",
    "trials": 6,
    "baselines": ["uniform"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(state_dir: Path, *, token: str | None = None):
    """A ``lowbit serve`` process; yields an httpx client on its base URL."""
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
    ] + (["--token", token] if token else [])
    log = (state_dir.parent / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lowbit serve did not start (exit {proc.poll()})")
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("service") / "state"
    state.mkdir()
    return state


@pytest.fixture(scope="module")
def server(state_dir):
    with serve(state_dir) as client:
        yield client


def _wait(client, search_id: str, states: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/searches/{search_id}").json()
        if body["state"] in states or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def _fields(response) -> set[str]:
    return {err["loc"][-1] for err in response.json()["detail"] if len(err["loc"]) > 1}


def test_profiles_models_and_openapi(server):
    profiles = {p["name"]: p for p in server.get("/v1/profiles").json()}
    assert "compute.rows" in profiles["npu-bitfusion"]["tunables"]
    assert profiles["npu-bitfusion"]["has_area_model"]
    assert "digits-cnn" in {m["name"] for m in server.get("/v1/models").json()}
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/v1/simulate", "/v1/searches", "/v1/searches/{search_id}/report"} <= set(paths)
    assert server.get("/docs").status_code == 200


def test_simulate_is_lowbit_simulate_json(server):
    body = {
        "profile": "npu-bitfusion",
        "workload": "resnet18",
        "bits": "W4A8",
        "overrides": {"compute.rows": 32},
    }
    got = server.post("/v1/simulate", json=body)
    assert got.status_code == 200
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(
            [
                "simulate",
                "--hardware",
                "npu-bitfusion",
                "--workload",
                "resnet18",
                "--bits",
                "W4A8",
                "--set",
                "compute.rows=32",
                "--format",
                "json",
            ]
        )
    assert rc == 0 and got.json() == json.loads(out.getvalue())


def test_simulate_inline_profile_and_plan(server):
    from lowbit.hwsim.profiles import load_profile_data

    inline = load_profile_data("npu-systolic-32")
    plan = {"version": 1, "layers": {"_default": {"w_bits": 8, "a_bits": 8}}}
    got = server.post(
        "/v1/simulate", json={"profile": inline, "workload": "digits-cnn", "plan": plan}
    )
    assert got.status_code == 200 and got.json()["hardware"] == "npu-systolic-32"
    inline["compute"]["rowz"] = 4
    bad = server.post("/v1/simulate", json={"profile": inline, "workload": "resnet18"})
    assert bad.status_code == 422 and "compute.rowz" in bad.json()["detail"][0]["msg"]
    assert _fields(bad) == {"profile"}


@pytest.mark.parametrize(
    ("route", "body", "fields"),
    [
        ("/v1/searches", {**TINY_SEARCH, "trials": 0}, {"trials"}),
        (
            "/v1/searches",
            {**TINY_SEARCH, "trials": "5", "pin_first_last": "yes"},
            {"trials", "pin_first_last"},
        ),
        ("/v1/searches", {**TINY_SEARCH, "trials": 10**6}, {"trials"}),
        ("/v1/searches", {**TINY_SEARCH, "model": "digits-cnnn"}, {"model"}),
        ("/v1/searches", {**TINY_SEARCH, "profile": "../../etc/passwd"}, {"profile"}),
        ("/v1/searches", {**TINY_SEARCH, "workers": 99, "shell": "rm"}, {"workers", "shell"}),
        ("/v1/searches", {**TINY_SEARCH, "baselines": ["magic"]}, {0}),
        ("/v1/searches", {"model": "digits-cnn"}, {"profile", "trials"}),
        ("/v1/simulate", {"profile": "npu-bitfusion", "workload": "nope"}, {"workload"}),
        ("/v1/simulate", {"profile": "npu-bitfusion", "workload": "/etc/passwd"}, {"workload"}),
        (
            "/v1/simulate",
            {"profile": "npu-bitfusion", "workload": "resnet18", "bits": "W4"},
            {"bits"},
        ),
        (
            "/v1/simulate",
            {"profile": "npu-bitfusion", "workload": "resnet18", "overrides": {"compute.rows": -4}},
            {"profile"},
        ),
    ],
)
def test_bad_bodies_are_422_naming_the_field(server, route, body, fields):
    response = server.post(route, json=body)
    assert response.status_code == 422, response.text
    assert _fields(response) == fields


def test_oversized_and_malformed_bodies(server):
    big = {"profile": "npu-bitfusion", "workload": "resnet18", "plan": {"x": "y" * 400_000}}
    assert server.post("/v1/simulate", json=big).status_code == 413
    broken = server.post(
        "/v1/simulate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/v1/searches/0123456789abcdef0123456789abcdef",
        "/v1/searches/..%2F..%2Fetc",
        "/v1/searches/../../etc/passwd",
        "/v1/searches/%2e%2e/report",
        "/v1/searches/0123456789abcdef0123456789abcdef/configs/joint-00000",
        "/v1/searches/0123456789abcdef0123456789abcdef/report",
    ],
)
def test_unknown_ids_and_traversal_are_404(server, path):
    assert server.get(path).status_code == 404
    if path.count("/") == 3:
        assert server.delete(path).status_code == 404


def test_token_required_when_set(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with serve(state, token="s3cret") as client:
        assert client.get("/v1/profiles").status_code == 200
        anonymous = httpx.get(f"{client.base_url}/v1/profiles")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(f"{client.base_url}/v1/models", headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401
        assert httpx.post(f"{client.base_url}/v1/searches", json=TINY_SEARCH).status_code == 401
        # a non-ASCII header was a 500 (hmac.compare_digest refuses non-ASCII str)
        odd = {"Authorization": "Bearer s3cr\u00e9t".encode()}  # raw UTF-8 bytes
        assert httpx.get(f"{client.base_url}/v1/models", headers=odd).status_code == 401
        # authentication comes before the body: malformed or oversized bodies are 401 too
        for content in (b"{not json", b"x" * 400_000):
            answer = httpx.post(
                f"{client.base_url}/v1/simulate",
                content=content,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 401, answer.text


def test_bodies_with_nan_are_422_not_500(server):
    # the 422 response used to echo the input, and NaN cannot be encoded as JSON
    body = b'{"profile": NaN, "workload": "resnet18"}'
    answer = server.post("/v1/simulate", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert "NaN" not in answer.text and answer.json()["detail"]


def test_binding_beyond_loopback_needs_a_token(capsys, monkeypatch):
    monkeypatch.delenv("LOWBIT_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "--token" in capsys.readouterr().err


@pytest.mark.slow
def test_search_survives_a_restart_and_ends_with_results(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with serve(state) as first:
        started = first.post("/v1/searches", json=TINY_SEARCH)
        assert started.status_code == 202, started.text
        search_id = started.json()["id"]
        assert started.json()["state"] == "running"
    # the service is gone; its search is not
    job = json.loads((state / "searches" / search_id / "job.json").read_text())
    os.kill(job["pid"], 0)
    with serve(state) as second:
        assert second.get(f"/v1/searches/{search_id}").json()["state"] in ("running", "completed")
        done = _wait(second, search_id, ("completed", "failed"))
        assert done["state"] == "completed", done["reason"]
        assert done["trials"] == {"completed": 6 + 4, "failed": 0}  # joint + 4 uniform
        assert done["hypervolume"] > 0 and done["pareto"]
        assert [s["id"] for s in second.get("/v1/searches").json()] == [search_id]
        cid = done["pareto"][0]["config_id"]
        config = second.get(f"/v1/searches/{search_id}/configs/{cid}.json")
        assert config.status_code == 200
        path = tmp_path / "config.json"
        path.write_text(config.text)
        assert load_config(path).id == cid
        report = second.get(f"/v1/searches/{search_id}/report")
        assert report.status_code == 200 and "text/html" in report.headers["content-type"]
        assert f'href="configs/{cid}.json"' in report.text  # resolves to the configs route
        assert second.get(f"/v1/searches/{search_id}/configs/..%2Fjob").status_code == 404
        assert second.delete(f"/v1/searches/{search_id}").status_code == 409


@pytest.mark.slow
def test_killed_worker_ends_failed_with_the_reason(server, state_dir):
    started = server.post("/v1/searches", json={**TINY_SEARCH, "trials": 2000})
    assert started.status_code == 202, started.text
    search_id = started.json()["id"]
    busy = server.post("/v1/searches", json=TINY_SEARCH)
    assert busy.status_code == 429  # one search at a time by default
    job = json.loads((state_dir / "searches" / search_id / "job.json").read_text())
    time.sleep(1.0)
    os.killpg(job["pid"], signal.SIGKILL)  # the worker and its Ray crash
    failed = _wait(server, search_id, ("failed", "completed", "cancelled"), timeout=30)
    assert failed["state"] == "failed"
    assert "SIGKILL" in failed["reason"] and "without a result" in failed["reason"]
    assert server.get(f"/v1/searches/{search_id}/report").status_code == 409


@pytest.mark.slow
def test_cancel_stops_a_running_search(server):
    started = server.post("/v1/searches", json={**TINY_SEARCH, "trials": 2000})
    assert started.status_code == 202, started.text
    search_id = started.json()["id"]
    cancelling = server.delete(f"/v1/searches/{search_id}")
    assert cancelling.status_code == 200 and cancelling.json()["state"] == "cancelling"
    done = _wait(server, search_id, ("cancelled", "failed", "completed"), timeout=60)
    assert done["state"] == "cancelled"
