"""Loading the pose model leaves the rest of the process as it was.

Importing Ultralytics replaces ``PIL.Image.open``: a file PIL cannot identify then tries to install a
HEIF plugin and raises ModuleNotFoundError, so one damaged crop stopped a run that should record and
skip it (CI caught it: a test that ran after the pose model saw the patched opener).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_loading_ultralytics_leaves_pil_torch_numpy_and_opencv_alone():
    # A fresh interpreter: this process may already hold a patched PIL from another test's import.
    script = textwrap.dedent(
        """
        import io, cv2, numpy as np, torch
        from PIL import Image, UnidentifiedImageError
        from opreid_builder.curation.pose import _quiet_ultralytics

        before = (Image.open, torch.save, np.get_printoptions(), cv2.getNumThreads())
        _quiet_ultralytics()
        import ultralytics.utils  # everything its import patches has run
        after = (Image.open, torch.save, np.get_printoptions(), cv2.getNumThreads())
        assert before == after, (before, after)
        try:
            Image.open(io.BytesIO(b"not an image at all"))
        except UnidentifiedImageError:
            print("ok")
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "ok"
