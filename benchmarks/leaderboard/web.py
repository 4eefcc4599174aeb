"""The leaderboard's web page and JSON API (FastAPI, server-rendered Jinja2 templates).

Pages: `/` a phase's standings (`?phase=`; sortable columns; full rankings and each top-K track
apart; the final private board once revealed), `/submit` the upload form, `/team` a team's own
history, quota and selection for the private board, `/host` the private standings, the phases
(close one now) and the reveal. A token entered on `/team` or `/host` is kept in an HttpOnly,
SameSite=Strict cookie for the browser session (`POST /signout` drops it).

API: `GET /api/info`, `GET /api/standings` (`?phase=`, `?view=private`: the host's bearer token,
or anyone once revealed), `GET /api/teams/{name}/submissions` (that team's or the host's token),
`GET /api/quota`, `POST /api/submit` (multipart `file`, `method`, `url`, `description`,
`similarity`, `metric`; team token as a Bearer header or a `token` field), `GET|POST
/api/selection` (`submission_ids`), `POST /api/phases/{name}/close` and `POST /api/reveal` (host).
Tokens travel in headers, form bodies or the cookie, never in URLs, so access logs cannot record
them.

Limits: uploads above `max_upload_bytes` are cut off with 413 while streaming (not after);
requests running longer than `request_timeout_s` get 504, and a submission still being scored
is then called off before it is recorded (no quota used).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from benchmarks.leaderboard.board import board_info
from benchmarks.leaderboard.errors import (
    AuthError,
    LeaderboardError,
    NotInitialisedError,
    NotRevealedError,
    OutdatedSchemaError,
    PhaseClosedError,
    QuotaExceededError,
    RejectedSubmissionError,
    SubmissionAbandonedError,
    UnknownSubmissionError,
    UnknownTeamError,
)
from benchmarks.leaderboard.phases import FINAL, close_phase, reveal
from benchmarks.leaderboard.selection import select_submissions, selection_status
from benchmarks.leaderboard.settings import WebSettings
from benchmarks.leaderboard.standings import compute_standings, is_metric, sort_rows
from benchmarks.leaderboard.store import PHASES, Store, utcnow
from benchmarks.leaderboard.submissions import SubmitResult, Ticket, submit, team_history, team_quota
from benchmarks.leaderboard.teams import is_host
from benchmarks.leaderboard.tokens import PREFIX, redact
from benchmarks.metrics.distances import METRICS

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
_COPY_CHUNK = 1 << 20
#: The browser session's token (HttpOnly, SameSite=Strict: never readable by scripts, never sent
#: by another site's form).
SESSION_COOKIE = "opreid_token"


class _BodyTooLarge(Exception):
    pass


def _error_response(scope: dict, status: int, message: str) -> Any:
    path = scope.get("path", "")
    if path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(f"<!doctype html><title>{status}</title><p>{message}</p>", status_code=status)


class UploadLimitMiddleware:
    """413 for a request body over the limit: by Content-Length up front, else while streaming."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"upload larger than the limit of {self.max_bytes} bytes"
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _error_response(scope, 413, too_large)(scope, receive, send)
            return
        seen, started = 0, False

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await _error_response(scope, 413, too_large)(scope, receive, send)


class TimeoutMiddleware:
    """504 when the app has not finished within the timeout (its task is cancelled)."""

    def __init__(self, app: Any, timeout_s: float):
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking_send), self.timeout_s)
        except asyncio.TimeoutError:
            log.warning(
                "request %s %s timed out after %.1f s", scope.get("method"), scope.get("path"), self.timeout_s
            )
            if not started:
                msg = (
                    f"request timed out after {self.timeout_s:g} s; a submission in progress was not recorded"
                )
                await _error_response(scope, 504, msg)(scope, receive, send)


class _RedactTokens(logging.Filter):
    """Masks tokens in the message and in each argument, keeping the record's shape.

    Formatters may rely on `args` (uvicorn's access formatter unpacks five of them), so the
    arguments are redacted in place rather than merged into the message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: the handler reports it as usual
            return True
        if PREFIX not in message:
            return True
        record.msg = _redact_arg(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.getMessage() != redact(message):  # a token split between the format and an argument
            record.msg, record.args = redact(message), ()
        return True


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value) if PREFIX in value else value
    if isinstance(value, (int, float, type(None))):
        return value
    text = str(value)  # an object that renders a token (a URL, an exception): log its redacted text
    return redact(text) if PREFIX in text else value


def install_log_redaction() -> None:
    """Defence in depth: a token pasted into a URL never reaches uvicorn's logs in clear."""
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "benchmarks.leaderboard"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactTokens) for f in logger.filters):
            logger.addFilter(_RedactTokens())


