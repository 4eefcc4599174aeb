"""The leaderboard's web page and JSON API (FastAPI, server-rendered Jinja2 templates).

Pages: `/` standings (sortable columns), `/teams/{name}` a team's history, `/submit` the upload
form, `/host` the private view after entering the host token. API: `GET /api/info`,
`GET /api/standings` (`?view=private` with `Authorization: Bearer HOST_TOKEN`),
`GET /api/teams/{name}/submissions` (public: public scores only), `GET /api/quota` and
`POST /api/submit` (multipart `file`, `method`, `url`, `description`, `similarity`; team token
as a Bearer header or a `token` field). Tokens travel in headers or form bodies, never in URLs,
so access logs cannot record them.

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

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from benchmarks.leaderboard.board import board_info
from benchmarks.leaderboard.errors import (
    AuthError,
    LeaderboardError,
    NotInitialisedError,
    QuotaExceededError,
    RejectedSubmissionError,
    SubmissionAbandonedError,
    UnknownSubmissionError,
    UnknownTeamError,
)
from benchmarks.leaderboard.settings import WebSettings
from benchmarks.leaderboard.standings import compute_standings, is_metric, sort_rows
from benchmarks.leaderboard.store import Store
from benchmarks.leaderboard.submissions import SubmitResult, Ticket, submit, team_history, team_quota
from benchmarks.leaderboard.tokens import PREFIX, redact

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
_COPY_CHUNK = 1 << 20


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
    }.get(type(exc), 400)  # fmt: skip


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _suffix(filename: str | None) -> str:
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def create_app(store: Store, settings: WebSettings = WebSettings(), **submit_options: Any) -> FastAPI:
    """The ASGI app over `store`; `submit_options` pass through to `submit` (e.g. a test clock)."""
    app = FastAPI(title="opreid leaderboard", docs_url=None, redoc_url=None)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(TimeoutMiddleware, timeout_s=settings.request_timeout_s)

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
            request, "message.html", {"title": "Error", "error": exc}, status_code=status
        )

    async def _info() -> dict:
        return await run_in_threadpool(board_info, store)

    async def _do_submit(request: Request, token_from_form: bool) -> SubmitResult:
        form = await request.form(max_files=1, max_fields=10)
        token = (form.get("token") if token_from_form else None) or _bearer(request) or form.get("token")
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise RejectedSubmissionError(["no file uploaded (form field 'file')"])
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
            ticket=ticket, **submit_options,
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
    async def api_standings(request: Request, view: str = "public") -> dict:
        if view not in ("public", "private"):
            raise LeaderboardError("view must be 'public' or 'private'")
        standings = await run_in_threadpool(
            functools.partial(
                compute_standings, store, private=view == "private", host_token=_bearer(request)
            )
        )
        return standings.to_json()

    @app.get("/api/teams/{name}/submissions")
    async def api_history(name: str) -> dict:
        return {"team": name, "submissions": await run_in_threadpool(team_history, store, name)}

    @app.get("/api/quota")
    async def api_quota(request: Request) -> dict:
        return (await run_in_threadpool(team_quota, store, _bearer(request))).to_json()

    @app.post("/api/submit")
    async def api_submit(request: Request) -> JSONResponse:
        result = await _do_submit(request, token_from_form=False)
        return JSONResponse(result.to_json(), status_code=201)

    # ---- pages ------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    async def page_standings(request: Request, sort: str = "rank", order: str = "") -> Any:
        standings = await run_in_threadpool(compute_standings, store)
        if sort not in ("rank", "team", "submitted") and not is_metric(sort):
            sort = "rank"
        descending = order == "desc" if order in ("asc", "desc") else (is_metric(sort) or sort == "submitted")
        rows = sort_rows(standings.rows, sort, descending)
        return templates.TemplateResponse(
            request, "standings.html",
            {"info": await _info(), "standings": standings, "rows": rows, "sort": sort, "descending": descending},
        )  # fmt: skip

    @app.get("/teams/{name}", response_class=HTMLResponse)
    async def page_team(request: Request, name: str) -> Any:
        history = await run_in_threadpool(team_history, store, name)
        columns = sorted(
            {k for s in history for k in s["metrics"] if is_metric(k)},
            key=lambda k: (k != "mAP", k != "mINP", len(k), k),
        )
        return templates.TemplateResponse(
            request,
            "team.html",
            {"info": await _info(), "team": name, "history": history, "columns": columns},
        )

    @app.get("/submit", response_class=HTMLResponse)
    async def page_submit_form(request: Request) -> Any:
        return templates.TemplateResponse(request, "submit.html", {"info": await _info(), "error": None})

    @app.post("/submit", response_class=HTMLResponse)
    async def page_submit(request: Request) -> Any:
        try:
            result = await _do_submit(request, token_from_form=True)
        except LeaderboardError as exc:
            return templates.TemplateResponse(
                request, "submit.html", {"info": await _info(), "error": exc}, status_code=_status_of(exc)
            )
        return templates.TemplateResponse(
            request,
            "submitted.html",
            {"info": await _info(), "result": result.to_json(), "quota": result.quota.describe()},
        )

    @app.get("/host", response_class=HTMLResponse)
    async def page_host_form(request: Request) -> Any:
        return templates.TemplateResponse(
            request, "host.html", {"info": await _info(), "standings": None, "error": None}
        )

    @app.post("/host", response_class=HTMLResponse)
    async def page_host(request: Request) -> Any:
        form = await request.form(max_files=0, max_fields=2)
        token = str(form.get("token") or "") or None
        try:
            standings = await run_in_threadpool(
                functools.partial(compute_standings, store, private=True, host_token=token)
            )
        except AuthError as exc:
            return templates.TemplateResponse(
                request,
                "host.html",
                {"info": await _info(), "standings": None, "error": exc},
                status_code=401,
            )
        return templates.TemplateResponse(
            request, "host.html", {"info": await _info(), "standings": standings, "error": None}
        )

    log.info("leaderboard web app over %s", store.display_url)
    return app
