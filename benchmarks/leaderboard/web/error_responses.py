"""Leaderboard errors as HTTP answers: a status per error type, JSON under /api/, a page elsewhere.

A fault on the host's side (HostSideError: the database, the dataset) names server paths and URLs:
the client gets a generic 503 and the host the full message in the server log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from benchmarks.leaderboard.errors import (
    AuthError,
    HostSideError,
    LeaderboardError,
    NotRevealedError,
    PhaseClosedError,
    QuotaExceededError,
    RejectedSubmissionError,
    ScoringPendingError,
    SubmissionAbandonedError,
    UnknownSubmissionError,
    UnknownTeamError,
)
from benchmarks.leaderboard.web.pages import page

log = logging.getLogger(__name__)

HOST_SIDE_MESSAGE = (
    "the leaderboard cannot answer now because of a problem on the host's side (recorded in the "
    "server's log); try again later"
)
#: Checked in order: the first class an error is an instance of gives its status; else 400.
_STATUS: tuple[tuple[type[LeaderboardError], int], ...] = (
    (HostSideError, 503), (RejectedSubmissionError, 422), (QuotaExceededError, 429), (AuthError, 401),
    (UnknownTeamError, 404), (UnknownSubmissionError, 404), (SubmissionAbandonedError, 504),
    (PhaseClosedError, 403), (ScoringPendingError, 409), (NotRevealedError, 403),
)  # fmt: skip


def status_of(exc: LeaderboardError) -> int:
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


def for_client(exc: LeaderboardError) -> LeaderboardError:
    """The error a client may see: a host-side fault becomes the generic message (and is logged)."""
    if isinstance(exc, HostSideError):
        log.error("host-side failure answered as 503: %s", exc)
        return HostSideError(HOST_SIDE_MESSAGE)
    return exc


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LeaderboardError)
    async def leaderboard_error(request: Request, exc: LeaderboardError) -> Any:
        status, shown = status_of(exc), for_client(exc)
        if request.url.path.startswith("/api/"):
            body: dict[str, Any] = {"error": str(shown)}
            if isinstance(shown, RejectedSubmissionError):
                body["problems"] = shown.problems
                if shown.quota is not None:
                    body["quota"] = shown.quota.to_json()
            if isinstance(shown, QuotaExceededError):
                body["quota"] = shown.quota
            return JSONResponse(body, status_code=status)
        ctx = request.app.state.leaderboard
        return await page(
            ctx, request, "message.html", {"title": "Error", "error": shown}, status, is_error=True
        )
