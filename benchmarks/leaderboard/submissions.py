"""Submitting: authenticate, validate and score with `benchmarks.scoring`, then record under quota.

Order of work, chosen so that failures never burn quota:
1. receipt, in one write transaction: the token, the phase open at receipt (refused outside every
   phase, with the phases' dates), a quick quota check (refuse early, before any scoring), and a
   `pending_submission` row that the reveal waits for, until the scoring deadline;
2. scoring outside any transaction (an invalid file raises RejectedSubmissionError: nothing written);
3. one transaction that locks the board and the team (BEGIN IMMEDIATE on SQLite, SELECT ... FOR
   UPDATE on PostgreSQL), recounts the quota and inserts in the phase of receipt, so parallel
   submitters never exceed it; a final-phase submission whose deadline passed and whose board has
   been revealed meanwhile is called off instead (nothing recorded, no quota used).
The pending row goes in step 3, or as soon as the submission fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from sqlalchemy import delete, select

from benchmarks.leaderboard.board import private_mask
from benchmarks.leaderboard.errors import (
    AuthError,
    DatabaseUnavailableError,
    DatasetUnscorableError,
    LeaderboardError,
    PhaseClosedError,
    RejectedSubmissionError,
    SubmissionAbandonedError,
    UnknownSubmissionError,
)
from benchmarks.leaderboard.names import check_text
from benchmarks.leaderboard.phases import FINAL, require_open_phase
from benchmarks.leaderboard.quotas import QuotaStatus, quota_status, require_quota
from benchmarks.leaderboard.settings import SCORING_DEADLINE_S
from benchmarks.leaderboard.standings import round_public
from benchmarks.leaderboard.store import PendingSubmission, Store, Submission, Team, track_name, utcnow
from benchmarks.leaderboard.teams import authenticate_team, authorize_team_view, require_host
from benchmarks.metrics.distances import METRICS

log = logging.getLogger(__name__)

MAX_METHOD = 200
MAX_DESCRIPTION = 5000


class Ticket:
    """Lets a caller that stopped waiting (a request timeout) call off a submission before it commits.

    `claim()` (the worker, just before inserting) and `cancel()` (the waiter) race under a lock:
    exactly one wins, so a timed-out request either recorded nothing or is told it was recorded.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "open"

    def claim(self) -> bool:
        with self._lock:
            if self._state == "open":
                self._state = "committing"
            return self._state == "committing"

    def cancel(self) -> bool:
        with self._lock:
            if self._state == "open":
                self._state = "cancelled"
            return self._state == "cancelled"


@dataclass(frozen=True)
class SubmitResult:
    submission_id: int
    team: str
    method: str
    file_sha256: str
    created_at: datetime
    public_metrics: dict
    quota: QuotaStatus
    phase: str = ""
    kind: str = ""
    truncated_at: int | None = None

    @property
    def track(self) -> str:
        return track_name(self.truncated_at)

    def to_json(self) -> dict:
        """What the submitting team sees: public metrics only, and the quota left."""
        return {
            "submission_id": self.submission_id, "team": self.team, "method": self.method,
            "file_sha256": self.file_sha256, "submitted_at": self.created_at.isoformat() + "Z",
            "metrics": round_public(self.public_metrics), "quota": self.quota.to_json(),
            "phase": self.phase, "kind": self.kind, "truncated_at": self.truncated_at, "track": self.track,
        }  # fmt: skip


def _clean_metadata(
    method: str, url: str | None, description: str | None
) -> tuple[str, str | None, str | None]:
    method = check_text("the method name", (method or "").strip())
    if not method or len(method) > MAX_METHOD:
        raise LeaderboardError(f"method name must be 1-{MAX_METHOD} characters")
    url = (url or "").strip() or None
    if url is not None:
        parsed = urlparse(url)
        if (parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > 2000
                or any(c.isspace() for c in url)):  # fmt: skip
            raise LeaderboardError("url must be an http(s) address")
        check_text("the url", url)
    description = (description or "").replace("\r\n", "\n").strip() or None  # a form's textarea sends CRLF
    if description is not None:
        check_text("the description", description, multiline=True)
        if len(description) > MAX_DESCRIPTION:
            raise LeaderboardError(f"description must be at most {MAX_DESCRIPTION} characters")
    return method, url, description


