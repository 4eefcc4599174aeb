"""The pipeline's outputs, as content: synth -> build-split -> train (tiny) -> extract -> score.

Compared with `tests/golden/pipeline.json`: every manifest's Arrow schema and rows, every released
image's bytes, the card and the other texts, the trained weights, the predictions and the score
(tests/support/golden.py says how each is described). A Parquet file's bytes are not compared: they
carry pyarrow's writer string and page layout, which change with pyarrow releases while the tables
do not. Byte-identical reruns in one environment are checked elsewhere (the kill-and-resume tests).

The training runs on a portable instruction set (SSE4.1 for oneDNN, ATen's default kernels, MKL's
compatible mode): weights trained on AVX2 and on AVX-512 differ after a few steps, and CI may run on
either. A change that alters outputs on purpose re-records with
`python tests/test_golden_outputs.py --record` and says why in its commit.

Recorded history: the previous byte digests (5723ade, re-recorded on purpose for croissant.json, the
bundled YuNet and ME on the normalised feature) could not be reproduced on this machine with any
pyarrow from 24.0.0 to 26.0.1, and their weights depended on the recording CPU's instruction set;
this file was recorded anew with the locked environment (requirements/lock.txt).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import golden

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden" / "pipeline.json"
#: The same floating-point code paths on any x86-64 CPU (see the module docstring).
PORTABLE_CPU = {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def _opreid(cwd: Path, *args) -> str:
    exe = Path(sys.executable).parent / "opreid"
    res = subprocess.run(
        [str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **PORTABLE_CPU},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def pipeline_outputs(root: Path) -> dict:
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

    out = golden.release_outputs(root / "rel", inputs=sorted((root / "raw").glob("*.parquet")))
    content_sha = out.pop("content_sha")
    state = torch.load(root / "run/checkpoints/last.pt", map_location="cpu", weights_only=True)["model"]
    out["weights"] = golden.weights_digest(state)
    out["predictions"] = golden.array_digest(root / "pred.npy")
    out["score"] = golden._sha(golden.mask_checksums(score, content_sha))
    out["libraries"] = golden.library_versions()
    return out


def test_pipeline_outputs_match_the_recorded_content(tmp_path):
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    actual = pipeline_outputs(tmp_path)
    problems = golden.compare(expected, actual)
    assert not problems, golden.failure_message(expected, actual, problems)


def test_the_comparison_names_the_part_that_differs():
    """A changed row, image, card, weight: each is reported under its own name."""
    base = {
        "tables": {"train.parquet": {"schema": "s", "rows": "r", "num_rows": 2}},
        "images": {"images/a.jpg": "1", "images/b.jpg": "2"},
        "texts": {"README.md": "c", "dataset.json": "d"},
        "weights": "w", "predictions": "p", "score": "x", "libraries": {"pyarrow": "26.0.1"},
    }  # fmt: skip
    assert golden.compare(base, base) == []
    changed = json.loads(json.dumps(base))
    changed["tables"]["train.parquet"]["rows"] = "r2"
    changed["images"]["images/b.jpg"] = "3"
    changed["texts"]["README.md"] = "c2"
    changed["weights"] = "w2"
    changed["libraries"]["pyarrow"] = "25.0.1"
    problems = golden.compare(base, changed)
    assert problems == [
        "rows: train.parquet: rows differ", "images: images/b.jpg differs", "card: README.md differs",
        "weights: differs",
    ]  # fmt: skip
    message = golden.failure_message(base, changed, problems)
    assert message.startswith("golden outputs differ in: card, images, rows, weights")
    assert "pyarrow 26.0.1 -> 25.0.1" in message


def test_a_parquet_rewrite_by_another_writer_keeps_the_table_digest(tmp_path):
    """The same table written with other Parquet settings (page size, compression, created_by) has
    other bytes and the same digest; a changed value does not."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"a": [1, 2, 3], "k": [[1.0, 2.5], [], None]}).replace_schema_metadata(
        {"opreid.kind": "x"}
    )
    pq.write_table(table, tmp_path / "a.parquet", compression="zstd")
    pq.write_table(
        table, tmp_path / "b.parquet", compression="snappy", data_page_size=64, use_dictionary=False
    )
    assert (tmp_path / "a.parquet").read_bytes() != (tmp_path / "b.parquet").read_bytes()
    assert golden.table_digest(tmp_path / "a.parquet") == golden.table_digest(tmp_path / "b.parquet")
    pq.write_table(table.set_column(0, "a", pa.array([1, 2, 4])), tmp_path / "c.parquet")
    assert (
        golden.table_digest(tmp_path / "c.parquet")["rows"]
        != golden.table_digest(tmp_path / "a.parquet")["rows"]
    )


if __name__ == "__main__":  # python tests/test_golden_outputs.py --record
    import tempfile

    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_golden_outputs.py --record")
    with tempfile.TemporaryDirectory() as tmp:
        outputs = pipeline_outputs(Path(tmp))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"recorded {GOLDEN}")
