"""Standings: each team's best submission on the public subset, plus the host's baseline rows.

Public standings rank every team by its best public score on the declared metric (higher is
better), ties broken by the earliest submission. The host's private view takes the same
submission of each team (selected on public scores, as the teams saw them) and ranks it by its
private score, so a team cannot pick its submission by the hidden half. Baseline rows (flagged by
the host) are shown but not ranked.

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
from benchmarks.leaderboard.store import Store, Submission, Team
from benchmarks.leaderboard.teams import require_host

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
    submissions: int  # the team's number of recorded submissions
    private_metrics: dict | None = field(default=None)  # host view only

    def to_json(self) -> dict:
        out = {
            "rank": self.rank, "team": self.team, "submission_id": self.submission_id,
            "method": self.method, "url": self.url, "description": self.description,
            "submitted_at": self.submitted_at.isoformat() + "Z", "baseline": self.baseline,
            "submissions": self.submissions, "metrics": self.metrics,
        }  # fmt: skip
        if self.private_metrics is not None:
            out["private_metrics"] = self.private_metrics
        return out


@dataclass
class Standings:
    sort_metric: str
    private: bool
    columns: list[str]
    rows: list[StandingRow]

    def to_json(self) -> dict:
        return {
            "view": "private" if self.private else "public",
            "sort_metric": self.sort_metric,
            "columns": self.columns,
            "rows": [r.to_json() for r in self.rows],
        }


def _earliest(sub: Submission) -> tuple:
    return (sub.created_at, sub.id)


def compute_standings(store: Store, *, private: bool = False, host_token: str | None = None) -> Standings:
    """Public standings, or (with the host token) the private view."""
    with store.session() as session:
        board = store.board(session)
        if private:
            require_host(board, host_token)
        metric = board.sort_metric
        teams = session.scalars(select(Team).options(selectinload(Team.submissions))).all()
        entries: list[tuple[Submission, Team, bool]] = []
        for team in teams:
            competing = [s for s in team.submissions if not s.baseline]
            if competing:
                best = min(competing, key=lambda s: (-_score(s.public_metrics, metric), *_earliest(s)))
                entries.append((best, team, False))
            entries.extend((s, team, True) for s in team.submissions if s.baseline)

    def order(entry: tuple[Submission, Team, bool]) -> tuple:
        sub = entry[0]
        shown = sub.private_metrics if private else sub.public_metrics
        return (-_score(shown, metric), *_earliest(sub))

    entries.sort(key=order)
    rows, rank = [], 0
    for sub, team, baseline in entries:
        if not baseline:
            rank += 1
        rows.append(
            StandingRow(
                rank=None if baseline else rank,
                team=team.name,
                submission_id=sub.id,
                method=sub.method,
                url=sub.url,
                description=sub.description,
                submitted_at=sub.created_at,
                baseline=baseline,
                metrics=round_public(sub.public_metrics),
                submissions=len(team.submissions),
                private_metrics=dict(sub.private_metrics) if private else None,
            )
        )
    columns = metric_columns([r.metrics for r in rows]) or [metric]
    return Standings(metric, private, columns, rows)


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
