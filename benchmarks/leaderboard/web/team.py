"""A team's pages: signing in, its history, quota and selection; another team's history (host or
that team); the upload form."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from benchmarks.leaderboard.errors import AuthError, LeaderboardError
from benchmarks.leaderboard.selection import select_submissions, selection_status
from benchmarks.leaderboard.submissions import team_history, team_quota
from benchmarks.leaderboard.web.bodies import whole_numbers
from benchmarks.leaderboard.web.context import Context, WebContext, in_thread
from benchmarks.leaderboard.web.error_responses import for_client, status_of
from benchmarks.leaderboard.web.pages import metric_columns_of, page
from benchmarks.leaderboard.web.security import (
    SignedInTeam,
    check_origin,
    is_host_token,
    session_token,
    sign_in,
)
from benchmarks.leaderboard.web.uploads import receive_submission
from benchmarks.metrics.distances import METRICS

router = APIRouter()


async def team_page(ctx: WebContext, request: Request, token: str | None, message: str | None = None,
                    error: LeaderboardError | None = None, status: int = 200) -> Any:  # fmt: skip
    """The team's own page when `token` is a team's; else the sign-in form (401 for a bad token)."""
    context: dict[str, Any] = {"error": error and for_client(error), "message": message, "history": None}
    if token:
        try:
            quota = await in_thread(team_quota, ctx.store, token)
            history = await in_thread(team_history, ctx.store, token)
            selection = await in_thread(selection_status, ctx.store, token, ctx.clock)
        except AuthError as exc:
            context["error"] = exc
            return await page(ctx, request, "team.html", context, 401)
        context.update(
            history=history, columns=metric_columns_of(history), quota=quota.describe(), selection=selection,
            team=selection["team"], readonly=False, signed_in=True,
        )  # fmt: skip
    return await page(ctx, request, "team.html", context, status)


@router.get("/team", response_class=HTMLResponse)
async def own_team_page(request: Request, ctx: Context) -> Any:
    token = session_token(request)
    if await is_host_token(ctx, token):
        return RedirectResponse("/host", status_code=303)
    return await team_page(ctx, request, token)


@router.post("/team", response_class=HTMLResponse, dependencies=[Depends(check_origin)])
async def team_sign_in(request: Request, ctx: Context) -> Any:
    form = await request.form(max_files=0, max_fields=2)
    token = str(form.get("token") or "") or None
    if await is_host_token(ctx, token):
        return sign_in(RedirectResponse("/host", status_code=303), request, token)
    response = await team_page(ctx, request, token)
    return sign_in(response, request, token) if response.status_code == 200 and token else response


@router.post("/team/select", response_class=HTMLResponse)
async def team_select(request: Request, ctx: Context, token: SignedInTeam) -> Any:
    form = await request.form(max_files=0, max_fields=200)
    try:
        status = await in_thread(select_submissions, ctx.store, token,
                                 whole_numbers(form.getlist("submission")), ctx.clock)  # fmt: skip
    except AuthError:
        raise
    except LeaderboardError as exc:
        return await team_page(ctx, request, token, error=exc, status=status_of(exc))
    chosen = ", ".join(str(i) for i in status["selected"]) or "none (your best public submission counts)"
    return await team_page(ctx, request, token, message=f"selection saved: {chosen}")


@router.get("/teams/{name}", response_class=HTMLResponse)
async def team_by_name(request: Request, ctx: Context, name: str) -> Any:
    history = await in_thread(team_history, ctx.store, session_token(request), name)
    return await page(ctx, request, "team.html",
                      {"team": name, "history": history, "columns": metric_columns_of(history),
                       "readonly": True, "error": None, "message": None})  # fmt: skip


@router.get("/submit", response_class=HTMLResponse)
async def submit_form(request: Request, ctx: Context) -> Any:
    return await page(ctx, request, "submit.html", {"error": None, "metrics": METRICS})


@router.post("/submit", response_class=HTMLResponse)
async def submit_page(request: Request, ctx: Context) -> Any:
    try:
        result = await receive_submission(ctx, request, from_page=True)
    except LeaderboardError as exc:
        return await page(ctx, request, "submit.html", {"error": for_client(exc), "metrics": METRICS},
                          status_of(exc))  # fmt: skip
    return await page(ctx, request, "submitted.html",
                      {"result": result.to_json(), "quota": result.quota.describe()})  # fmt: skip
