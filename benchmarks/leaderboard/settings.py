"""A leaderboard's settings and its web server's, with their defaults (the CLI's defaults come from here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from benchmarks.submission.formats import DEFAULT_MAX_UPLOAD_BYTES

#: How long a received submission may take to score. The reveal waits for a final-phase submission
#: at most this long; one still scoring after the reveal is then never recorded. The web app uses
#: its request timeout instead, which calls a submission off sooner.
SCORING_DEADLINE_S = 3600.0


@dataclass(frozen=True)
class BoardSettings:
    """Chosen at `leaderboard init`; stored with the board."""

    name: str = "OPReID"
    sort_metric: str = "mAP"
    daily_quota: int | None = 5
    total_quota: int | None = 100
    private_fraction: float = 0.5
    seed: int | None = None  # None: a random, secret seed
    selection_limit: int = 2  # submissions a team may select for the private board, per phase
    # phase windows, naive UTC (benchmarks/leaderboard/phases.py): development open from the start
    # and until the final phase starts; final unscheduled until set
    dev_start: datetime | None = None
    dev_end: datetime | None = None
    final_start: datetime | None = None
    final_end: datetime | None = None


@dataclass(frozen=True)
class WebSettings:
    """Limits of `leaderboard serve`."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # a submission's multipart body
    request_timeout_s: float = 300.0
    max_body_bytes: int = 64 * 1024  # every other body: JSON and sign-in or selection forms
    header_timeout_s: float = 10.0  # a connection's request line and headers (capped by the request timeout)

    @property
    def header_deadline_s(self) -> float:
        return min(self.header_timeout_s, self.request_timeout_s)
