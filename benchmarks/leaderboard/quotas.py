"""Submission quotas per team: per UTC day and in total. Only recorded (valid, scored) submissions count."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmarks.leaderboard.errors import QuotaExceededError
from benchmarks.leaderboard.store import Board, Submission, Team


@dataclass(frozen=True)
class QuotaStatus:
    daily_limit: int | None
    daily_used: int
    total_limit: int | None
    total_used: int
    resets_at: datetime  # next UTC midnight (naive UTC)

    @property
    def daily_left(self) -> int | None:
        return None if self.daily_limit is None else max(self.daily_limit - self.daily_used, 0)

    @property
    def total_left(self) -> int | None:
        return None if self.total_limit is None else max(self.total_limit - self.total_used, 0)

    @property
    def exhausted(self) -> bool:
        return self.daily_left == 0 or self.total_left == 0

    def to_json(self) -> dict:
        out = asdict(self)
        out["resets_at"] = self.resets_at.isoformat() + "Z"
        out["daily_left"], out["total_left"] = self.daily_left, self.total_left
        return out

    def describe(self) -> str:
        def part(left: int | None, limit: int | None, what: str) -> str:
            return f"unlimited {what}" if limit is None else f"{left}/{limit} {what}"

        return (
            f"quota left: {part(self.daily_left, self.daily_limit, 'today')}, "
            f"{part(self.total_left, self.total_limit, 'in total')} (day resets {self.resets_at:%Y-%m-%d %H:%M} UTC)"
        )


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def quota_status(session: Session, board: Board, team: Team, now: datetime) -> QuotaStatus:
    start = day_start(now)
    total, today = session.execute(
        select(
            func.count(Submission.id), func.count(Submission.id).filter(Submission.created_at >= start)
        ).where(Submission.team_id == team.id)
    ).one()
    return QuotaStatus(
        board.daily_quota, int(today), board.total_quota, int(total), start + timedelta(days=1)
    )


def require_quota(session: Session, board: Board, team: Team, now: datetime) -> QuotaStatus:
    """The team's status; raises QuotaExceededError when no submission is left."""
    status = quota_status(session, board, team, now)
    if status.exhausted:
        which = "total" if status.total_left == 0 else "daily"
        raise QuotaExceededError(
            f"team {team.name!r} has used its {which} quota; {status.describe()}", status.to_json()
        )
    return status
