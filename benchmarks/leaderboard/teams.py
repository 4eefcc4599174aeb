"""Teams, their tokens, and the host: who may submit and who may see host-only views."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmarks.leaderboard.errors import AuthError, TeamExistsError, UnknownTeamError
from benchmarks.leaderboard.names import check_team_name
from benchmarks.leaderboard.store import Board, Store, Submission, Team, utcnow
from benchmarks.leaderboard.tokens import hash_token, matches, new_token

log = logging.getLogger(__name__)


def require_host(board: Board, token: str | None) -> None:
    if not token or not matches(token, board.host_token_hash):
        raise AuthError("this view needs the host token (--token or OPREID_LEADERBOARD_TOKEN)")


def is_host(store: Store, token: str | None) -> bool:
    """Whether `token` is the host's (pages use it to choose a view; nothing is refused here)."""
    if not token:
        return False
    with store.session() as session:
        return matches(token, store.board(session).host_token_hash)


def authenticate_team(session: Session, token: str | None, *, lock: bool = False) -> Team:
    """The active team owning `token`; AuthError for an unknown or revoked token. `lock` holds its row
    until the transaction ends (PostgreSQL)."""
    if not token:
        raise AuthError("a team token is required")
    query = select(Team).where(Team.token_hash == hash_token(token))
    team = session.scalar(query.with_for_update() if lock else query)
    if team is None or not matches(token, team.token_hash):
        raise AuthError("unknown team token")
    if team.revoked_at is not None:
        raise AuthError(f"the token of team {team.name!r} was revoked")
    return team


def team_name_of(store: Store, token: str | None) -> str:
    """The name of the active team owning `token`; AuthError for a missing, unknown or revoked token."""
    with store.session() as session:
        store.board(session)
        return authenticate_team(session, token).name


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
    with store.locked() as session:
        require_host(store.board(session), host_token)
        same = session.scalar(select(Team.name).where(func.lower(Team.name) == name.lower()))
        if same == name:
            raise TeamExistsError(f"team {name!r} already exists")
        if same is not None:
            raise TeamExistsError(
                f"team {name!r} would look like team {same!r}, which exists: choose another name"
            )
        session.add(Team(name=name, token_hash=hash_token(token), created_at=utcnow()))
    log.info("added team %r", name)
    return token


def revoke_team(store: Store, host_token: str | None, name: str) -> None:
    """Revoke a team's token: it can no longer submit; its recorded submissions stay in the standings."""
    with store.locked() as session:
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
