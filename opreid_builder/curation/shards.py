"""Content-keyed shards of curation work, and the stores that keep the finished ones.

The work of a stage is split into shards by content: the sorted keys (content hashes, or path + size
+ mtime for the checksum stage) are cut after every key whose own hash is 0 modulo the target size.
A shard is therefore named by what it holds, not by its position: adding or removing a crop changes
only the shard it falls in, and a shard that finished is found again by any later run, whichever
engine computed it.

A finished shard is one Parquet file, `cache/shards/<stage>/<stage key>/<shard id>.parquet`, written
atomically when the last of its rows comes back, with the sha256 of its bytes beside it
(`<shard id>.sha256`, written first). A run killed at any point loses only the shards in flight; a
rerun computes exactly those and gives the same files. A shard is reused only when its bytes match
that digest and it holds exactly its shard's keys: an edited, truncated or swapped shard is computed
again, with a warning, rather than trusted (its flags and masks end up in a release).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import atomic_path, atomic_write_text, sha256_bytes, sha256_file

log = logging.getLogger(__name__)

#: Crops per shard on average (the cut is content-defined; no shard is longer than 4x this).
DEFAULT_SHARD_SIZE = 512
_MAX_FACTOR = 4


@dataclass(frozen=True)
class Shard:
    """A content-named unit of work: its keys, sorted, and an id derived from them alone."""

    id: str
    keys: tuple[str, ...]


def _cut_hash(key: str) -> int:
    return int(hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:8], 16)


def plan_shards(
    keys: Sequence[str], target: int = DEFAULT_SHARD_SIZE, salt: Sequence[str] | None = None
) -> list[Shard]:
    """Cut the sorted distinct `keys` into content-defined shards of about `target` keys.

    `salt` (one string per key, e.g. the crop's path) goes into the shard id only, for stages whose
    result depends on more than the key.
    """
    if target < 1:
        raise ValueError(f"shard size must be >= 1, got {target}")
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    shards: list[Shard] = []
    current: list[int] = []

    def close() -> None:
        members = tuple(keys[i] for i in current)
        digest = hashlib.sha256()
        for i in current:
            digest.update(keys[i].encode("utf-8", "surrogateescape") + b"\0")
            if salt is not None:
                digest.update(salt[i].encode("utf-8", "surrogateescape") + b"\0")
        shards.append(Shard(digest.hexdigest()[:24], members))
        current.clear()

    for i in order:
        current.append(i)
        if _cut_hash(keys[i]) % target == 0 or len(current) >= _MAX_FACTOR * target:
            close()
    if current:
        close()
    return shards


class ShardStore:
    """Finished shards of one stage under one stage key (settings, model digest) in `folder`."""

    def __init__(self, folder: Path, schema: pa.Schema, spec: dict | None = None):
        self.folder = Path(folder)
        self.schema = schema
        self.spec = spec

    def path(self, shard: Shard) -> Path:
        return self.folder / f"{shard.id}.parquet"

    def digest_path(self, shard: Shard) -> Path:
        """Where the sha256 of the shard's file, recorded when it was written, is kept."""
        return self.folder / f"{shard.id}.sha256"

    def load(self, shard: Shard) -> pa.Table | None:
        """The shard's rows, or None when it is missing or cannot be trusted (then it is removed and redone)."""
        path = self.path(shard)
        if not path.is_file():
            return None
        try:
            data = path.read_bytes()
            table = pq.read_table(pa.BufferReader(data))
        except (OSError, pa.ArrowInvalid) as exc:
            return self._discard(shard, str(exc))
        problem = self._problem(shard, data, table)
        return table if problem is None else self._discard(shard, problem)

    def _problem(self, shard: Shard, data: bytes, table: pa.Table) -> str | None:
        """Why the shard's file cannot be reused, or None."""
        try:
            recorded = self.digest_path(shard).read_text(encoding="ascii").strip()
        except (OSError, ValueError):
            return "no digest was recorded when it was written"
        if sha256_bytes(data) != recorded:
            return "its bytes differ from the digest recorded when it was written"
        if not table.schema.remove_metadata().equals(self.schema.remove_metadata()):
            return "its columns changed"
        keys = table.column(self.schema.names[0]).to_pylist()
        if len(keys) != len(shard.keys) or sorted(keys) != list(shard.keys):
            return f"it holds {len(keys)} rows that are not its shard's {len(shard.keys)} keys"
        return None

    def _discard(self, shard: Shard, why: str) -> None:
        log.warning("computing cache shard %s again (%s)", self.path(shard), why)
        for path in (self.path(shard), self.digest_path(shard)):
            with contextlib.suppress(OSError):
                path.unlink()
        return None

    def split_done(self, shards: list[Shard]) -> tuple[list[pa.Table], list[Shard]]:
        """The tables of the shards already finished, and the shards still to compute, in order."""
        done: list[pa.Table] = []
        todo: list[Shard] = []
        for shard in shards:
            table = self.load(shard)
            if table is None:
                todo.append(shard)
            else:
                done.append(table)
        return done, todo

    def save(self, shard: Shard, table: pa.Table) -> pa.Table:
        """Write the shard's rows (the store's columns, at its types) and return them as written."""
        if self.spec is not None and not (self.folder / "spec.json").is_file():
            atomic_write_text(
                self.folder / "spec.json", json.dumps(self.spec, indent=2, sort_keys=True) + "\n"
            )
        table = table.select(self.schema.names).cast(self.schema)
        with atomic_path(self.path(shard)) as tmp:
            pq.write_table(table, tmp, compression="zstd")
            atomic_write_text(self.digest_path(shard), sha256_file(tmp) + "\n")
        return table

    def clean_temporary(self) -> None:
        """Remove temporary files a killed write left behind."""
        if self.folder.is_dir():
            for tmp in self.folder.glob(".*.tmp*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def siblings(self) -> list[Path]:
        """Stores of the same stage under other stage keys."""
        parent = self.folder.parent
        if not parent.is_dir():
            return []
        return sorted(p for p in parent.iterdir() if p.is_dir() and p != self.folder)

    def remove_siblings(self) -> None:
        for other in self.siblings():
            shutil.rmtree(other, ignore_errors=True)
