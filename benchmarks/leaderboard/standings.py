"""Standings, per phase and per track: each team's best submission on the public subset, plus the
host's baseline rows.

Public standings rank every team by its best public score on the declared metric (higher is
better), ties broken by the earliest submission. The private board takes, for each team, the
submissions that count (those it selected, up to the board's limit; by default its best public
one, chosen on public scores as the team saw them, so nothing is picked by the hidden half) and
ranks the team by the best private score among them. Baseline rows (flagged by the host) are shown
in every phase but not ranked.

Tracks: full rankings (distance matrices, features) form one track; ranked lists of K gallery
entries have mAP and mINP truncated at K, so each K is its own track, never mixed with another.

Public numbers are rounded to PUBLIC_DECIMALS: exact values would let a prober read many bits per
submission about which queries count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from benchmarks.leaderboard.errors import LeaderboardError
from benchmarks.leaderboard.phases import check_phase_name, load_phases, require_private_view, shown_phase
from benchmarks.leaderboard.store import Store, Submission, Team, utcnow

PUBLIC_DECIMALS = 4
_RANK = re.compile(r"^rank(\d+)$")


def is_metric(name: str) -> bool:
    return name in ("mAP", "mINP") or bool(_RANK.match(name))


def check_sort_metric(name: str) -> str:
    if not is_metric(name):
        raise LeaderboardError(f"unknown sort metric {name!r}: use mAP, mINP or rankK (e.g. rank1)")
    return name


def metric_key(name: str) -> tuple:
    m = _RANK.match(name)
    return (0, 0) if name == "mAP" else (1, 0) if name == "mINP" else (2, int(m.group(1)) if m else 0)


def metric_columns(metric_dicts: list[dict]) -> list[str]:
    names = {k for d in metric_dicts for k, v in d.items() if is_metric(k) and isinstance(v, (int, float))}
    return sorted(names, key=metric_key)


def round_public(metrics: dict) -> dict:
    """The metrics a public view may show: metric values rounded, plus the query counts."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if is_metric(k):
            out[k] = None if v is None else round(float(v), PUBLIC_DECIMALS)
        elif k in ("num_queries", "num_valid_queries"):
            out[k] = v
    return out


def _score(metrics: dict, metric: str) -> float:
    v = metrics.get(metric)
    return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _best_public_key(metric: str):
    return lambda s: (-_score(s.public_metrics, metric), s.created_at, s.id)


def track_order(name: str) -> tuple:
    """`full` first, then top-K tracks by K."""
    return (0, 0) if name == "full" else (1, int(name.split("-", 1)[1]))


def counted_submissions(subs: list[Submission], metric: str) -> list[Submission]:
    """What counts for a team's private board, per (phase, track): the selected submissions, or by
    default the best public one. Baselines never count."""
    groups: dict[tuple, list[Submission]] = {}
    for sub in subs:
        if not sub.baseline:
            groups.setdefault((sub.phase, sub.track), []).append(sub)
    counted = []
    for group in groups.values():
        chosen = [s for s in group if s.selected]
        counted += chosen or [min(group, key=_best_public_key(metric))]
    return counted


@dataclass
class StandingRow:
    rank: int | None  # None for baseline rows
    team: str
    submission_id: int
    method: str
    url: str | None
    description: str | None
    submitted_at: datetime
    baseline: bool
    metrics: dict  # public, rounded
    submissions: int  # the team's number of recorded submissions in the phase
    private_metrics: dict | None = field(default=None)  # private view only
    track: str = "full"
    truncated_at: int | None = None
    selected: bool = False  # private view: the team selected it (else its best public one counts)

    def to_json(self) -> dict:
        out = {
            "rank": self.rank, "team": self.team, "submission_id": self.submission_id,
            "method": self.method, "url": self.url, "description": self.description,
            "submitted_at": self.submitted_at.isoformat() + "Z", "baseline": self.baseline,
            "submissions": self.submissions, "metrics": self.metrics, "track": self.track,
            "truncated_at": self.truncated_at,
        }  # fmt: skip
        if self.private_metrics is not None:
            out["private_metrics"] = self.private_metrics
            out["selected"] = self.selected
        return out