def _status_of(exc: LeaderboardError) -> int:
    return {
        RejectedSubmissionError: 422, QuotaExceededError: 429, AuthError: 401, UnknownTeamError: 404,
        UnknownSubmissionError: 404, NotInitialisedError: 503, SubmissionAbandonedError: 504,
        PhaseClosedError: 403, NotRevealedError: 403, OutdatedSchemaError: 503,
    }.get(type(exc), 400)  # fmt: skip


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _session(request: Request) -> str | None:
    """The token of the browser session, for pages (the API takes Bearer headers)."""
    return request.cookies.get(SESSION_COOKIE) or None


def _check_origin(request: Request) -> None:
    """A cookie-authenticated POST must come from this site's own pages (defence beside SameSite)."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlparse(origin).netloc != request.headers.get("host"):
        raise AuthError("this form must be sent from the leaderboard's own pages")


def _suffix(filename: str | None) -> str:
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def _ids(values: list[Any]) -> list[int]:
    try:
        return [int(str(v)) for v in values]
    except ValueError:
        raise LeaderboardError("submission ids must be whole numbers") from None


def create_app(store: Store, settings: WebSettings = WebSettings(), **submit_options: Any) -> FastAPI:
    """The ASGI app over `store`; `submit_options` pass through to `submit` (e.g. a test clock,
    which phases, selections and the reveal then follow too)."""
    app = FastAPI(title="opreid leaderboard", docs_url=None, redoc_url=None)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(TimeoutMiddleware, timeout_s=settings.request_timeout_s)
    clock = submit_options.get("clock", utcnow)

    @app.exception_handler(LeaderboardError)
    async def _leaderboard_error(request: Request, exc: LeaderboardError) -> Any:
        status = _status_of(exc)
        if request.url.path.startswith("/api/"):
            body: dict[str, Any] = {"error": str(exc)}
            if isinstance(exc, RejectedSubmissionError):
                body["problems"] = exc.problems
                if exc.quota is not None:
                    body["quota"] = exc.quota.to_json()
            if isinstance(exc, QuotaExceededError):
                body["quota"] = exc.quota
            return JSONResponse(body, status_code=status)
        return templates.TemplateResponse(
            request, "message.html", {"title": "Error", "error": exc, "info": await _info()},
            status_code=status,
        )  # fmt: skip

    async def _info() -> dict:
        return await run_in_threadpool(functools.partial(board_info, store, clock()))

    async def _is_host(token: str | None) -> bool:
        return bool(token) and await run_in_threadpool(is_host, store, token)

    def _page(request: Request, name: str, context: dict, status: int = 200) -> Any:
        context.setdefault("signed_in", _session(request) is not None)
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        return response

    def _sign_in(response: Any, request: Request, token: str) -> Any:
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def _do_submit(request: Request, token_from_form: bool) -> SubmitResult:
        form = await request.form(max_files=1, max_fields=10)
        token = (form.get("token") if token_from_form else None) or _bearer(request) or form.get("token")
        if not token and token_from_form:
            _check_origin(request)
            token = _session(request)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise RejectedSubmissionError(["no file uploaded (form field 'file')"])
        metric = str(form.get("metric") or METRICS[0])
        fd, tmp = tempfile.mkstemp(prefix="opreid-upload-", suffix=_suffix(upload.filename))
        tmp_path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := await upload.read(_COPY_CHUNK):
                    out.write(chunk)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        ticket = Ticket()
        job = functools.partial(
            submit, store, tmp_path, str(token) if token else None, method=str(form.get("method") or ""),
            url=str(form.get("url") or "") or None, description=str(form.get("description") or "") or None,
            filename=Path(upload.filename).name, similarity=str(form.get("similarity") or "") in ("1", "on", "true"),
            metric=metric, ticket=ticket, **submit_options,
        )  # fmt: skip
        task = asyncio.ensure_future(run_in_threadpool(job))
        task.add_done_callback(lambda _t: tmp_path.unlink(missing_ok=True))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if ticket.cancel():
                log.warning(
                    "submission called off: the request was cancelled or timed out before it was recorded"
                )
            raise

    # ---- JSON API ---------------------------------------------------------------------------
    @app.get("/api/info")
    async def api_info() -> dict:
        return await _info()

    @app.get("/api/standings")
    async def api_standings(request: Request, view: str = "public", phase: str | None = None) -> dict:
        if view not in ("public", "private"):
            raise LeaderboardError("view must be 'public' or 'private'")
        standings = await run_in_threadpool(
            functools.partial(
                compute_standings, store, private=view == "private", host_token=_bearer(request),
                phase=phase, clock=clock,
            )
        )  # fmt: skip
        return standings.to_json()

    @app.get("/api/teams/{name}/submissions")
    async def api_history(request: Request, name: str) -> dict:
        rows = await run_in_threadpool(team_history, store, _bearer(request), name)
        return {"team": name, "submissions": rows}

    @app.get("/api/quota")
    async def api_quota(request: Request) -> dict:
        return (await run_in_threadpool(team_quota, store, _bearer(request))).to_json()

    @app.post("/api/submit")
    async def api_submit(request: Request) -> JSONResponse:
        result = await _do_submit(request, token_from_form=False)
        return JSONResponse(result.to_json(), status_code=201)

    @app.get("/api/selection")
    async def api_selection(request: Request) -> dict:
        return await run_in_threadpool(selection_status, store, _bearer(request), clock)

    @app.post("/api/selection")
    async def api_select(request: Request) -> dict:
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await request.json()
            values = body.get("submission_ids", []) if isinstance(body, dict) else []
        else:
            values = (await request.form(max_files=0, max_fields=100)).getlist("submission_ids")
        if not isinstance(values, list):
            raise LeaderboardError("submission_ids must be a list of ids")
        return await run_in_threadpool(select_submissions, store, _bearer(request), _ids(values), clock)

    @app.post("/api/phases/{name}/close")
    async def api_close(request: Request, name: str) -> dict:
        return {"phases": await run_in_threadpool(close_phase, store, _bearer(request), name, clock)}

    @app.post("/api/reveal")
    async def api_reveal(request: Request) -> dict:
        when = await run_in_threadpool(reveal, store, _bearer(request), clock)
        return {"revealed_at": when.isoformat() + "Z"}

    # ---- pages ------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    async def page_standings(request: Request, sort: str = "rank", order: str = "", phase: str = "") -> Any:
        phase = phase if phase in PHASES else None
        standings = await run_in_threadpool(
            functools.partial(compute_standings, store, phase=phase, clock=clock)
        )
        if sort not in ("rank", "team", "submitted") and not is_metric(sort):
            sort = "rank"
        descending = order == "desc" if order in ("asc", "desc") else (is_metric(sort) or sort == "submitted")
        rows = sort_rows(standings.rows, sort, descending)
        final = None
        if standings.revealed:
            final = await run_in_threadpool(
                functools.partial(compute_standings, store, private=True, phase=FINAL, clock=clock)
            )
        return _page(
            request, "standings.html",
            {"info": await _info(), "standings": standings, "rows": rows, "sort": sort, "descending": descending,
             "final": final},
        )  # fmt: skip

    async def _team_page(request: Request, token: str | None, message: str | None = None,
                         error: Exception | None = None, status: int = 200) -> Any:  # fmt: skip
        context: dict[str, Any] = {"info": await _info(), "error": error, "message": message, "history": None}
        if token:
            try:
                quota = await run_in_threadpool(team_quota, store, token)
                history = await run_in_threadpool(team_history, store, token)
                selection = await run_in_threadpool(selection_status, store, token, clock)
            except AuthError as exc:
                context["error"] = exc
                return _page(request, "team.html", context, 401)
            columns = sorted({k for s in history for k in s["metrics"] if is_metric(k)},
                             key=lambda k: (k != "mAP", k != "mINP", len(k), k))  # fmt: skip
            context.update(history=history, columns=columns, quota=quota.describe(), selection=selection,
                           team=selection["team"], readonly=False, signed_in=True)  # fmt: skip
        return _page(request, "team.html", context, status)

    @app.get("/team", response_class=HTMLResponse)
    async def page_team(request: Request) -> Any:
        token = _session(request)
        if await _is_host(token):
            return RedirectResponse("/host", status_code=303)
        return await _team_page(request, token)

    @app.post("/team", response_class=HTMLResponse)
    async def page_team_sign_in(request: Request) -> Any:
        form = await request.form(max_files=0, max_fields=2)
        token = str(form.get("token") or "") or None
        if await _is_host(token):
            return _sign_in(RedirectResponse("/host", status_code=303), request, token)
        response = await _team_page(request, token)
        return _sign_in(response, request, token) if response.status_code == 200 and token else response

    @app.post("/team/select", response_class=HTMLResponse)
    async def page_team_select(request: Request) -> Any:
        _check_origin(request)
        token = _session(request)
        form = await request.form(max_files=0, max_fields=200)
        try:
            status = await run_in_threadpool(
                select_submissions, store, token, _ids(form.getlist("submission")), clock
            )
        except AuthError:
            raise
        except LeaderboardError as exc:
            return await _team_page(request, token, error=exc, status=_status_of(exc))
        chosen = ", ".join(str(i) for i in status["selected"]) or "none (your best public submission counts)"
        return await _team_page(request, token, message=f"selection saved: {chosen}")

    @app.get("/teams/{name}", response_class=HTMLResponse)
    async def page_team_by_name(request: Request, name: str) -> Any:
        token = _session(request)
        history = await run_in_threadpool(team_history, store, token, name)
        columns = sorted({k for s in history for k in s["metrics"] if is_metric(k)},
                         key=lambda k: (k != "mAP", k != "mINP", len(k), k))  # fmt: skip
        return _page(request, "team.html",
                     {"info": await _info(), "team": name, "history": history, "columns": columns,
                      "readonly": True, "error": None, "message": None})  # fmt: skip

    @app.get("/submit", response_class=HTMLResponse)
    async def page_submit_form(request: Request) -> Any:
        return _page(request, "submit.html", {"info": await _info(), "error": None, "metrics": METRICS})

    @app.post("/submit", response_class=HTMLResponse)
    async def page_submit(request: Request) -> Any:
        try:
            result = await _do_submit(request, token_from_form=True)
        except LeaderboardError as exc:
            return _page(request, "submit.html", {"info": await _info(), "error": exc, "metrics": METRICS},
                         _status_of(exc))  # fmt: skip
        return _page(
            request,
            "submitted.html",
            {"info": await _info(), "result": result.to_json(), "quota": result.quota.describe()},
        )

    async def _host_page(request: Request, token: str | None, error: Exception | None = None,
                         status: int = 200) -> Any:  # fmt: skip
        context: dict[str, Any] = {"info": await _info(), "standings": None, "error": error}
        if token and await _is_host(token):
            context["signed_in"] = True
            phase = request.query_params.get("phase")
            context["standings"] = await run_in_threadpool(
                functools.partial(compute_standings, store, private=True, host_token=token,
                                  phase=phase if phase in PHASES else None, clock=clock)
            )  # fmt: skip
        elif token:
            context["error"] = AuthError("this view needs the host token")
            status = 401
        return _page(request, "host.html", context, status)

    @app.get("/host", response_class=HTMLResponse)
    async def page_host_form(request: Request) -> Any:
        return await _host_page(request, _session(request))

    @app.post("/host", response_class=HTMLResponse)
    async def page_host(request: Request) -> Any:
        form = await request.form(max_files=0, max_fields=2)
        token = str(form.get("token") or "") or None
        response = await _host_page(request, token)
        return _sign_in(response, request, token) if response.status_code == 200 and token else response

    @app.post("/host/phases/{name}/close", response_class=HTMLResponse)
    async def page_host_close(request: Request, name: str) -> Any:
        _check_origin(request)
        token = _session(request)
        try:
            await run_in_threadpool(close_phase, store, token, name, clock)
        except AuthError:
            raise
        except LeaderboardError as exc:
            return await _host_page(request, token, exc, _status_of(exc))
        return RedirectResponse("/host", status_code=303)

    @app.post("/host/reveal", response_class=HTMLResponse)
    async def page_host_reveal(request: Request) -> Any:
        _check_origin(request)
        token = _session(request)
        try:
            await run_in_threadpool(reveal, store, token, clock)
        except AuthError:
            raise
        except LeaderboardError as exc:
            return await _host_page(request, token, exc, _status_of(exc))
        return RedirectResponse("/", status_code=303)

    @app.post("/signout")
    async def sign_out() -> Any:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    log.info("leaderboard web app over %s", store.display_url)
    return app
