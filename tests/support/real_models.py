"""The real models in ../shared/models, given to the tests through the environment (`.ci/run` sets it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

POSE_MODEL = os.environ.get("OPREID_TEST_POSE_MODEL")
#: Skips a test, with the reason, unless OPREID_TEST_POSE_MODEL names a YOLO-pose model file.
needs_pose_model = pytest.mark.skipif(
    not POSE_MODEL or not Path(POSE_MODEL).is_file(),
    reason="set OPREID_TEST_POSE_MODEL to a YOLO-pose model (e.g. ../shared/models/yolo26n-pose-int8-256.onnx)",
)
