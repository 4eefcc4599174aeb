"""The reference model learns: the demo's run (scripts/demo.sh), end to end through the `opreid` commands,
beats its own untrained start by a margin no broken model reaches.

Measured on 2 shared CPU cores (mAP on the release's 84 occluded queries): untrained 0.023-0.024
(chance level); after the tiny preset's 600 steps 0.198 (seed 0) and 0.180 (`seed=1`), a gain of
0.16-0.17 against MIN_GAIN = 0.10; training took 170-215 s. Shorter schedules did not clear the margin
with room to spare (360 steps with the cosine compressed: 0.147 and 0.108; 240 steps: 0.103), so the
test runs the preset as shipped. Faces are masked by the pose head boxes alone (`--face-model none`,
as when these figures were taken): the face detector would add ~45 s and does not bear on learning.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import SHARED_DATA

OPREID = Path(sys.executable).parent / "opreid"
#: mAP gained over the untrained model's; a model that does not learn stays within ~0.02 of it.
MIN_GAIN = 0.10


def _opreid(*args) -> str:
    res = subprocess.run([str(OPREID), *map(str, args)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"opreid {args[0]} failed:\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.mark.slow
def test_tiny_model_learns_on_the_demo_release(tmp_path):
    # One learning check per run keeps the suite within its 10 minutes: on real people where the
    # crops exist (the stronger check, below), else on the demo's synthetic release.
    if (SHARED_DATA / "cuhk01").is_dir():
        pytest.skip("learning is checked on real crops (test_cpu_preset_learns_real_people) where they exist")
    raw, release, run = tmp_path / "raw", tmp_path / "release", tmp_path / "run"
    _opreid("synth", raw, "--identities", 250, "--cameras", 6, "--seed", 1, "--workers", 2)
    _opreid("build-split", raw, "-o", release, "--keypoints", raw / "keypoints.parquet", "--preset", "opreid",
            "--scale", 0.02, "--train-ids", 100, "--train-images", "none", "--seed", 1, "--no-progress",
            "--face-model", "none")  # fmt: skip
    _opreid("train", "--config", "tiny", "--data", release, "-o", run, "--no-progress", "train.eval_period=0")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    start, end = evals[0], evals[-1]
    assert start["iteration"] == 0 and end["iteration"] == 600 and end["num_valid_queries"] > 50
    assert start["mAP"] < 0.06, "the untrained model should be near chance"
    assert end["mAP"] >= start["mAP"] + MIN_GAIN, f"mAP {start['mAP']:.3f} -> {end['mAP']:.3f}"
    assert end["rank1"] > start["rank1"]


#: The CPU preset on real people (CUHK01, 871 training identities): a short run with the preset's
#: schedule compressed. Measured on 2 shared CPU cores: see REAL_FLOOR's comment.
REAL_STEPS = (
    "solver.max_epochs=24",
    "solver.delay_epochs=8",
    "train.eval_period=0",
    "train.checkpoint_period=24",
)
#: mAP on CUHK01's 100 test identities after REAL_STEPS (600 steps). The untrained model scores 0.038;
#: a random ranking of these 100 queries (3 matches each among 300) scores 0.024, sd 0.005 over 300
#: draws. The import's seed fixes the public pids and so the sampler's order: with it the run is the
#: same bit for bit on one machine (0.0979 twice at seed 0, bfloat16 on 2 cores). Without it each
#: release drew a new secret and the same test gave 0.046-0.110 over five orderings (seeds 1 and 2:
#: 0.046, 0.053), and failed the floor twice: at 600 steps the preset has only begun to generalise
#: (0.18 after 1,200 of its 2,000 steps, 0.31 at the end). So the order is fixed; a CPU without native
#: bfloat16 trains in float32, where the same order gives 0.0913 (`solver.cpu_bf16=false`, 248 s).
REAL_FLOOR = 0.055


@pytest.mark.slow
def test_cpu_preset_learns_real_people(tmp_path):
    """`small` on real crops (../shared/data/cuhk01, never shipped): a short run clears a floor well
    above chance on identities it never trained on."""
    source = SHARED_DATA / "cuhk01"
    if not source.is_dir():
        pytest.skip(
            f"no real crops at {source} (../shared/data/cuhk01 beside the checkout, or $OPREID_SHARED_DATA)"
        )
    release, run = tmp_path / "cuhk01", tmp_path / "run"
    _opreid("import", "market1501", source, "-o", release, "--seed", 0)  # see REAL_FLOOR
    _opreid("train", "--config", "small", "--data", release, "-o", run, "--no-progress", *REAL_STEPS)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    start, end = evals[0], evals[-1]
    assert start["iteration"] == 0 and start["mAP"] < 0.06, "the untrained model should be near chance"
    assert end["num_valid_queries"] == 100
    assert end["mAP"] >= REAL_FLOOR, f"mAP {start['mAP']:.3f} -> {end['mAP']:.3f} on CUHK01's test identities"
