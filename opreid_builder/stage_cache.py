"""Finished work of a curation stage, kept under `OUT/cache` so that a rerun skips it.

Each stage appends rows (keyed by content hash, or by path + size + mtime for the read stage) to
Parquet shards written atomically every few hundred rows. A run killed with SIGKILL loses at most
the rows not yet flushed; a rerun recomputes only those. Shards are merged when they pile up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import atomic_path

log = logging.getLogger(__name__)

_PREFIX = "part-"
_MAX_SHARDS = 32


class StageCache:
    """An append-only keyed table of one stage's results, stored as Parquet shards in `folder`."""

    def __init__(
        self, folder: Path, schema: pa.Schema, key: str, flush_rows: int = 256, flush_seconds: float = 20.0
    ):
        self.folder = Path(folder)
        self.schema, self.key = schema, key
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._seq = 0

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob(f"{_PREFIX}*.parquet")) if self.folder.is_dir() else []

    def load(self) -> dict[str, dict[str, Any]]:
        """Every cached row by key (later shards win); unreadable shards are ignored and removed."""
        rows: dict[str, dict[str, Any]] = {}
        shards = self._shards()
        for shard in shards:
            try:
                table = pq.read_table(shard)
                if not table.schema.remove_metadata().equals(self.schema.remove_metadata()):
                    raise ValueError("schema changed")
            except (OSError, pa.ArrowInvalid, ValueError) as exc:
                log.warning("ignoring cache shard %s (%s)", shard, exc)
                with contextlib.suppress(OSError):
                    shard.unlink()
                continue
            for row in table.to_pylist():
                rows[row[self.key]] = row
        for tmp in self.folder.glob(f".{_PREFIX}*") if self.folder.is_dir() else []:
            with contextlib.suppress(OSError):
                tmp.unlink()  # left by a killed write
        self._seq = max(
            [int(s.stem[len(_PREFIX) :]) for s in shards if s.stem[len(_PREFIX) :].isdigit()] + [0]
        )
        if len(shards) > _MAX_SHARDS and rows:
            self._rewrite(list(rows.values()), shards)
        return rows

    def put(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.flush_rows or time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        self._seq += 1
        self._write(self._buffer, self.folder / f"{_PREFIX}{self._seq:06d}.parquet")
        self._buffer = []
        self._last_flush = time.monotonic()

    def _write(self, rows: list[dict[str, Any]], path: Path) -> None:
        table = pa.Table.from_pylist(rows, schema=self.schema)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    def _rewrite(self, rows: list[dict[str, Any]], old: list[Path]) -> None:
        """Merge all shards into one: the new shard lands first, then the old ones go."""
        self._seq += 1
        self._write(rows, self.folder / f"{_PREFIX}{self._seq:06d}.parquet")
        for shard in old:
            with contextlib.suppress(OSError):
                shard.unlink()
