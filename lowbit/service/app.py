"""The HTTP API (FastAPI): routes only; simulation, search and reports live in hwsim,
search and reports. The OpenAPI description is served at ``/docs`` and ``/openapi.json``.

==========================================  ===============================================
``GET /v1/profiles``                        built-in hardware profiles
``GET /v1/models``                          the model zoo
``POST /v1/simulate``                       = ``lowbit simulate --format json``
``POST /v1/searches``                       start a search (runs in the background) -> id
``GET /v1/searches``                        every search and its state
``GET /v1/searches/{id}``                   state, trials done/failed, Pareto set, HV
``GET /v1/searches/{id}/configs/{cfg}``     a deployment config (``cfg`` or ``cfg.json``)
``GET /v1/searches/{id}/report``            the run's HTML report (once completed)
``DELETE /v1/searches/{id}``                cancel a running search
==========================================  ===============================================

With a token every ``/v1`` route needs ``Authorization: Bearer <token>``. Bodies larger
than :data:`MAX_BODY_BYTES` are refused with 413, declared (``Content-Length``) or sent
(chunked: refused as soon as the limit is passed, the rest is never read). Error messages
name what the client sent, never a file of the server (:func:`public_message`).
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from lowbit.hwsim.errors import LowbitError

from .jobs import JobError, Jobs
from .schemas import SearchRequest, SimulateRequest

__all__ = ["MAX_BODY_BYTES", "create_app", "public_message"]

MAX_BODY_BYTES = 256 * 1024
_DESCRIPTION = (
    "Hardware/model co-design for low-bit neural networks: simulate workloads on hardware "
    "profiles, run searches of per-layer compression (and accelerator parameters) in the "
    "background, read their Pareto sets, deployment configs and HTML reports."
)
_CONFIG_ID = re.compile(r"^([a-z][a-z0-9-]*-\d{5})(\.json)?$")


class _BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, declared or sent.

    The body is read here first, up to the limit (a chunked body says its size only by
    being sent): past it the request is answered 413 at once, without reading the rest.
    """

    def __init__(self, app, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit, send)
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await _too_large(self.limit, send)
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay():
            message = next(pending, None)
            return message if message is not None else await receive()

        return await self.app(scope, replay, send)