@dataclass
class Standings:
    sort_metric: str
    private: bool
    columns: list[str]
    tracks: dict[str, list[StandingRow]]  # "full" first, then "top-K" by K
    phase: str = "development"
    revealed: bool = False

    @property
    def rows(self) -> list[StandingRow]:
        """The full-ranking track (distance matrices and features)."""
        return self.tracks.get("full", [])

    @property
    def all_rows(self) -> list[StandingRow]:
        return [r for rows in self.tracks.values() for r in rows]

    def to_json(self) -> dict:
        return {
            "view": "private" if self.private else "public",
            "phase": self.phase,
            "revealed": self.revealed,
            "sort_metric": self.sort_metric,
            "columns": self.columns,
            "rows": [r.to_json() for r in self.rows],
            "tracks": [
                {
                    "track": name,
                    "truncated_at": None if name == "full" else int(name.split("-", 1)[1]),
                    "rows": [r.to_json() for r in rows],
                }
                for name, rows in self.tracks.items()
            ],  # fmt: skip
        }


def _earliest(sub: Submission) -> tuple:
    return (sub.created_at, sub.id)


def _entries(teams, phase: str, metric: str, private: bool) -> list[tuple[Submission, Team, bool, int]]:
    """(submission, team, baseline, team's submissions in the phase) for every row of the board."""
    entries = []
    for team in teams:
        in_phase = [s for s in team.submissions if s.phase == phase]
        if private:
            by_track: dict[str, list[Submission]] = {}
            for sub in counted_submissions(in_phase, metric):
                by_track.setdefault(sub.track, []).append(sub)
            chosen = [max(group, key=lambda s: (_score(s.private_metrics, metric), -s.created_at.timestamp(),
                                                -s.id)) for group in by_track.values()]  # fmt: skip
        else:
            by_track = {}
            for sub in in_phase:
                if not sub.baseline:
                    by_track.setdefault(sub.track, []).append(sub)
            chosen = [min(group, key=_best_public_key(metric)) for group in by_track.values()]
        entries += [(sub, team, False, len(in_phase)) for sub in chosen]
        entries += [(s, team, True, len(in_phase)) for s in team.submissions if s.baseline]
    return entries


def compute_standings(
    store: Store,
    *,
    private: bool = False,
    host_token: str | None = None,
    phase: str | None = None,
    clock=utcnow,
) -> Standings:
    """A phase's public standings (default: the phase open now, else the latest that has begun), or its
    private board: the host's at any time, everyone's for the final phase once revealed."""
    with store.session() as session:
        board = store.board(session)
        phase = check_phase_name(phase) if phase else shown_phase(load_phases(session), clock())
        if private:
            require_private_view(board, phase, host_token)
        metric, revealed = board.sort_metric, board.revealed_at is not None
        teams = session.scalars(select(Team).options(selectinload(Team.submissions))).all()
        entries = _entries(teams, phase, metric, private)

    def order(entry: tuple[Submission, Team, bool, int]) -> tuple:
        sub = entry[0]
        shown = sub.private_metrics if private else sub.public_metrics
        return (-_score(shown, metric), *_earliest(sub))

    entries.sort(key=order)
    tracks: dict[str, list[StandingRow]] = {}
    ranks: dict[str, int] = {}
    for sub, team, baseline, count in entries:
        track = sub.track
        if not baseline:
            ranks[track] = ranks.get(track, 0) + 1
        tracks.setdefault(track, []).append(
            StandingRow(
                rank=None if baseline else ranks[track], team=team.name, submission_id=sub.id,
                method=sub.method, url=sub.url, description=sub.description, submitted_at=sub.created_at,
                baseline=baseline, metrics=round_public(sub.public_metrics), submissions=count,
                private_metrics=dict(sub.private_metrics) if private else None,
                track=track, truncated_at=sub.truncated_at, selected=bool(sub.selected),
            )
        )  # fmt: skip
    tracks = {name: tracks[name] for name in sorted(tracks, key=track_order)}
    rows = [r for group in tracks.values() for r in group]
    columns = metric_columns([r.metrics for r in rows]) or [metric]
    return Standings(metric, private, columns, tracks, phase=phase, revealed=revealed)


def sort_rows(rows: list[StandingRow], key: str, descending: bool) -> list[StandingRow]:
    """Re-sort rows (in standings order) by a column of the page: a metric, `submitted`, `team` or `rank`."""
    if key == "submitted":
        return sorted(rows, key=lambda r: (r.submitted_at, r.submission_id), reverse=descending)
    if key == "team":
        return sorted(rows, key=lambda r: r.team.lower(), reverse=descending)
    if key == "rank":  # the standings' own order (baselines interleaved by score)
        return list(reversed(rows)) if descending else list(rows)
    if not is_metric(key):
        raise LeaderboardError(f"cannot sort by {key!r}")
    missing = [r for r in rows if r.metrics.get(key) is None]
    sign = -1.0 if descending else 1.0
    present = sorted(
        (r for r in rows if r.metrics.get(key) is not None),
        key=lambda r: (sign * r.metrics[key], r.submitted_at, r.submission_id),
    )
    return present + missing
