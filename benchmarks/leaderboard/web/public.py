"""The public pages: a phase's standings (and the final private board once revealed), and signing out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from benchmarks.leaderboard.phases import FINAL
from benchmarks.leaderboard.standings import compute_standings, is_metric, sort_rows
from benchmarks.leaderboard.store import PHASES
from benchmarks.leaderboard.web.context import Context, in_thread
from benchmarks.leaderboard.web.pages import page
from benchmarks.leaderboard.web.security import check_origin, sign_out

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def standings_page(request: Request, ctx: Context, sort: str = "rank", order: str = "",
                         phase: str = "") -> Any:  # fmt: skip
    shown = phase if phase in PHASES else None
    standings = await in_thread(compute_standings, ctx.store, phase=shown, clock=ctx.clock)
    if sort not in ("rank", "team", "submitted") and not is_metric(sort):
        sort = "rank"
    descending = order == "desc" if order in ("asc", "desc") else (is_metric(sort) or sort == "submitted")
    rows = sort_rows(standings.rows, sort, descending)
    final = None
    if standings.revealed:
        final = await in_thread(compute_standings, ctx.store, private=True, phase=FINAL, clock=ctx.clock)
    return await page(ctx, request, "standings.html",
                      {"standings": standings, "rows": rows, "sort": sort, "descending": descending,
                       "final": final})  # fmt: skip


@router.post("/signout", dependencies=[Depends(check_origin)])
async def sign_out_page() -> Any:
    return sign_out(RedirectResponse("/", status_code=303))
