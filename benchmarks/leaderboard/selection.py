"""Selecting submissions for the private board (Kaggle's "final submissions").

Each team may select up to the board's limit of its submissions in the phase open now; its private
score in a track is then the best private score among the selected ones of that track. A team that
selects nothing in a track is judged on its best public submission there. Selections change only
while the phase is open: they freeze with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import select

from benchmarks.leaderboard.errors import PhaseClosedError, SelectionError
from benchmarks.leaderboard.phases import describe_phases, load_phases, open_phase, shown_phase
from benchmarks.leaderboard.standings import counted_submissions, round_public, track_order
from benchmarks.leaderboard.store import Board, Store, Submission, Team, utcnow
from benchmarks.leaderboard.teams import authenticate_team

log = logging.getLogger(__name__)


def counted_ids(subs: Iterable[Submission], metric: str) -> set[int]:
    return {s.id for s in counted_submissions(list(subs), metric)}


def _status(session, board: Board, team: Team, phase: str, frozen: bool) -> dict:
    subs = [
        s
        for s in session.scalars(select(Submission).where(Submission.team_id == team.id))
        if s.phase == phase
    ]
    counted = sorted(counted_submissions(subs, board.sort_metric), key=lambda s: (track_order(s.track), s.id))
    return {
        "team": team.name,
        "phase": phase,
        "limit": board.selection_limit,
        "frozen": frozen,
        "selected": sorted(s.id for s in subs if s.selected and not s.baseline),
        "counts": [
            {
                "submission_id": s.id,
                "track": s.track,
                "method": s.method,
                "reason": "selected" if s.selected else "best public (default)",
                "metrics": round_public(s.public_metrics),
            }
            for s in counted
        ],  # fmt: skip
    }


def selection_status(store: Store, token: str | None, clock: Callable[[], datetime] = utcnow) -> dict:
    """What counts for the team's private board in the phase open now (else the latest one)."""
    with store.session() as session:
        board = store.board(session)
        team = authenticate_team(session, token)
        phases = load_phases(session)
        now = clock()
        current = open_phase(phases, now)
        phase = current.name if current else shown_phase(phases, now)
        return _status(session, board, team, phase, frozen=current is None)


def select_submissions(
    store: Store, token: str | None, submission_ids: Iterable[int], clock: Callable[[], datetime] = utcnow
) -> dict:
    """Replace the team's selection in the open phase by `submission_ids` (none: back to the default)."""
    ids = sorted(set(int(i) for i in submission_ids))
    with store.locked() as session:
        board = store.board(session)
        team = authenticate_team(session, token, lock=True)
        phases = load_phases(session)
        phase = open_phase(phases, clock())
        if phase is None:
            raise PhaseClosedError(f"selections are frozen: no phase is open ({describe_phases(phases)})")
        if len(ids) > board.selection_limit:
            raise SelectionError(
                f"{len(ids)} submissions selected; a team may select at most {board.selection_limit}"
            )
        mine = {s.id: s for s in session.scalars(select(Submission).where(Submission.team_id == team.id))}
        for sid in ids:
            sub = mine.get(sid)
            if sub is None:
                raise SelectionError(f"submission {sid} is not one of team {team.name!r}'s")
            if sub.baseline:
                raise SelectionError(f"submission {sid} is a baseline row: it is not ranked")
            if sub.phase != phase.name:
                raise SelectionError(
                    f"submission {sid} was made in the {sub.phase} phase; selections are for the "
                    f"{phase.name} phase, open now"
                )
        for sub in mine.values():
            if sub.phase == phase.name:
                sub.selected = sub.id in ids
        session.flush()
        log.info(
            "team %r selected %s for the %s phase's private board", team.name, ids or "nothing", phase.name
        )
        return _status(session, board, team, phase.name, frozen=False)


def update_selection(
    store: Store,
    token: str | None,
    submission_ids: Iterable[int] = (),
    *,
    clear: bool = False,
    clock: Callable[[], datetime] = utcnow,
) -> dict:
    """`opreid leaderboard select`: select `submission_ids`, or clear the selection, or (neither) show it."""
    ids = list(submission_ids)
    if ids and clear:
        raise SelectionError("give submission ids or --clear, not both")
    if ids or clear:
        return select_submissions(store, token, ids, clock)
    return selection_status(store, token, clock)
