"""The JSON API: the board, standings, histories, quota, submitting, selecting, closing and revealing."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from benchmarks.leaderboard.errors import LeaderboardError
from benchmarks.leaderboard.phases import close_phase, reveal
from benchmarks.leaderboard.selection import select_submissions, selection_status
from benchmarks.leaderboard.standings import compute_standings
from benchmarks.leaderboard.submissions import team_history, team_quota
from benchmarks.leaderboard.web.bodies import submission_ids
from benchmarks.leaderboard.web.context import Context, in_thread
from benchmarks.leaderboard.web.pages import info
from benchmarks.leaderboard.web.security import TeamBearer, bearer_token
from benchmarks.leaderboard.web.uploads import receive_submission

router = APIRouter(prefix="/api")


@router.get("/info")
async def api_info(ctx: Context) -> dict:
    return await info(ctx)


@router.get("/standings")
async def api_standings(
    request: Request, ctx: Context, view: str = "public", phase: str | None = None
) -> dict:
    if view not in ("public", "private"):
        raise LeaderboardError("view must be 'public' or 'private'")
    standings = await in_thread(compute_standings, ctx.store, private=view == "private",
                                host_token=bearer_token(request), phase=phase, clock=ctx.clock)  # fmt: skip
    return standings.to_json()


@router.get("/teams/{name}/submissions")
async def api_history(request: Request, ctx: Context, name: str) -> dict:
    rows = await in_thread(team_history, ctx.store, bearer_token(request), name)
    return {"team": name, "submissions": rows}


@router.get("/quota")
async def api_quota(request: Request, ctx: Context) -> dict:
    return (await in_thread(team_quota, ctx.store, bearer_token(request))).to_json()


@router.post("/submit")
async def api_submit(request: Request, ctx: Context) -> JSONResponse:
    result = await receive_submission(ctx, request, from_page=False)
    return JSONResponse(result.to_json(), status_code=201)


@router.get("/selection")
async def api_selection(request: Request, ctx: Context) -> dict:
    return await in_thread(selection_status, ctx.store, bearer_token(request), ctx.clock)


@router.post("/selection")
async def api_select(request: Request, ctx: Context, token: TeamBearer) -> dict:
    ids = await submission_ids(request, form_field="submission_ids")
    return await in_thread(select_submissions, ctx.store, token, ids, ctx.clock)


@router.post("/phases/{name}/close")
async def api_close(request: Request, ctx: Context, name: str) -> dict:
    return {"phases": await in_thread(close_phase, ctx.store, bearer_token(request), name, ctx.clock)}


@router.post("/reveal")
async def api_reveal(request: Request, ctx: Context) -> dict:
    when = await in_thread(reveal, ctx.store, bearer_token(request), ctx.clock)
    return {"revealed_at": when.isoformat() + "Z"}
