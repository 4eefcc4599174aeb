"""Split pools and small releases built without images from curation: metadata-only pools for the
split protocol, the same plus masked JPEGs for the release writer."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from opreid_builder.release.writer import write_release
from opreid_builder.split.presets import SplitTargets
from opreid_builder.split.protocol import SplitConfig, select_split


def make_pool(
    identities: int = 120, cameras: int = 4, images=(8, 24), occluded=0.3, seed: int = 0
) -> pa.Table:
    """A curated-looking table: unique hex image ids, pids, camids, occluded flags (no files)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(images[0], images[1] + 1, identities)
    pid = np.repeat(np.arange(1, identities + 1), counts)
    n = len(pid)
    ids = rng.choice(1 << 62, size=n, replace=False)
    return pa.table(
        {
            "image_id": [f"{v:016x}" for v in ids.tolist()],
            "pid": pa.array(pid, pa.int64()),
            "camid": pa.array(rng.integers(1, cameras + 1, n), pa.int32()),
            "occluded": pa.array(rng.random(n) < occluded),
        }
    )


def small_targets(**kw) -> SplitTargets:
    base = dict(
        train_ids=15, train_images=200, query_ids=30, query_images=36, gallery_ids=55, gallery_images=None
    )
    base.update(kw)
    return SplitTargets(**base)


PARAMETERS = {
    "curation": {"rule": "coco18", "min_run": 3},
    "split": {"preset": "test", "scale": 1.0, "rules": {}},
}


def write_masked(out: Path, image_ids: list[str]) -> None:
    """Tiny JPEGs at OUT/masked/{image_id}.jpg, distinct bytes per id (the JFIF density encodes it)."""
    masked = out / "masked"
    masked.mkdir(parents=True, exist_ok=True)
    template = io.BytesIO()
    Image.new("RGB", (8, 16), (90, 120, 150)).save(template, format="JPEG", quality=90)
    jpeg = bytearray(template.getvalue())
    assert jpeg[6:11] == b"JFIF\0"
    for image_id in image_ids:
        jpeg[14:18] = bytes.fromhex(image_id[:8])
        (masked / f"{image_id}.jpg").write_bytes(bytes(jpeg))


def curated_pool(out: Path, seed: int = 0, write_images: bool = True, **kw) -> pa.Table:
    """make_pool rows plus the curate columns the release uses (and their masked JPEGs)."""
    pool = make_pool(seed=seed, **kw)
    ids = pool.column("image_id").to_pylist()
    if write_images:
        write_masked(out, ids)
    occluded = pool.column("occluded").to_pylist()
    parts = [["left_leg", "right_leg"] if o else [] for o in occluded]
    return pool.append_column("masked_path", pa.array([f"masked/{i}.jpg" for i in ids])).append_column(
        "missing_parts", pa.array(parts, pa.list_(pa.string()))
    )


def build_release(out: Path, seed: int = 0, order_seed: int | None = None) -> Path:
    pool = curated_pool(out, write_images=False)
    if order_seed is not None:
        pool = pool.take(pa.array(np.random.default_rng(order_seed).permutation(pool.num_rows)))
    selection = select_split(pool, SplitConfig(small_targets(), seed=seed))
    write_masked(out, selection.rows.column("image_id").to_pylist())  # only what the release copies
    write_release(out, selection, seed=seed, parameters=PARAMETERS)
    return out
