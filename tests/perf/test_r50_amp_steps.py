"""perf/r50_amp_steps.py runs end to end on the CPU at a tiny step count (the GPU run is the lead's):
it builds its own synthetic release, trains the R50 preset without pretrained weights or internet,
and reports throughput and BED's operating range at the first, middle and last step."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.paths import REPO

SCRIPT = REPO / "perf" / "r50_amp_steps.py"


@pytest.mark.slow
def test_r50_amp_steps_smoke_on_cpu(tmp_path):
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--steps", "2", "--baseline-steps", "2", "--batch", "8",
         "--workers", "0", "--identities", "60", "--train-ids", "20", "--scale", "0.005", "--work", str(tmp_path),
         "--json", "input.height=128", "input.width=64", "data.num_instance=2"],
        capture_output=True, text=True, timeout=1200, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    full = out["full"]
    assert full["sampled_batch"] == 8 and full["forward_batch"] == 16 and full["images_per_s"] > 0
    assert full["overrides"][-3:] == ["input.height=128", "input.width=64", "data.num_instance=2"]
    assert sorted(full["range"], key=int) == ["0", "1", "2"]  # steps 0, middle, last
    for step in full["range"].values():
        for branch in ("global", "rp"):
            for key in ("feat_norm", "d_pos", "d_neg", "bed_pos", "bed_neg", "grad_pos", "grad_neg"):
                assert step[f"{branch}_{key}"] >= 0
    assert out["sbs_baseline"]["forward_batch"] == 8 and out["images_per_s_ratio_full_vs_sbs"] > 0
    assert (tmp_path / "release" / "dataset.json").is_file()
