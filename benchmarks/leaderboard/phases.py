"""Phases: the development and final windows in which submissions are accepted, and the reveal.

As on Codabench and EvalAI, a phase is a window with a start and an end (UTC); a submission outside
every open window is refused with the phases' dates, and each phase has its own standings. The
development phase is open from the start unless given a start; the final phase is unscheduled
until the host sets it. A window without an end stays open until the host closes it.

As on Kaggle, the private board (scores on the hidden private queries) stays with the host until
the final phase has closed and the host reveals it; from then on anyone may read the final
phase's private standings. Selections for the private board freeze when a phase closes.

A submission's phase is decided when it is received, so one received before the final phase ends
is recorded in the final phase even when its scoring ends after. The reveal therefore waits for
(or refuses while) such submissions are being scored, until their scoring deadline: the revealed
board never gains a row afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from benchmarks.leaderboard.errors import (
    AuthError,
    LeaderboardError,
    NotRevealedError,
    PhaseClosedError,
    ScoringPendingError,
)
from benchmarks.leaderboard.store import PHASES, Board, PendingSubmission, Phase, Store, utcnow
from benchmarks.leaderboard.teams import require_host
from benchmarks.leaderboard.tokens import matches

log = logging.getLogger(__name__)

FINAL = PHASES[-1]
_TIME = "%Y-%m-%d %H:%M"


def _when(value: datetime | None, none: str) -> str:
    return none if value is None else f"{value:{_TIME}} UTC"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"


@dataclass(frozen=True)
class PhaseWindow:
    name: str
    starts_at: datetime | None
    ends_at: datetime | None

    @property
    def scheduled(self) -> bool:
        """Development always is (open from the start when it has no start); final needs a start."""
        return self.starts_at is not None or self.name != FINAL

    def state(self, now: datetime) -> str:
        """`unscheduled`, `upcoming`, `open` or `closed`."""
        if not self.scheduled:
            return "unscheduled"
        if self.starts_at is not None and now < self.starts_at:
            return "upcoming"
        if self.ends_at is not None and now >= self.ends_at:
            return "closed"
        return "open"

    def describe(self) -> str:
        if not self.scheduled:
            return f"{self.name}: not scheduled yet"
        start = _when(self.starts_at, "from the start")
        return f"{self.name}: {start} - {_when(self.ends_at, 'until the host closes it')}"

    def to_json(self, now: datetime) -> dict:
        return {"name": self.name, "starts_at": _iso(self.starts_at), "ends_at": _iso(self.ends_at),
                "state": self.state(now)}  # fmt: skip


def load_phases(session: Session) -> list[PhaseWindow]:
    rows = {p.name: p for p in session.scalars(select(Phase))}
    return [
        PhaseWindow(name, rows[name].starts_at, rows[name].ends_at)
        if name in rows
        else PhaseWindow(name, None, None)
        for name in PHASES
    ]


def describe_phases(phases: list[PhaseWindow]) -> str:
    return "; ".join(p.describe() for p in phases)


def open_phase(phases: list[PhaseWindow], now: datetime) -> PhaseWindow | None:
    return next((p for p in phases if p.state(now) == "open"), None)


def require_open_phase(session: Session, now: datetime) -> PhaseWindow:
    """The phase open at `now`; PhaseClosedError naming every phase's dates when none is."""
    phases = load_phases(session)
    phase = open_phase(phases, now)
    if phase is None:
        raise PhaseClosedError(
            f"submissions are closed at {now:{_TIME}} UTC (no phase is open): {describe_phases(phases)}"
        )
    return phase


def shown_phase(phases: list[PhaseWindow], now: datetime) -> str:
    """The phase a page shows by default: the open one, else the latest that has begun."""
    current = open_phase(phases, now)
    if current is not None:
        return current.name
    begun = [p for p in phases if p.state(now) == "closed"]
    return begun[-1].name if begun else PHASES[0]


def check_phase_name(name: str) -> str:
    if name not in PHASES:
        raise LeaderboardError(f"unknown phase {name!r}: use {' or '.join(PHASES)}")
    return name


def _check_order(phases: dict[str, PhaseWindow]) -> None:
    for p in phases.values():
        if p.starts_at is not None and p.ends_at is not None and p.ends_at <= p.starts_at:
            raise LeaderboardError(f"phase {p.name} would end ({_when(p.ends_at, '')}) before it starts")
    dev, final = phases[PHASES[0]], phases[FINAL]
    if final.starts_at is None:
        return
    if dev.ends_at is None or dev.ends_at > final.starts_at:
        raise LeaderboardError(
            f"the development phase must end by the time the final phase starts "
            f"({_when(final.starts_at, '')}); development ends {_when(dev.ends_at, 'never')}"
        )
    if dev.starts_at is not None and dev.starts_at >= final.starts_at:
        raise LeaderboardError("the development phase must start before the final phase")


def write_phases(session: Session, windows: dict[str, PhaseWindow]) -> None:
    """Store the windows after checking their order (development ends before final starts)."""
    _check_order(windows)
    for name, window in windows.items():
        row = session.get(Phase, name)
        if row is None:
            session.add(Phase(name=name, starts_at=window.starts_at, ends_at=window.ends_at))
        else:
            row.starts_at, row.ends_at = window.starts_at, window.ends_at


