"""Where the checkout and the tests are, for tests at any depth of tests/."""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
#: The real datasets for development (never in the repository): ../shared/data beside the checkout,
#: or $OPREID_SHARED_DATA (a worktree elsewhere). Tests that read them skip when they are absent.
SHARED_DATA = Path(os.environ.get("OPREID_SHARED_DATA") or REPO.parent / "shared" / "data")
