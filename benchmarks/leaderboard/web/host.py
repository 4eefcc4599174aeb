"""The host's pages: signing in, the private standings, closing a phase and revealing the final board."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from benchmarks.leaderboard.errors import AuthError, LeaderboardError
from benchmarks.leaderboard.phases import close_phase, reveal
from benchmarks.leaderboard.standings import compute_standings
from benchmarks.leaderboard.store import PHASES
from benchmarks.leaderboard.web.context import Context, WebContext, in_thread
from benchmarks.leaderboard.web.error_responses import for_client, status_of
from benchmarks.leaderboard.web.pages import page
from benchmarks.leaderboard.web.security import (
    SameSiteSession,
    check_origin,
    is_host_token,
    session_token,
    sign_in,
)

router = APIRouter()


async def host_page(ctx: WebContext, request: Request, token: str | None,
                    error: LeaderboardError | None = None, status: int = 200) -> Any:  # fmt: skip
    """The private standings when `token` is the host's; else the sign-in form (401 for another token)."""
    context: dict[str, Any] = {"standings": None, "error": error and for_client(error)}
    if token and await is_host_token(ctx, token):
        context["signed_in"] = True
        phase = request.query_params.get("phase")
        context["standings"] = await in_thread(
            compute_standings, ctx.store, private=True, host_token=token,
            phase=phase if phase in PHASES else None, clock=ctx.clock,
        )  # fmt: skip
    elif token:
        context["error"] = AuthError("this view needs the host token")
        status = 401
    return await page(ctx, request, "host.html", context, status)


@router.get("/host", response_class=HTMLResponse)
async def host_form(request: Request, ctx: Context) -> Any:
    return await host_page(ctx, request, session_token(request))


@router.post("/host", response_class=HTMLResponse, dependencies=[Depends(check_origin)])
async def host_sign_in(request: Request, ctx: Context) -> Any:
    form = await request.form(max_files=0, max_fields=2)
    token = str(form.get("token") or "") or None
    response = await host_page(ctx, request, token)
    return sign_in(response, request, token) if response.status_code == 200 and token else response


@router.post("/host/phases/{name}/close", response_class=HTMLResponse)
async def host_close(request: Request, ctx: Context, token: SameSiteSession, name: str) -> Any:
    try:
        await in_thread(close_phase, ctx.store, token, name, ctx.clock)
    except AuthError:
        raise
    except LeaderboardError as exc:
        return await host_page(ctx, request, token, exc, status_of(exc))
    return RedirectResponse("/host", status_code=303)


@router.post("/host/reveal", response_class=HTMLResponse)
async def host_reveal(request: Request, ctx: Context, token: SameSiteSession) -> Any:
    try:
        await in_thread(reveal, ctx.store, token, ctx.clock)
    except AuthError:
        raise
    except LeaderboardError as exc:
        return await host_page(ctx, request, token, exc, status_of(exc))
    return RedirectResponse("/", status_code=303)
