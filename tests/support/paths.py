"""Where the checkout and the tests are, for tests at any depth of tests/."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
#: The real datasets for development (never in the repository): ../shared/data beside the checkout,
#: or $OPREID_SHARED_DATA (a worktree elsewhere). Tests that read them skip when they are absent.
SHARED_DATA = Path(os.environ.get("OPREID_SHARED_DATA") or REPO.parent / "shared" / "data")


def _ultralytics_assets() -> Path:
    """Ultralytics' bundled sample images, found without importing it (its import patches PIL)."""
    spec = importlib.util.find_spec("ultralytics")
    origin = spec.origin if spec and spec.origin else ""
    return Path(origin).parent / "assets"


ULTRALYTICS_ASSETS = _ultralytics_assets()