def _plain(value: Any) -> Any:
    """JSON-safe scalar: numpy scalars unwrapped, NaN/inf as null (PostgreSQL json refuses NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (int, float, str, bool)) or value is None else None


def _scalars(metrics: dict) -> dict:
    return {k: _plain(v) for k, v in metrics.items() if not isinstance(v, (dict, list, tuple))}


def manifests_digest(value: Any) -> str:
    """One sha256 for the scorer's `manifests_sha256` (a digest, or a mapping file -> digest)."""
    if isinstance(value, str):
        return value
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def score_file(
    path: Path,
    data_dir: Path,
    private: np.ndarray,
    *,
    similarity: bool = False,
    metric: str = METRICS[0],
    shown_name: str | None = None,
) -> dict:
    """Score one file on all queries and on both hidden subsets (the scorer's `to_json()`).

    Problems name the file as `shown_name` (the uploaded name), never by its path on the server.
    """
    from benchmarks.errors import DatasetError, InvalidSubmissionError
    from benchmarks.scoring import score_submission

    try:
        report = score_submission(
            path, data_dir, similarity=similarity, metric=metric,
            query_subsets={"public": ~private, "private": private},
        )  # fmt: skip
    except InvalidSubmissionError as exc:
        problems = list(getattr(exc, "problems", None) or [str(exc)])
        if shown_name is not None:
            problems = [p.replace(str(path), shown_name) for p in problems]
        raise RejectedSubmissionError(problems) from None
    except DatasetError as exc:
        raise DatasetUnscorableError(
            f"the leaderboard's dataset cannot be scored (host side): {exc}"
        ) from None
    return report.to_json()


def _receive(
    store: Store, token: str | None, received: datetime, deadline_s: float
) -> tuple[int, int, str, str, QuotaStatus]:
    """Step 1: the team, the phase open at receipt, the quota so far, and a pending row that the reveal
    waits for. Returns (pending id, team id, team name, phase, quota)."""
    store.ensure_pending_table()
    with store.locked() as session:
        board = store.board(session, lock=True)
        team = authenticate_team(session, token)
        phase = require_open_phase(session, received).name
        if phase == FINAL and board.revealed_at is not None:
            raise PhaseClosedError("the final phase has closed and its private board has been revealed")
        before = require_quota(session, board, team, received)
        pending = PendingSubmission(team_id=team.id, phase=phase, received_at=received,
                                    expires_at=received + timedelta(seconds=deadline_s))  # fmt: skip
        session.add(pending)
        session.flush()
        return pending.id, team.id, team.name, phase, before


def _forget(store: Store, pending_id: int) -> None:
    """Drop a pending row after a failure (best effort: a row left behind expires at its deadline)."""
    try:
        with store.locked() as session:
            session.execute(delete(PendingSubmission).where(PendingSubmission.id == pending_id))
    except DatabaseUnavailableError as exc:
        log.warning("could not drop pending submission %d (it expires at its deadline): %s", pending_id, exc)


