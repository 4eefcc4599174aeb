"""Where the checkout and the tests are, for tests at any depth of tests/."""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
#: The real crops beside the checkout (../shared/data, or $OPREID_TEST_SHARED_DATA; absent in a fresh
#: clone: the tests that read them skip with a reason).
SHARED_DATA = Path(os.environ.get("OPREID_TEST_SHARED_DATA") or REPO.parent / "shared" / "data")