def _token_ok(header: str, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (constant time)."""
    scheme, _, value = header.partition(" ")
    # compared as bytes: compare_digest refuses non-ASCII str (a header from a client)
    given = value.strip().encode("utf-8", "replace")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, token.encode("utf-8"))


class _BearerAuth:
    """ASGI middleware: with a token, a ``/v1`` request without ``Authorization: Bearer
    <token>`` is answered 401 before its body is read or parsed."""

    def __init__(self, app, *, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if self.token is None or scope["type"] != "http" or not scope["path"].startswith("/v1"):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        if _token_ok(header.decode("latin-1"), self.token):
            return await self.app(scope, receive, send)
        body = b'{"detail":"missing or wrong bearer token (send Authorization: Bearer <token>)"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _too_large(limit: int, send) -> None:
    body = f'{{"detail":"request body larger than {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: an absolute file path in a message (its last component is kept)
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"():,;]+/)+([^\s/'\"():,;]+)")
#: the CLI's flags in the library's messages -> the request's field names
_FLAGS = (("--set ", "override "), ("--bits:", "bits:"), ("--plan:", "plan:"))


def public_message(message: str) -> str:
    """``message`` as a client may see it: file paths of the server cut to their last
    component (a built-in profile is named by its file), the CLI's flags as request fields."""
    message = _PATH.sub(r"\1", message)
    for flag, field in _FLAGS:
        message = message.replace(flag, field)
    return message


def _unprocessable(field: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's validation errors, naming the body field."""
    return HTTPException(
        status_code=422,
        detail=[{"loc": ["body", field], "msg": public_message(message), "type": "value_error"}],
    )


def _simulate(req: SimulateRequest) -> dict[str, Any]:
    """What ``lowbit simulate --format json`` prints, for a request body."""
    from lowbit.hwsim.profiles import load_profile, profile_from_dict
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.workloads import (
        apply_bits,
        apply_plan,
        parse_bits,
        resolve_workload,
        simulate,
    )

    try:
        if isinstance(req.profile, str):
            profile = load_profile(req.profile, overrides=req.overrides or None)
        else:
            profile = profile_from_dict(
                req.profile, source="request profile", overrides=req.overrides or None
            )
    except LowbitError as exc:
        raise _unprocessable("profile", str(exc)) from None
    workload = resolve_workload(req.workload)
    try:
        if req.bits:
            w_bits, a_bits = parse_bits(req.bits)
            workload = apply_bits(workload, w_bits=w_bits, a_bits=a_bits)
        elif req.plan is not None:
            try:
                plan = CompressionPlan.from_dict(req.plan)
            except (ValueError, TypeError, KeyError) as exc:
                raise LowbitError(f"not a valid compression plan: {exc}") from None
            workload = apply_plan(workload, plan, round_trip=profile.overheads.two_grid_round_trip)
    except LowbitError as exc:
        raise _unprocessable("plan" if req.plan is not None else "bits", str(exc)) from None
    try:
        return simulate(workload, profile, engine=req.engine).to_dict()
    except LowbitError as exc:
        raise _unprocessable("profile", str(exc)) from None


def create_app(*, state_dir: str | Path, token: str | None = None, max_running: int = 1):
    """The FastAPI application.

    Args:
        state_dir: where searches and their run directories live (survives restarts).
        token: if set, every ``/v1`` request needs ``Authorization: Bearer <token>``.
        max_running: searches allowed to run at once (each starts its own Ray cluster).
    """
    jobs = Jobs(Path(state_dir), max_running=max_running)

    app = FastAPI(
        title="lowbit",
        description=_DESCRIPTION,
        version=_version(),
    )
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    # outermost: every /v1 route is authenticated here, before any body is read
    app.add_middleware(_BearerAuth, token=token)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # without the rejected input: it may hold NaN/Infinity, which JSON cannot carry
        detail = [
            {
                "loc": list(e.get("loc", ())),
                "msg": public_message(str(e.get("msg", ""))),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(JobError)
    async def _job_error(request: Request, exc: JobError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": str(exc)})

    @app.get("/v1/profiles", summary="Built-in hardware profiles")
    def profiles() -> list[dict[str, Any]]:
        from lowbit.hwsim.profiles import builtin_profile_names, load_profile

        out = []
        for name in builtin_profile_names():
            p = load_profile(name)
            out.append(
                {
                    "name": p.name,
                    "family": p.family,
                    "description": p.description,
                    "clock_hz": p.clock_hz,
                    "peak_int8_macs_per_cycle": p.compute.peak_macs_per_cycle(8, 8),
                    "tunables": {t.key: list(t.values) for t in p.tunables},
                    "has_area_model": p.area is not None,
                    "content_hash": p.content_hash(),
                }
            )
        return out

    @app.get("/v1/models", summary="The model zoo")
    def zoo() -> list[dict[str, Any]]:
        from lowbit.models.zoo import ZOO

        return [
            {"name": e.name, "dataset": e.dataset, "description": e.description}
            for e in ZOO.values()
        ]

    @app.post("/v1/simulate", summary="Simulate a workload on a profile")
    def simulate(req: SimulateRequest) -> dict[str, Any]:
        return _simulate(req)

    @app.post("/v1/searches", status_code=202, summary="Start a search")
    def start(req: SearchRequest) -> dict[str, Any]:
        return _links(jobs.create(req.model_dump()))

    @app.get("/v1/searches", summary="Every search and its state")
    def searches() -> list[dict[str, Any]]:
        return [_links(jobs.state(i)) for i in jobs.ids()]

    @app.get("/v1/searches/{search_id}", summary="One search's progress")
    def search(search_id: str) -> dict[str, Any]:
        from lowbit.reports import ReportError, run_status

        state = jobs.state(search_id)
        try:
            progress = run_status(jobs.run_dir(search_id), study=state["study"])
        except ReportError as exc:
            progress = {"error": str(exc), "methods": {}}
        methods = progress.get("methods", {})
        joint = methods.get("joint", {})
        return _links(
            {
                **state,
                "trials": {
                    "completed": sum(m.get("completed", 0) for m in methods.values()),
                    "failed": sum(m.get("failed", 0) for m in methods.values()),
                },
                "hypervolume": joint.get("hypervolume"),
                "pareto": joint.get("pareto", []),
                "methods": methods,
            }
        )

    @app.get(
        "/v1/searches/{search_id}/configs/{config_id}",
        summary="A deployment config of a finished search",
    )
    def config(search_id: str, config_id: str) -> FileResponse:
        configs = jobs.run_dir(search_id) / "configs"
        match = _CONFIG_ID.match(config_id)
        known = {p.stem for p in configs.glob("*.json")} if configs.is_dir() else set()
        if not match or match.group(1) not in known:
            raise HTTPException(404, f"no config {config_id!r} in search {search_id}")
        return FileResponse(configs / f"{match.group(1)}.json", media_type="application/json")

    @app.get("/v1/searches/{search_id}/report", summary="HTML report")
    def report(search_id: str) -> FileResponse:
        from lowbit.reports import REPORT_FILE, build_report

        state = jobs.state(search_id)
        if state["state"] != "completed":
            raise HTTPException(409, f"search {search_id} is {state['state']}: no report yet")
        run_dir = jobs.run_dir(search_id)
        path = run_dir / REPORT_FILE
        summary = run_dir / "summary.json"
        if not path.is_file() or path.stat().st_mtime < summary.stat().st_mtime:
            build_report(run_dir)
        return FileResponse(path, media_type="text/html")

    @app.delete("/v1/searches/{search_id}", summary="Cancel a search")
    def cancel(search_id: str) -> dict[str, Any]:
        return _links(jobs.cancel(search_id))

    return app


def _links(state: dict[str, Any]) -> dict[str, Any]:
    base = f"/v1/searches/{state['id']}"
    return {**state, "links": {"self": base, "report": f"{base}/report"}}


def _version() -> str:
    from lowbit import __version__

    return __version__