def initial_phases(
    dev_start: datetime | None = None,
    dev_end: datetime | None = None,
    final_start: datetime | None = None,
    final_end: datetime | None = None,
) -> dict[str, PhaseWindow]:
    """The windows a new board starts with; without a development end, development ends when final starts."""
    if dev_end is None and final_start is not None:
        dev_end = final_start
    windows = {
        PHASES[0]: PhaseWindow(PHASES[0], dev_start, dev_end),
        FINAL: PhaseWindow(FINAL, final_start, final_end),
    }
    if final_start is None and final_end is not None:
        raise LeaderboardError("the final phase needs a start (--final-start) when it has an end")
    _check_order(windows)
    return windows


def set_phase(
    store: Store,
    host_token: str | None,
    name: str,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    clear_end: bool = False,
    clock: Callable[[], datetime] = utcnow,
) -> list[dict]:
    """Host only: move a phase's start and/or end (a past end closes it, a future one reopens it).

    Scheduling the final phase ends an open-ended development phase when final starts.
    """
    check_phase_name(name)
    with store.locked() as session:
        board = store.board(session, lock=True)
        require_host(board, host_token)
        if name == FINAL and board.revealed_at is not None:
            raise LeaderboardError(
                "the private board has been revealed: the final phase can no longer change"
            )
        windows = {p.name: p for p in load_phases(session)}
        old = windows[name]
        new = PhaseWindow(
            name,
            starts_at if starts_at is not None else old.starts_at,
            None if clear_end else (ends_at if ends_at is not None else old.ends_at),
        )
        windows[name] = new
        dev = windows[PHASES[0]]
        if name == FINAL and new.starts_at is not None and dev.ends_at is None:
            windows[PHASES[0]] = PhaseWindow(dev.name, dev.starts_at, new.starts_at)
            log.info("the development phase now ends when the final phase starts")
        write_phases(session, windows)
        now = clock()
        return [w.to_json(now) for w in windows.values()]


def close_phase(
    store: Store, host_token: str | None, name: str, clock: Callable[[], datetime] = utcnow
) -> list[dict]:
    """Host only: end an open phase now (its standings and selections freeze)."""
    check_phase_name(name)
    now = clock()
    with store.locked() as session:
        require_host(store.board(session, lock=True), host_token)
        windows = {p.name: p for p in load_phases(session)}
        phase = windows[name]
        state = phase.state(now)
        if state != "open":
            raise LeaderboardError(
                f"phase {name} is {state}, not open: nothing to close ({phase.describe()})"
            )
        windows[name] = PhaseWindow(name, phase.starts_at, now)
        write_phases(session, windows)
    log.info("phase %s closed at %s", name, now)
    return [w.to_json(now) for w in windows.values()]


def reveal(
    store: Store,
    host_token: str | None,
    clock: Callable[[], datetime] = utcnow,
    *,
    wait_s: float = 0.0,
    poll_s: float = 0.5,
) -> datetime:
    """Host only: make the final phase's private standings public. Refused until the final phase has
    closed, and while a submission received before its end is still being scored: then it waits up to
    `wait_s` seconds for them before refusing (ScoringPendingError)."""
    give_up = time.monotonic() + wait_s
    while True:
        try:
            return _reveal_now(store, host_token, clock)
        except ScoringPendingError:
            if time.monotonic() + poll_s > give_up:
                raise
            time.sleep(poll_s)


def _reveal_now(store: Store, host_token: str | None, clock: Callable[[], datetime]) -> datetime:
    store.ensure_pending_table()
    now = clock()
    with store.locked() as session:
        board = store.board(session, lock=True)
        require_host(board, host_token)
        if board.revealed_at is not None:
            return board.revealed_at
        final = next(p for p in load_phases(session) if p.name == FINAL)
        state = final.state(now)
        if state != "closed":
            hint = (
                "schedule it first (`opreid leaderboard phase set final --start ... --end ...`)"
                if state == "unscheduled"
                else "close it first (`opreid leaderboard phase close final`) or wait for its end"
            )
            raise NotRevealedError(
                f"the private board is revealed only after the final phase closes; the final phase is "
                f"{state} ({final.describe()}): {hint}"
            )
        pending = session.scalars(select(PendingSubmission).where(PendingSubmission.phase == FINAL)).all()
        live = [p for p in pending if p.expires_at > now]
        if live:
            latest = max(p.expires_at for p in live)
            raise ScoringPendingError(
                f"{len(live)} submission(s) received before the final phase closed are still being scored; "
                f"reveal once they are recorded (by {latest:{_TIME}} UTC at the latest; "
                "`opreid leaderboard reveal --wait SECONDS` waits for them)"
            )
        if pending:  # their scoring outlived its deadline: they can no longer be recorded
            session.execute(delete(PendingSubmission).where(PendingSubmission.phase == FINAL))
        board.revealed_at = now
        log.info("private board revealed at %s", now)
        return now


def require_private_view(board: Board, phase: str, host_token: str | None) -> None:
    """The host always; anyone the final phase's private standings once the host has revealed them."""
    if board.revealed_at is not None and phase == FINAL:
        return
    if not host_token or not matches(host_token, board.host_token_hash):
        why = (
            f"only the final phase's private standings are public; the {phase} phase's stay the host's"
            if board.revealed_at is not None
            else "the private standings stay the host's until the final phase closes and the host reveals them"
        )
        raise AuthError(f"{why}; this view needs the host token (--token or OPREID_LEADERBOARD_TOKEN)")