def submit(
    store: Store,
    path: str | Path,
    token: str | None,
    *,
    method: str,
    url: str | None = None,
    description: str | None = None,
    filename: str | None = None,
    similarity: bool = False,
    metric: str = METRICS[0],
    clock: Callable[[], datetime] = utcnow,
    ticket: Ticket | None = None,
    scoring_deadline_s: float = SCORING_DEADLINE_S,
) -> SubmitResult:
    """Validate, score and record one submission for the team owning `token`, in the phase open when
    it is received.

    `metric` is the distance of a features (.npz) submission; it is recorded with it. The reveal
    waits up to `scoring_deadline_s` for its scoring (a final-phase submission).
    """
    path = Path(path)
    method, url, description = _clean_metadata(method, url, description)
    if metric not in METRICS:
        raise LeaderboardError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not path.is_file():
        raise RejectedSubmissionError([f"no such file: {filename or path}"])
    received = clock()
    pending_id, team_id, team_name, phase, before = _receive(store, token, received, scoring_deadline_s)
    recorded = False
    try:
        data_dir, private = private_mask(store)
        try:
            report = score_file(path, data_dir, private, similarity=similarity, metric=metric,
                                shown_name=filename or path.name)  # fmt: skip
        except RejectedSubmissionError as exc:
            exc.quota = before
            raise
        subsets = report.get("subsets") or {}
        if "public" not in subsets or "private" not in subsets:
            raise LeaderboardError("the scorer returned no public/private subset metrics")
        size = path.stat().st_size
        kind = str(report.get("format") or "")
        truncated_at = report.get("truncated_at") if kind == "ranked" else None
        with store.locked() as session:
            board = store.board(session, lock=True)
            team = session.scalar(select(Team).where(Team.id == team_id).with_for_update())
            if team is None or team.revoked_at is not None:
                raise AuthError(f"the token of team {team_name!r} was revoked")
            held = session.get(PendingSubmission, pending_id)
            if held is None or (phase == FINAL and board.revealed_at is not None):
                raise SubmissionAbandonedError(
                    "scoring outlived its deadline and the final board was revealed meanwhile; "
                    "nothing was recorded and no quota was used"
                )
            now = clock()
            status = require_quota(session, board, team, now)
            if ticket is not None and not ticket.claim():
                raise SubmissionAbandonedError("scoring outlived the request timeout; nothing was recorded")
            sub = Submission(
                team_id=team.id, method=method, url=url, description=description,
                filename=(filename or path.name)[:255], file_size=size,
                file_sha256=str(report.get("submission_sha256", "")), scorer_version=str(report.get("scorer_version", "")),
                manifests_sha256=manifests_digest(report.get("manifests_sha256", "")), received_at=received, created_at=now,
                baseline=False, public_metrics=_scalars(subsets["public"]),
                private_metrics=_scalars(subsets["private"]), all_metrics=_scalars(report),
                phase=phase, kind=kind, truncated_at=None if truncated_at is None else int(truncated_at),
                metric=metric if kind == "features" else None, selected=False,
            )  # fmt: skip
            session.add(sub)
            session.delete(held)
            session.flush()
            sub_id, public = sub.id, dict(sub.public_metrics)
        recorded = True
    finally:
        if not recorded:
            _forget(store, pending_id)
    status = replace(status, daily_used=status.daily_used + 1, total_used=status.total_used + 1)
    log.info("team %r: recorded submission %d (%s, %s phase)", team_name, sub_id, method, phase)
    return SubmitResult(
        sub_id, team_name, method, str(report.get("submission_sha256", "")), now, public, status,
        phase=phase, kind=kind, truncated_at=None if truncated_at is None else int(truncated_at),
    )  # fmt: skip


def team_quota(store: Store, token: str | None, clock: Callable[[], datetime] = utcnow) -> QuotaStatus:
    with store.session() as session:
        board = store.board(session)
        return quota_status(session, board, authenticate_team(session, token), clock())


def set_baseline(store: Store, host_token: str | None, submission_id: int, flag: bool = True) -> None:
    """Host only: show a submission as a baseline row (unranked), e.g. the reference model."""
    with store.locked() as session:
        require_host(store.board(session), host_token)
        sub = session.get(Submission, submission_id)
        if sub is None:
            raise UnknownSubmissionError(f"no submission {submission_id}")
        sub.baseline = flag


def public_submission(sub: Submission, team: str) -> dict:
    return {
        "id": sub.id, "team": team, "method": sub.method, "url": sub.url, "description": sub.description,
        "submitted_at": sub.created_at.isoformat() + "Z", "baseline": sub.baseline,
        "file_sha256": sub.file_sha256, "scorer_version": sub.scorer_version,
        "manifests_sha256": sub.manifests_sha256, "metrics": round_public(sub.public_metrics),
        "phase": sub.phase, "kind": sub.kind, "truncated_at": sub.truncated_at, "track": sub.track,
        "metric": sub.metric, "selected": bool(sub.selected),
    }  # fmt: skip


def team_history(store: Store, token: str | None, name: str | None = None) -> list[dict]:
    """A team's recorded submissions, newest first, with public fields and whether each counts for
    the private board. Shown to that team (its token; `name` may be omitted) and to the host only."""
    from benchmarks.leaderboard.selection import counted_ids

    with store.session() as session:
        board = store.board(session)
        team = authorize_team_view(session, board, token, name)
        subs = session.scalars(
            select(Submission)
            .where(Submission.team_id == team.id)
            .order_by(Submission.created_at.desc(), Submission.id.desc())
        ).all()
        counted = counted_ids(subs, board.sort_metric)
        return [{**public_submission(s, team.name), "counts": s.id in counted} for s in subs]
