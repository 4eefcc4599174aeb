"""ASGI middleware that bounds every request: its body's size and its duration."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse

log = logging.getLogger(__name__)

#: The routes whose body is a submission's upload (multipart), allowed up to `max_upload_bytes`.
UPLOAD_PATHS = frozenset({"/api/submit", "/submit"})


class _BodyTooLarge(Exception):
    pass


def plain_error(scope: dict, status: int, message: str) -> Any:
    """An error answered before the app runs: JSON under /api/, else a bare page."""
    if scope.get("path", "").startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    text = html.escape(message)
    return HTMLResponse(f"<!doctype html><title>{status}</title><p>{text}</p>", status_code=status)


def body_limit(max_upload_bytes: int, max_body_bytes: int) -> Callable[[dict], tuple[int, str]]:
    """The limit of a request's body and what to call it: uploads get the upload limit, every other
    body (JSON, sign-in and selection forms) the far smaller one."""

    def limit(scope: dict) -> tuple[int, str]:
        if scope.get("path") in UPLOAD_PATHS:
            return max_upload_bytes, "upload"
        return max_body_bytes, "request body"

    return limit


class BodyLimitMiddleware:
    """413 for a request body over its limit: by Content-Length up front, else while streaming."""

    def __init__(self, app: Any, limit: Callable[[dict], tuple[int, str]]):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, what = self.limit(scope)
        too_large = f"{what} larger than the limit of {max_bytes} bytes"
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await plain_error(scope, 413, too_large)(scope, receive, send)
            return
        seen, started = 0, False

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
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
            await plain_error(scope, 413, too_large)(scope, receive, send)


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
                await plain_error(scope, 504, msg)(scope, receive, send)
