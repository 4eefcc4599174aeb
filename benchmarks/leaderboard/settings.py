"""A leaderboard's settings and its web server's, with their defaults (the CLI's defaults come from here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BoardSettings:
    """Chosen at `leaderboard init`; stored with the board."""

    name: str = "OPReID"
    sort_metric: str = "mAP"
    daily_quota: int | None = 5
    total_quota: int | None = 100
    private_fraction: float = 0.5
    seed: int | None = None  # None: a random, secret seed


@dataclass(frozen=True)
class WebSettings:
    """Limits of `leaderboard serve`."""

    max_upload_bytes: int = 512 * 2**20
    request_timeout_s: float = 300.0
