"""Teams, their tokens, and the host: who may submit and who may see host-only views."""

from __future__ import annotations

import logging
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmarks.leaderboard.errors import AuthError, TeamExistsError, UnknownTeamError
from benchmarks.leaderboard.store import Board, Store, Submission, Team, utcnow
from benchmarks.leaderboard.tokens import hash_token, matches, new_token

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def check_team_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UnknownTeamError(
            f"bad team name {name!r}: 1-64 letters, digits, space, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def require_host(board: Board, token: str | None) -> None:
    if not token or not matches(token, board.host_token_hash):
        raise AuthError("this view needs the host token (--token or OPREID_LEADERBOARD_TOKEN)")


def is_host(store: Store, token: str | None) -> bool:
    """Whether `token` is the host's (pages use it to choose a view; nothing is refused here)."""
    if not token:
        return False
    with store.session() as session:
        return matches(token, store.board(session).host_token_hash)


def authenticate_team(session: Session, token: str | None) -> Team:
    """The active team owning `token`; AuthError for an unknown or revoked token."""
    if not token:
        raise AuthError("a team token is required")
    team = session.scalar(select(Team).where(Team.token_hash == hash_token(token)))
    if team is None or not matches(token, team.token_hash):
        raise AuthError("unknown team token")
    if team.revoked_at is not None:
        raise AuthError(f"the token of team {team.name!r} was revoked")
    return team


def authorize_team_view(session: Session, board: Board, token: str | None, name: str | None) -> Team:
    """The team whose history `token` may read: its own (team token), or `name` (host token)."""
    if not token:
        raise AuthError(
            "a team's history is shown to that team (its token) and to the host only; give a token"
        )
    if matches(token, board.host_token_hash):
        if not name:
            raise UnknownTeamError("which team? the host token reads any team's history: name the team")
        team = session.scalar(select(Team).where(Team.name == name))
        if team is None:
            raise UnknownTeamError(f"no team {name!r}")
        return team
    team = authenticate_team(session, token)
    if name and name != team.name:
        raise AuthError("a team's history is shown to that team (its token) and to the host only")
    return team


def add_team(store: Store, host_token: str | None, name: str) -> str:
    """Create a team; returns its token (shown once, stored hashed)."""
    check_team_name(name)
    token = new_token()
    with store.session() as session:
        require_host(store.board(session), host_token)
        if session.scalar(select(Team).where(Team.name == name)) is not None:
            raise TeamExistsError(f"team {name!r} already exists")
        session.add(Team(name=name, token_hash=hash_token(token), created_at=utcnow()))
    log.info("added team %r", name)
    return token


def revoke_team(store: Store, host_token: str | None, name: str) -> None:
    """Revoke a team's token: it can no longer submit; its recorded submissions stay in the standings."""
    with store.session() as session:
        require_host(store.board(session), host_token)
        team = session.scalar(select(Team).where(Team.name == name))
        if team is None:
            raise UnknownTeamError(f"no team {name!r}")
        if team.revoked_at is None:
            team.revoked_at = utcnow()
    log.info("revoked team %r", name)


def list_teams(store: Store, host_token: str | None) -> list[dict]:
    with store.session() as session:
        require_host(store.board(session), host_token)
        counts = dict(
            session.execute(select(Submission.team_id, func.count()).group_by(Submission.team_id)).all()
        )
        return [
            {
                "name": t.name,
                "created_at": t.created_at.isoformat() + "Z",
                "revoked": t.revoked_at is not None,
                "submissions": int(counts.get(t.id, 0)),
            }
            for t in session.scalars(select(Team).order_by(Team.name))
        ]
