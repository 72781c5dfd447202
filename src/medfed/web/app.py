"""The dashboard's web application: pages, their JSON, and a server-sent event stream per study.

Every number comes from the coordinator's admin API through the researcher's own mTLS client
(``AdminSource``); the application keeps no state of its own. A running study's page listens
to ``/api/studies/{id}/events``: the server re-reads the study every ``poll_s`` and sends it
whenever anything changed, so a committed round reaches the page within about ``poll_s`` plus
one GetStudy call (well under a second on one machine), without a reload.

The pages load nothing from outside: Chart.js is vendored as package data (``static/``), and the
Content-Security-Policy says so to the browser. Requests must name the host the dashboard was
bound to (a DNS-rebinding page cannot read a loopback dashboard), and with a token every request
must carry it (``Authorization: Bearer``, or ``?token=`` once, which sets a cookie).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from medfed.errors import MedfedError
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.web.audit import fetch_audit_view
from medfed.web.report import template_filters
from medfed.web.server import LOOPBACK_HOSTS
from medfed.web.views import node_view, studies_view, study_view

COOKIE = "medfed_dashboard_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Nothing but this origin: the vendored chart library, the page's script, its JSON."""
KEEPALIVE_S = 15.0
T = TypeVar("T")


class AdminSource(Protocol):
    """What the dashboard asks the coordinator: the CLI's own calls (AdminClient)."""

    def status(self, study_id: str, timeout_s: float = 30.0) -> pb.StudyStatus: ...
    def studies(self, page_size: int = 0) -> list[pb.StudyStatus]: ...
    def nodes(self, page_size: int = 0) -> list[pb.NodeInfo]: ...
    def download(self, sha256: str, timeout_s: float = 300.0) -> Any: ...


def create_app(
    source: AdminSource,
    *,
    token: str = "",
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    poll_s: float = 0.25,
    ledger_head: Callable[[str], str | None] | None = None,
    governance: Callable[[], str] | None = None,
) -> FastAPI:
    """The dashboard over ``source``; ``token`` (non-empty) is required on every request.
    ``ledger_head(study_id)``: the coordinator's ledger head to show under provenance (the
    slot says "not exposed" without it); ``governance()``: the coordinator's governance state
    JSON, for where each privacy-audit block request stands (medfed.web.audit)."""

    def audit_of(study_id: str) -> dict[str, Any]:
        """Read on a page load or a JSON request, not on every event: it lists all studies."""
        return fetch_audit_view(study_id, source.studies, source.status, governance)

    def study_of(study_id: str) -> dict[str, Any]:
        status = source.status(study_id)
        return study_view(status, ledger_head(study_id) if ledger_head else None)

    app = FastAPI(title="medfed dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Environment(
        loader=PackageLoader("medfed.web", "templates"), autoescape=select_autoescape()
    )
    templates.filters.update(template_filters())
    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    def page(name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(templates.get_template(name).render(**context))

    @app.get("/", response_class=HTMLResponse)
    def consortium() -> HTMLResponse:
        return page("consortium.html", initial=_script_json(_call(lambda: _overview(source))))

    @app.get("/studies/{study_id}", response_class=HTMLResponse)
    def study(study_id: str) -> HTMLResponse:
        view = _call(lambda: study_of(study_id))
        audit = _call(lambda: audit_of(study_id))
        return page("study.html", view=view, audit=audit, initial=_script_json(view))

    @app.get("/api/overview")
    def overview() -> dict[str, Any]:
        return _call(lambda: _overview(source))

    @app.get("/api/studies/{study_id}")
    def study_json(study_id: str) -> dict[str, Any]:
        return _call(lambda: study_of(study_id) | {"privacy_audit": audit_of(study_id)})

    @app.get("/api/studies/{study_id}/events")
    async def events(study_id: str, request: Request) -> StreamingResponse:
        await run_in_threadpool(_call, lambda: source.status(study_id))  # 404 before streaming
        stream = _study_events(lambda: study_of(study_id), request.is_disconnected, poll_s)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    @app.get("/studies/{study_id}/model.safetensors")
    def model(study_id: str) -> Response:
        return _call(lambda: _bundle(source, study_id))

    _secure(app, token, allowed_hosts)
    return app


def _overview(source: AdminSource) -> dict[str, Any]:
    return {"nodes": node_view(source.nodes()), "studies": studies_view(source.studies())}


def _call(fetch: Callable[[], T]) -> T:
    """A coordinator answer, or the coordinator's refusal as an HTTP error with its words."""
    try:
        return fetch()
    except MedfedError as exc:
        text = str(exc)
        code = 404 if "not known" in text or "NOT_FOUND" in text else 502
        raise HTTPException(status_code=code, detail=text) from exc


async def _study_events(
    fetch: Callable[[], dict[str, Any]],
    disconnected: Callable[[], Awaitable[bool]],
    poll_s: float,
) -> AsyncIterator[str]:
    """The study as an SSE ``study`` event whenever it changed; ends after a finished study's
    last state went out (the page then stops listening)."""
    last = ""
    quiet = 0.0
    while not await disconnected():
        try:
            view = await run_in_threadpool(fetch)
        except MedfedError as exc:  # the coordinator went away: say so, keep trying
            yield f"event: trouble\ndata: {json.dumps(str(exc))}\n\n"
            await asyncio.sleep(max(poll_s, 1.0))
            continue
        payload = json.dumps(view, sort_keys=True)
        if payload != last:
            last, quiet = payload, 0.0
            yield f"event: study\ndata: {payload}\n\n"
            if view["finished"]:
                return
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll_s)
        quiet += poll_s


def _bundle(source: AdminSource, study_id: str) -> Response:
    """The study's current model as a model bundle (what ``medfed study download`` writes)."""
    from medfed.coordinator.spec import spec_from_proto
    from medfed.model.bundle import bundle_from_status, write_bundle

    status = source.status(study_id)
    weights = source.download(status.model_sha256)
    bundle = bundle_from_status(status, weights, spec_from_proto(status.spec).to_json())
    with tempfile.TemporaryDirectory(prefix="medfed-dashboard-") as tmp:
        path = Path(tmp) / "model.safetensors"
        write_bundle(bundle, path)
        body = path.read_bytes()
    name = f"{study_id}-round{status.completed_rounds}.safetensors"
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>`` can close it)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _secure(app: FastAPI, token: str, allowed_hosts: Sequence[str]) -> None:
    """Host check, security headers and (with a token) authentication on every request."""

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if token:
            given = request.query_params.get("token")
            if given is not None and _same(given, token):
                target = request.url.remove_query_params("token")
                reply: Response = RedirectResponse(str(target.path) or "/", status_code=303)
                reply.set_cookie(COOKIE, token, httponly=True, samesite="strict")
                return reply
            offered = request.cookies.get(COOKIE, "")
            bearer = request.headers.get("authorization", "")
            if bearer.lower().startswith("bearer "):
                offered = bearer[7:].strip()
            if not _same(offered, token):
                return Response(
                    "medfed dashboard: a token is required (open the link with ?token=... once, "
                    "or send 'Authorization: Bearer <token>')\n",
                    status_code=401,
                    media_type="text/plain",
                )
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    if "*" not in allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())
