"""The dashboard's web app (Starlette): the page, its JSON, two event streams, three actions.

Everything but the page's static files needs the per-run token that ``konduktor dashboard``
prints in its URL: the page reads it from its address and sends it back as the
``X-Konduktor-Token`` header (event streams, which cannot set headers, as ``?token=``).
Actions are POSTs that also refuse a foreign ``Origin`` (another web page open in the same
browser) and a cross-site ``Sec-Fetch-Site``. Bound to a loopback address, any ``Host`` but a
loopback name is refused too (DNS rebinding). Responses forbid inline scripts (CSP), and
the page builds its DOM with ``textContent``: job names, details and log lines stay text.

Routes:
  GET  /                          the page (static; its data needs the token)
  GET  /api/meta                  states, stop modes, colours, refresh interval
  GET  /api/jobs                  the status table as JSON (filters: see payloads.parse_query)
  GET  /api/events                the same, pushed after every refresh (server-sent events)
  GET  /api/jobs/{job}            one job: the fields of `status JOB`, history, timeline
  GET  /api/jobs/{job}/log        its log, streamed (server-sent events; ?rank=N for one node)
  POST /api/jobs/{job}/{verb}     stop (mode=...), start, down: `konduktor VERB -y JOB`
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from konduktor_slurm.dashboard import actions, logtail, payloads
from konduktor_slurm.dashboard.hub import Hub, Snapshot

TOKEN_HEADER = "x-konduktor-token"
KEEPALIVE_SECONDS = 15.0  # an SSE comment this often keeps SSH tunnels and proxies open
LOG_POLL_SECONDS = 1.0  # a followed log is read this often (as `konduktor logs --follow`)
LOG_SETTLE_SECONDS = 1.0  # after the job ended, its last lines may still reach the file
FIRST_SNAPSHOT_TIMEOUT = 120.0
MAX_ACTION_BODY = 8 * 1024

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the token is in the page's URL
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


def is_loopback_host(host_header: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback (``localhost:8765``,
    ``127.0.0.1:8765``, ``[::1]:8765``), whatever the port (``ssh -L`` may change it)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """Every response gets the security headers; with ``loopback_only`` a request whose
    ``Host`` is not a loopback name is refused (a DNS-rebinding page cannot reach us)."""

    def __init__(self, app: ASGIApp, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        host = Headers(scope=scope).get("host", "")
        if self.loopback_only and not is_loopback_host(host):
            refusal = PlainTextResponse(
                "konduktor dashboard answers to localhost / 127.0.0.1 only", status_code=403
            )
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def sse(event: str, data: Any) -> str:
    """One server-sent event; the JSON is on one line, so it is one ``data:`` field."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def create_app(
    hub: Hub,
    token: str,
    *,
    loopback_only: bool = True,
    stop_modes: tuple[str, ...] = ("auto",),
    default_stop_mode: str = "auto",
) -> Starlette:
    static = {
        name: (resources.files("konduktor_slurm.dashboard") / "static" / name).read_bytes()
        for name in STATIC
    }

    def token_ok(presented: str | None) -> bool:
        return presented is not None and secrets.compare_digest(presented.encode(), token.encode())

    def refused(message: str, status: int = 403) -> JSONResponse:
        return JSONResponse({"ok": False, "error": message, "messages": [message]}, status)

    def reading_allowed(request: Request) -> bool:
        return token_ok(request.headers.get(TOKEN_HEADER) or request.query_params.get("token"))

    no_token = (
        "Error: this dashboard needs the token from the URL `konduktor dashboard` printed "
        "(http://.../?token=...)"
    )

    async def first_snapshot(all_users: bool = False) -> Snapshot | None:
        """The current snapshot, waiting for the first refresh (or an every-user one)."""
        snapshot = hub.snapshot
        deadline = time.monotonic() + FIRST_SNAPSHOT_TIMEOUT
        while snapshot is None or (all_users and not snapshot.all_users):
            left = deadline - time.monotonic()
            if left <= 0:
                return snapshot
            snapshot = await hub.next_snapshot(snapshot.version if snapshot else 0, left)
            snapshot = snapshot or hub.snapshot
        return snapshot

    async def current_snapshot(all_users: bool = False) -> Snapshot | None:
        """The snapshot for a plain request (curl, a detail): if nobody was watching, the
        last one may be old, so the loop is woken and its next refresh awaited."""
        idle = hub.watchers == 0
        with hub.watching(all_users):
            snapshot = await first_snapshot(all_users)
            if idle and snapshot is not None and time.time() - snapshot.at > hub.interval + 1:
                fresher = await hub.next_snapshot(snapshot.version, hub.interval * 2 + 30)
                snapshot = fresher or snapshot
        return snapshot

    # ---- the page -----------------------------------------------------------------------

    async def page(request: Request) -> Response:
        return Response(static["index.html"], media_type=STATIC["index.html"])

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC or name == "index.html":
            return PlainTextResponse("not found", status_code=404)
        return Response(static[name], media_type=STATIC[name])

    async def meta(request: Request) -> Response:
        if not reading_allowed(request):
            return refused(no_token)
        snapshot = hub.snapshot
        return JSONResponse(
            dict(
                payloads.meta_payload(
                    snapshot.user if snapshot else "",
                    hub.interval,
                    stop_modes,
                    default_stop_mode,
                )
            )
        )

    # ---- the table ----------------------------------------------------------------------

    def query_of(request: Request) -> Any:
        params = request.query_params
        return payloads.parse_query(params.get, params.getlist, time.time())

    async def jobs(request: Request) -> Response:
        if not reading_allowed(request):
            return refused(no_token)
        try:
            query = query_of(request)
        except payloads.QueryError as exc:
            return refused(f"Error: {exc}", 400)
        snapshot = await current_snapshot(query.all_users)
        if snapshot is None:
            return refused("Error: Slurm has not answered yet; try again", 503)
        return JSONResponse(payloads.table_payload(snapshot, query, time.time()))

    async def events(request: Request) -> Response:
        if not reading_allowed(request):
            return refused(no_token)
        try:
            query = query_of(request)
        except payloads.QueryError as exc:
            return refused(f"Error: {exc}", 400)

        async def stream() -> AsyncIterator[str]:
            with hub.watching(query.all_users):
                yield "retry: 3000\n\n"
                shown = -1
                snapshot = await first_snapshot(query.all_users)
                while True:
                    if snapshot is not None and snapshot.version > shown:
                        shown = snapshot.version
                        yield sse("jobs", payloads.table_payload(snapshot, query, time.time()))
                    snapshot = await hub.next_snapshot(shown, KEEPALIVE_SECONDS)
                    if snapshot is None:
                        yield ": keepalive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    # ---- one job ------------------------------------------------------------------------

    async def find(request: Request) -> tuple[Snapshot | None, Any, Response | None]:
        from konduktor_slurm.service.session import did_you_mean

        name = request.path_params["job"]
        snapshot = await current_snapshot()
        job = snapshot.find(name) if snapshot else None
        if snapshot is None or job is None:
            names = [job.name for job in snapshot.jobs] if snapshot else []
            message = f"Error: no job named {name!r}.{did_you_mean(name, names)}"
            return snapshot, None, refused(message, 404)
        return snapshot, job, None

    async def detail(request: Request) -> Response:
        if not reading_allowed(request):
            return refused(no_token)
        snapshot, job, problem = await find(request)
        if problem is not None:
            return problem
        assert snapshot is not None
        return JSONResponse(payloads.detail_payload(snapshot, job, time.time()))

    async def log(request: Request) -> Response:
        if not reading_allowed(request):
            return refused(no_token)
        _, job, problem = await find(request)
        if problem is not None:
            return problem
        if not job.log_path:
            return refused(f"Error: {job.name} is {job.user}'s job; its log is theirs", 404)
        rank_text = request.query_params.get("rank", "")
        rank = None
        if rank_text not in ("", "all"):
            if not rank_text.isdigit() or int(rank_text) >= job.num_nodes:
                return refused(
                    f"Error: rank {rank_text}: {job.name} has ranks 0..{job.num_nodes - 1} only",
                    400,
                )
            rank = int(rank_text)
        return StreamingResponse(follow_log(job, rank), media_type="text/event-stream")

    async def follow_log(job: Any, rank: int | None) -> AsyncIterator[str]:
        """The log's last lines, then new ones as they come, until the job has ended."""
        from konduktor_slurm.slurm import SlurmError
        from konduktor_slurm.transport import TransportError

        def through_transport(work: Any, *args: Any) -> Any:
            """``work(transport, *args)`` on the log thread, with the session's transport."""
            transport = hub.transport
            if transport is None:  # between two sessions (a lost SSH connection)
                raise TransportError("the connection to the cluster is being reopened")
            return work(transport, *args)

        with hub.watching():  # the shared refresh says when the job has ended
            yield "retry: 3000\n\n"
            tail = None
            quiet_since = time.monotonic()
            while tail is None:
                try:
                    tail, lines = await hub.in_files(
                        through_transport, logtail.open_tail, job.log_path, rank
                    )
                except (SlurmError, TransportError) as exc:
                    yield sse("problem", {"message": f"cannot read the log: {exc}"})
                    await asyncio.sleep(5)
            yield sse("start", {"lines": lines})
            # A job that ended a while ago has written its last line: no need to wait.
            long_over = job.terminal and time.time() - (job.end_time or 0) > 10
            while True:
                if not long_over:
                    await asyncio.sleep(LOG_POLL_SECONDS)
                snapshot = hub.snapshot
                current = snapshot.find(job.name) if snapshot else None
                ended = current is None or current.terminal
                if ended and not long_over:
                    await asyncio.sleep(LOG_SETTLE_SECONDS)
                try:
                    while True:  # a burst longer than one read comes in several
                        offset = tail.offset
                        lines = await hub.in_files(
                            through_transport, logtail.read_more, tail, ended
                        )
                        if lines:
                            quiet_since = time.monotonic()
                            yield sse("lines", {"lines": lines})
                        if tail.offset - offset < logtail.READ_LIMIT:
                            break
                except (SlurmError, TransportError) as exc:
                    yield sse("problem", {"message": f"cannot read the log: {exc}"})
                    await asyncio.sleep(5)
                    continue
                if ended:
                    state = current.state if current else "gone"
                    detail = current.detail if current else ""
                    yield sse("end", {"status": state, "detail": detail})
                    return
                if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield ": keepalive\n\n"

    # ---- actions --------------------------------------------------------------------------

    async def act(request: Request) -> Response:
        verb = request.path_params["verb"]
        if verb not in actions.VERBS:
            return refused(f"Error: unknown action {verb!r}", 404)
        fields = await action_fields(request)
        if fields is None:
            return refused("Error: the request body is not a form or JSON object", 400)
        if not token_ok(request.headers.get(TOKEN_HEADER) or fields.get("token")):
            return refused(
                "Error: refused: actions need the dashboard's token (X-Konduktor-Token header "
                "or token form field); nothing was changed"
            )
        if not same_origin(request):
            return refused(
                "Error: refused: this request comes from another web page "
                f"(Origin {request.headers.get('origin')!r}); nothing was changed"
            )
        mode = fields.get("mode") or None
        if verb == "stop" and mode is not None and mode not in stop_modes:
            return refused(f"Error: mode {mode!r}: expected one of {', '.join(stop_modes)}", 400)
        job = request.path_params["job"]

        def work() -> tuple[actions.Outcome, Snapshot]:
            try:
                outcome = actions.run(hub.session, verb, job, mode if verb == "stop" else None)
            except Exception as exc:  # a bug or a broken store: one line, not a traceback
                what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                outcome = actions.Outcome(False, 500, [f"Error: unexpected {what}"])
            return outcome, hub.after_action()

        outcome, snapshot = await hub.in_lane(work)
        await hub.publish(snapshot)
        return JSONResponse(
            {"ok": outcome.ok, "messages": outcome.messages}, status_code=outcome.status
        )

    return Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static_file),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/api/meta", meta),
            Route("/api/jobs", jobs),
            Route("/api/events", events),
            Route("/api/jobs/{job}", detail),
            Route("/api/jobs/{job}/log", log),
            Route("/api/jobs/{job}/{verb}", act, methods=["POST"]),
        ],
        middleware=[_middleware(Guard, loopback_only=loopback_only)],
        lifespan=_lifespan(hub),
    )


def same_origin(request: Request) -> bool:
    """Whether a POST comes from our own page (or from no page at all, like curl)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by a browser's cross-origin request; the token decides
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def action_fields(request: Request) -> Mapping[str, str] | None:
    """A form (urlencoded) or JSON object body, as strings; None when it is neither."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ACTION_BODY:
            return None
    if not body.strip():
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        with contextlib.suppress(ValueError, RecursionError):
            value = json.loads(body)
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items() if v is not None}
        return None
    if kind == "application/x-www-form-urlencoded":
        try:
            parsed = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return None
        return {key: values[-1] for key, values in parsed.items()}
    return None


def _middleware(cls: Any, **options: Any) -> Any:
    from starlette.middleware import Middleware

    return Middleware(cls, **options)


def _lifespan(hub: Hub) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    return lifespan
