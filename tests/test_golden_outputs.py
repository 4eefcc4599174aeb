"""The pipeline's outputs, byte for byte: synth -> build-split -> train (tiny) -> extract -> score.

The digests below were recorded before the house-style consolidation (library APIs under every
command, one error policy) and prove that it changed no release, checkpoint, submission or score.
A change that alters outputs on purpose records new digests here and says why in its commit.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: Recorded with opreid 0.1.0 at commit 5723ade (before the consolidation); predictions and score
#: re-recorded when extract took its distances from benchmarks.feature_distances (numpy float32
#: instead of torch: 24% of the entries move by <= 4e-7, the metrics stay equal, and the score
#: changes only through its submission_sha256). Weights, predictions and score re-recorded when ME
#: moved to the L2-normalised GeM output (issue 11): the trained weights differ only in the ME buffer
#: `me.mean` (checked against the previous code on this very run), and retrieval now uses
#: normalize(GeM output) - mu instead of the BNNeck output.
DIGESTS = {
    "release_files": 1564,
    "release": "f0da8fbd605f14ad71221ddebca86a50efae8c2f42ad70586adc7fd50f8c598b",
    "dataset.json": "810ad2cc0e9ed89a392b765510a63a0b131aa5ef4272050b765160a91fcf3a1e",
    "images.parquet": "bb964528a8e27e4471bd18b31eab7de87b141935357da189f9b0f5b2602c7b06",
    "weights": "34a681b41420a1dc7f6a189bff8ec572cdc1ad5f694a6e69285400f789b6d731",
    "predictions": "d7109df78b9aabd18427533a2c84bb82e874f825391e22aaf0d64c0e40a027a5",
    "score": "89c5bc1f1ab430701291440ef857c2dc379943edbeec4c1fde811ea608519d0b",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _opreid(cwd: Path, *args) -> str:
    exe = Path(sys.executable).parent / "opreid"
    res = subprocess.run(
        [str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _pipeline_digests(root: Path) -> dict:
    import torch

    _opreid(root, "synth", "raw", "--identities", 60, "--cameras", 4, "--seed", 3)
    _opreid(root, "build-split", "raw", "-o", "rel", "--keypoints", "raw/keypoints.parquet", "--preset", "opreid",
            "--scale", 0.005, "--train-ids", 20, "--train-images", 200, "--seed", 2, "--no-progress")  # fmt: skip
    _opreid(root, "train", "--config", "tiny", "--data", "rel", "-o", "run", "--no-progress", "solver.max_epochs=2",
            "solver.iters_per_epoch=3", "data.ims_per_batch=16", "data.num_workers=0", "train.num_threads=1",
            "train.eval_period=0", "train.eval_at_start=false", "solver.warmup_iters=2",
            "solver.delay_epochs=1")  # fmt: skip
    _opreid(root, "extract", "--checkpoint", "run/checkpoints/last.pt", "--data", "rel", "-o", "pred.npy",
            "--features", "f.npz", "--num-workers", 0, "--no-progress")  # fmt: skip
    score = _opreid(root, "score", "pred.npy", "--data", "rel", "--json")

    state = torch.load(root / "run/checkpoints/last.pt", map_location="cpu", weights_only=True)["model"]
    weights = hashlib.sha256()
    for key in sorted(state):
        weights.update(key.encode())
        weights.update(state[key].cpu().contiguous().numpy().tobytes())
    rel = root / "rel"
    files = sorted(
        p.relative_to(rel).as_posix() for p in rel.rglob("*") if p.is_file() and "cache" not in p.parts
    )
    release = hashlib.sha256()
    for name in files:
        release.update(name.encode())
        release.update(_sha(rel / name).encode())
    return {
        "release_files": len(files),
        "release": release.hexdigest(),
        "dataset.json": _sha(rel / "dataset.json"),
        "images.parquet": _sha(rel / "private/images.parquet"),
        "weights": weights.hexdigest(),
        "predictions": _sha(root / "pred.npy"),
        "score": hashlib.sha256(score.encode()).hexdigest(),
    }


def test_pipeline_outputs_are_byte_identical_to_the_recorded_digests(tmp_path):
    assert _pipeline_digests(tmp_path) == DIGESTS
