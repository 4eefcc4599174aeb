"""The first pass of curation: every crop decoded and hashed once, then its status.

Statuses need every hash (a duplicate is the same content as a crop earlier in path order), so this
pass runs over all crops before any pose model does. It is cached by path, size, mtime and pixel
cap, so a rerun reads no crop it has read before.

Statuses, first match wins:
- `unreadable`: cannot be read or decoded (zero-byte, truncated, not an image, a directory, not a
  regular file, over `max_pixels`, a name that is not UTF-8); its image_id comes from the path,
  since there is no image content to hash.
- `duplicate`: same content as a crop earlier in path order (`duplicate_of` names it).
- `excluded`: smaller than `min_size` pixels on a side (e.g. 1x1).
- `ok` so far: a candidate for the content pass (which may still find no person in it).
Greyscale, CMYK, 16-bit and PNG-data-named-.jpg crops are converted to RGB and are `ok`
(`status_detail` says what was converted).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from manifests import DatasetLayout
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.engines import StageSpec
from opreid_builder.curation.shard_runs import (
    READ_SCHEMA,
    STAGE_VERSION,
    LazyEngine,
    aligned,
    run_shards,
    stage_store,
)
from opreid_builder.curation.shards import plan_shards
from opreid_builder.curation.sources import NOT_UTF8, SourceScan
from opreid_builder.curation.stages import ChecksumStage


def _scan_key(path: Path, rel: str, max_pixels: int) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{rel}\0missing"
    return f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{'d' if path.is_dir() else 'f'}\0{max_pixels}"


def read_pass(
    scan: SourceScan, layout: DatasetLayout, engine: LazyEngine, config: CurateConfig, progress: bool
) -> pa.Table:
    """sha256, readability and size of every crop, aligned with `scan.items`. A crop whose name is
    not UTF-8 is never read: it cannot be recorded as it is."""
    keys = [_scan_key(scan.path(it), it.source_path, config.max_pixels) for it in scan.items]
    paths = {k: it.source_path for k, it in zip(keys, scan.items, strict=True)}
    undecodable = [
        k for k, it in zip(keys, scan.items, strict=True) if it.source_path in scan.undecodable_names
    ]
    store = stage_store(layout, "read", f"v{STAGE_VERSION['read']}", READ_SCHEMA)
    skipped = set(undecodable)
    shards = plan_shards([k for k in keys if k not in skipped], config.shard_size)
    tables: list[pa.Table] = []
    if undecodable:
        n = len(undecodable)
        tables.append(pa.table(
            {"key": undecodable, "sha256": [None] * n, "readable": [False] * n, "detail": [NOT_UTF8] * n,
             "width": [None] * n, "height": [None] * n}, schema=READ_SCHEMA,
        ))  # fmt: skip
    done, todo = store.split_done(shards)
    tables += done
    if todo:
        index = pa.table(
            {
                "shard": [s.id for s in todo for _ in s.keys],
                "key": [k for s in todo for k in s.keys],
                "source_path": [paths[k] for s in todo for k in s.keys],
            }
        )
        stages = [
            StageSpec("checksum", ChecksumStage, (str(scan.root.resolve()), config.max_pixels), batch_size=64)
        ]
        for shard, table in run_shards(engine.get(), todo, index, stages, 64, progress, "read"):
            tables.append(store.save(shard, table))
    return aligned(tables, READ_SCHEMA, keys)


def _path_id(rel: str) -> str:
    return hashlib.sha256(b"unreadable:" + rel.encode()).hexdigest()[:16]


def crop_statuses(scan: SourceScan, read: pa.Table, min_size: int) -> dict[str, list]:
    """image_id, status, status_detail and duplicate_of of every crop, from the read pass."""
    cols: dict[str, list] = {"image_id": [], "status": [], "status_detail": [], "duplicate_of": []}
    first_of: dict[str, str] = {}
    rows = zip(
        scan.items, read.column("sha256").to_pylist(), read.column("readable").to_pylist(),
        read.column("detail").to_pylist(), read.column("width").to_pylist(), read.column("height").to_pylist(),
        strict=True,
    )  # fmt: skip
    for item, sha, readable, detail, w, h in rows:
        dup = None
        if not readable:
            image_id, status = _path_id(item.source_path), "unreadable"
        else:
            image_id = sha[:16]
            if sha in first_of:
                status, dup = "duplicate", first_of[sha]
            else:
                first_of[sha] = item.source_path
                if min(w, h) < min_size:
                    status, detail = "excluded", f"too small ({w}x{h} < {min_size} px)"
                else:
                    status = "ok"
        for name, value in (
            ("image_id", image_id),
            ("status", status),
            ("status_detail", detail),
            ("duplicate_of", dup),
        ):
            cols[name].append(value)
    return cols


def candidates(scan: SourceScan, read: pa.Table, cols: dict[str, list]) -> tuple[list[int], pa.Table]:
    """The crops still `ok` (their positions in `scan.items`) and the content pass's input for them:
    sha256, image_id, source_path, width, height (one row per distinct content)."""
    picked = [i for i, status in enumerate(cols["status"]) if status == "ok"]
    rows = pa.array(picked, type=pa.int64())
    table = pa.table(
        {
            "sha256": read.column("sha256").take(rows),
            "image_id": pa.array([cols["image_id"][i] for i in picked], pa.string()),
            "source_path": pa.array([scan.items[i].source_path for i in picked], pa.string()),
            "width": read.column("width").take(rows),
            "height": read.column("height").take(rows),
        }
    )
    return picked, table
