"""Rendering a page: the board's public description, the template, and no caching."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request

from benchmarks.leaderboard.board import board_info
from benchmarks.leaderboard.errors import LeaderboardError
from benchmarks.leaderboard.standings import is_metric
from benchmarks.leaderboard.web.context import WebContext, in_thread
from benchmarks.leaderboard.web.security import session_token

log = logging.getLogger(__name__)


async def info(ctx: WebContext) -> dict:
    return await in_thread(board_info, ctx.store, ctx.clock())


async def page(
    ctx: WebContext, request: Request, name: str, context: dict, status: int = 200, *, is_error: bool = False
) -> Any:
    """The template `name` with `context` and the board's description (an error page renders without
    it when the database cannot give it)."""
    if "info" not in context:
        try:
            context["info"] = await info(ctx)
        except LeaderboardError as exc:
            if not is_error:
                raise
            log.warning("error page rendered without the board's description: %s", exc)
            context["info"] = None
    context.setdefault("signed_in", session_token(request) is not None)
    response = ctx.templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def metric_columns_of(history: list[dict]) -> list[str]:
    """The metric columns of a team's history: mAP, mINP, then rank-k by k."""
    return sorted({k for s in history for k in s["metrics"] if is_metric(k)},
                  key=lambda k: (k != "mAP", k != "mINP", len(k), k))  # fmt: skip
