"""Running shards of work on an engine: the engine started on first use, each stage's cached
columns and version, and the run that hands back each shard as soon as its last row is done.

Both passes of the driver (read_pass.py, content_pass.py) go through here, so a shard is committed
the same way whatever the stage and whichever engine computed it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from manifests import DatasetLayout, progress_bar
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.engines import StageSpec, make_engine
from opreid_builder.curation.shards import Shard, ShardStore
from opreid_builder.curation.stages import (
    COLUMN_TYPES,
    FACE_COLUMNS,
    MASK_COLUMNS,
    POSE_COLUMNS,
    READ_COLUMNS,
    as_table,
)
from opreid_builder.errors import CurationError

#: Bumped when a stage's output for the same input changes (old shards are then ignored).
#: 2: every shard carries the digest it was written with, and masks the digest of each masked crop.
STAGE_VERSION = {"read": 2, "pose": 2, "faces": 2, "masks": 2}


def store_schema(key: str, columns: tuple[str, ...]) -> pa.Schema:
    """A stage's shard columns: its key (a path key or a content sha256), then what it computes."""
    return pa.schema([(key, pa.string()), *((c, COLUMN_TYPES[c]) for c in columns)])


READ_SCHEMA = store_schema("key", READ_COLUMNS)
POSE_SCHEMA = store_schema("sha256", POSE_COLUMNS)
FACES_SCHEMA = store_schema("sha256", FACE_COLUMNS)
MASKS_SCHEMA = store_schema("sha256", MASK_COLUMNS)


def spec_digest(spec: Any) -> str:
    """A short key for settings (a stage store's folder name)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def stage_store(
    layout: DatasetLayout, stage: str, key: str, schema: pa.Schema, spec: dict | None = None
) -> ShardStore:
    """The store of `stage` under `key`, cleared of what a killed write left."""
    store = ShardStore(Path(layout.cache) / "shards" / stage / key, schema, spec)
    store.clean_temporary()
    return store


class LazyEngine:
    """The engine, created on first use: a rerun with everything cached never starts Ray."""

    def __init__(self, config: CurateConfig, layout: DatasetLayout, progress: bool):
        self.config, self.layout, self.progress = config, layout, progress
        self._engine = None

    def get(self):
        if self._engine is None:
            self._engine = make_engine(
                self.config.engine_config, self.layout.cache / "work", self.config.workers, self.progress
            )
        return self._engine


def run_shards(
    engine, shards: list[Shard], index: pa.Table, stages: list[StageSpec], batch_rows: int, progress: bool,
    desc: str,
) -> Iterator[tuple[Shard, pa.Table]]:  # fmt: skip
    """Run `stages` over `index` (a `shard` column names each row's shard) and yield each shard,
    sorted by its key column, as soon as its last row is back (in whatever order the engine returns rows)."""
    expected = {s.id: len(s.keys) for s in shards}
    by_id = {s.id: s for s in shards}
    key = index.column_names[1]
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    got: Counter = Counter()
    with progress_bar(total=index.num_rows, desc=desc, enabled=progress) as bar:
        for batch in engine.run(index, stages, batch_rows):
            batch = as_table(batch)
            ids = batch.column("shard")
            present = pc.unique(ids).to_pylist()
            for sid in present:
                part = batch if len(present) == 1 else batch.filter(pc.equal(ids, sid))
                parts[sid].append(part)
                got[sid] += part.num_rows
                if got[sid] == expected[sid]:
                    yield by_id[sid], pa.concat_tables(parts.pop(sid)).sort_by(key)
            bar.update(batch.num_rows)
    short = [sid for sid, n in expected.items() if got[sid] != n]
    if short:
        raise CurationError(f"the {engine.name} engine returned {sum(got.values())} of {index.num_rows} rows")


def aligned(done: list[pa.Table], schema: pa.Schema, keys: list[str]) -> pa.Table:
    """The rows of `done` (a store's shards) in the order of `keys` (its key column's values)."""
    table = pa.concat_tables(done) if done else schema.empty_table()
    at = {k: i for i, k in enumerate(table.column(schema.names[0]).to_pylist())}
    return table.take(pa.array([at[k] for k in keys], type=pa.int64()))
