"""sha256 of files, streamed so large files never sit in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_tree(root: str | Path, files: Iterable[str | Path] | None = None) -> dict[str, str]:
    """Map each file (POSIX path relative to `root`) to its sha256, sorted by path."""
    root = Path(root)
    paths = (
        sorted(Path(p) for p in files)
        if files is not None
        else sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    )
    return {p.as_posix(): sha256_file(root / p) for p in paths}
