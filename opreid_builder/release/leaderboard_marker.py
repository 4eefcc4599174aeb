"""The one rule for writing over a release a leaderboard was made from: refused unless forced.

A leaderboard draws its hidden split on the release's query ids; `opreid build-split` and `opreid
import` both replace those ids, so both ask for --force before they write over such a release
(its marker, `.opreid-leaderboard.json`, says where the leaderboard's database is).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from manifests import DatasetLayout
from opreid_builder.errors import LeaderboardReleaseError

log = logging.getLogger(__name__)


def refuse_replacing_leaderboard_release(
    out: Path, force: bool, *, action: str = "rebuilding it", instead: str = "Build"
) -> None:
    """Raise LeaderboardReleaseError when OUT is a leaderboard's release and `force` is off; warn when
    it is on. `action` and `instead` name what the command would do ("rebuilding it") and its verb."""
    marker = DatasetLayout(out).leaderboard_marker
    if not marker.is_file():
        return
    try:
        where = json.loads(marker.read_text(encoding="utf-8")).get("database", "?")
    except (OSError, ValueError, AttributeError):
        where = "?"
    if not force:
        raise LeaderboardReleaseError(
            f"{out} is the release of the leaderboard in {where} (see {marker.name}); {action} would "
            f"change the query ids its hidden split is drawn on. {instead} into another folder, or pass --force "
            "(the leaderboard then refuses submissions until it is created again)"
        )
    log.warning("%s is the release of the leaderboard in %s: %s anyway (--force)", out, where, action)
