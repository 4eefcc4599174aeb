"""The decoded-crop cache (docs/model.md §6.4): every training crop decoded and resized once to the input
size, stored as uint8 in one memory-mapped `.npy` file (N x H x W x 3), so that a training step only
gathers rows instead of decoding JPEGs.

The file's name carries its key: a sha256 over the cache format, the input size, the resize (bicubic,
the Pillow version) and the sorted, unique sha256 of the images' bytes; row r holds the r-th of those
images. Every run and seed at that size reuses it (so do validation splits held out of the same
training set, which are subsets of it), and a changed image, size or resize gives another key, hence a
new build. Zero padding for the crop augmentation is not stored: it is constant, and the crop is
taken on the fly (batch_augment.flip_pad_crop).

A build holds an exclusive lock (concurrent runs and DDP ranks build once and share) and writes a
temporary file that is renamed into place when complete: a killed build leaves only that temporary
file, which no reader opens and the next build of the same key removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from torch.utils.data import DataLoader, Dataset

from manifests import DatasetLayout, atomic_path, progress_bar, sha256_file
from reid_model.config import InputConfig
from reid_model.data.datasets import load_image
from reid_model.data.transforms import resize
from reid_model.errors import DataError

log = logging.getLogger(__name__)

#: Bumped whenever what a row holds changes (layout, resize, colour conversion).
FORMAT = 1


@dataclass(frozen=True)
class CropCache:
    path: Path
    array: np.ndarray  # N x H x W x 3 uint8, memory-mapped read-only
    rows: dict[str, int]  # image sha256 -> row
    built: bool  # whether this call built the file (False: an existing one was reused)

    def rows_of(self, checksums: Sequence[str]) -> np.ndarray:
        return np.asarray([self.rows[c] for c in checksums], dtype=np.int64)


def image_checksums(paths: Sequence[Path]) -> list[str]:
    """The sha256 of each image's bytes (what the cache is keyed by, never a path or a timestamp)."""
    out = []
    for path in paths:
        try:
            out.append(sha256_file(path))
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc.__class__.__name__}") from None
    return out


def cache_key(checksums: Sequence[str], height: int, width: int) -> str:
    body = {"format": FORMAT, "size": [height, width], "resize": "bicubic", "pillow": PIL.__version__,
            "images": sorted(set(checksums))}  # fmt: skip
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def cache_file(folder: Path, checksums: Sequence[str], height: int, width: int) -> Path:
    return Path(folder) / f"crops-{height}x{width}-{cache_key(checksums, height, width)[:32]}.npy"


def _open(path: Path, count: int, height: int, width: int) -> np.ndarray | None:
    """The cache at `path` if it is there and whole, else None (a damaged file is rebuilt over)."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.warning("decoded-crop cache %s is unreadable (%s); rebuilding it", path, exc.__class__.__name__)
        return None
    if array.dtype != np.uint8 or array.shape != (count, height, width, 3):
        log.warning("decoded-crop cache %s has shape %s, expected %s; rebuilding it", path, array.shape,
                    (count, height, width, 3))  # fmt: skip
        return None
    return array


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _Crops(Dataset):
    def __init__(self, paths: Sequence[Path], cfg: InputConfig):
        self.paths, self.resize = list(paths), resize(cfg)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.resize(load_image(self.paths[index])), dtype=np.uint8)


def _stack(items: list[np.ndarray]) -> np.ndarray:
    return np.stack(items)


def _build(path: Path, paths: Sequence[Path], cfg: InputConfig, workers: int, progress: bool) -> None:
    """Decode and resize `paths` (row order) into `path`, atomically; memory stays at a few batches."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):  # a killed build's (we hold the lock)
        leftover.unlink(missing_ok=True)
    shape = (len(paths), cfg.height, cfg.width, 3)
    loader = DataLoader(_Crops(paths, cfg), batch_size=64, num_workers=workers, collate_fn=_stack)
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        start = 0
        bar = progress_bar(total=len(paths), desc="crop cache", enabled=progress)
        for batch in loader:
            array[start : start + len(batch)] = batch
            start += len(batch)
            bar.update(len(batch))
        bar.close()
        array.flush()
        del array
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())


def open_crop_cache(
    paths: Sequence[Path],
    checksums: Sequence[str],
    cfg: InputConfig,
    folder: str | Path,
    *,
    workers: int = 0,
    progress: bool = False,
) -> CropCache:
    """The cache of these images at `cfg`'s input size in `folder`: reused when there, else built."""
    if len(paths) != len(checksums):
        raise ValueError("one checksum per path")
    unique = sorted(set(checksums))
    rows = {c: r for r, c in enumerate(unique)}
    target = cache_file(Path(folder), unique, cfg.height, cfg.width)
    array = _open(target, len(unique), cfg.height, cfg.width)
    built = False
    if array is None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with _exclusive(target):
                array = _open(target, len(unique), cfg.height, cfg.width)  # another process may have built it
                if array is None:
                    first = {}
                    for path, checksum in zip(paths, checksums, strict=True):
                        first.setdefault(checksum, Path(path))
                    log.info("building the decoded-crop cache %s (%d crops at %dx%d)", target, len(unique),
                             cfg.height, cfg.width)  # fmt: skip
                    _build(target, [first[c] for c in unique], cfg, workers, progress)
                    array = _open(target, len(unique), cfg.height, cfg.width)
                    built = True
        except OSError as exc:
            raise DataError(
                f"cannot write the decoded-crop cache in {target.parent}: {exc.strerror or exc}"
            ) from None
        if array is None:  # pragma: no cover - a file we just wrote and renamed does not read back
            raise DataError(f"the decoded-crop cache {target} does not read back after its build")
    return CropCache(target, array, rows, built)


def writable_folder(folder: Path) -> bool:
    """Whether a cache can be built in `folder` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def default_cache_folder(data_root: Path, run_dir: Path, configured: str) -> Path:
    """`loader.cache_dir`, else the release's cache folder, else (a read-only release) the run folder's."""
    if configured:
        return Path(configured)
    release = DatasetLayout(data_root).cache / "crops"
    if writable_folder(release):
        return release
    fallback = Path(run_dir) / "cache" / "crops"
    log.warning("%s is not writable; the decoded-crop cache goes to %s", release, fallback)
    return fallback
