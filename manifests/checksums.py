"""sha256 of files, streamed so large files never sit in memory, and the check every command that
reads a release makes first: its manifests are the ones its dataset.json lists."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20
#: The manifests `train`, `extract` and `score` read: a row or column changed in any of them changes
#: what is trained, extracted or scored, so each must match dataset.json before it is trusted.
MANIFEST_FILES = ("train.parquet", "query.parquet", "gallery.parquet", "private/ground_truth.parquet")


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


def verify_manifests(root: str | Path, files: Iterable[str] = MANIFEST_FILES) -> None:
    """Raise ChecksumError when one of `files` (relative to the release `root`) that exists differs from
    its sha256 in dataset.json, or is not listed there.

    Cheap (the manifests only, not the images: `opreid validate` checks those). A folder without a
    dataset.json, or one that lists no checksums, is not checked here: it is no built release, and
    its readers say what it lacks.
    """
    from manifests.dataset_json import read_dataset_json
    from manifests.errors import ChecksumError

    root = Path(root)
    if not (root / "dataset.json").is_file():
        return
    listed = read_dataset_json(root).get("checksums") or {}
    if not listed:
        return
    for rel in files:
        path = root / rel
        if not path.is_file():
            continue
        digest = listed.get(rel)
        if digest is None:
            raise ChecksumError(path, "is not listed in dataset.json's checksums: added since the release was "
                                      "built; rebuild the release, or run `opreid validate` on it")  # fmt: skip
        if sha256_file(path) != digest:
            raise ChecksumError(path, "does not match its sha256 in dataset.json: modified since the release "
                                      "was built; rebuild the release or restore the file (`opreid validate` "
                                      "lists every difference)")  # fmt: skip
