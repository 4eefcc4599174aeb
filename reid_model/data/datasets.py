"""Datasets over a built dataset folder OUT (the manifests contract) and their loaders.

Train items are addressed by (row, sample seed) pairs coming from the PK sampler stream, so a
batch is a pure function of the global step. Query/gallery are read in their public row order
(the order of every submission's rows and columns).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

import manifests
from manifests import DatasetLayout
from reid_model.data.sampler import PKSampler
from reid_model.data.transforms import seeded_apply
from reid_model.errors import DataError


@dataclass(frozen=True)
class TrainRecords:
    paths: list[Path]
    pids: np.ndarray
    camids: np.ndarray
    occluded: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.pids.max()) + 1


@dataclass(frozen=True)
class SplitRecords:
    """Query or gallery rows in public order; pids only when the private ground truth is present."""

    image_ids: list[str]
    paths: list[Path]
    camids: np.ndarray
    pids: np.ndarray | None = None


def _check_root(root: Path) -> DatasetLayout:
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    manifests.verify_manifests(root)  # a manifest edited since the build would train or extract silently
    return DatasetLayout(root)


def read_train(root: str | Path) -> TrainRecords:
    layout = _check_root(Path(root))
    table = manifests.read_manifest(layout.train, manifests.TRAIN)
    if table.num_rows == 0:
        raise DataError(f"{layout.train}: no training images")
    pids = np.asarray(table.column("pid").to_numpy(), dtype=np.int64)
    uniq = np.unique(pids)
    if uniq[0] != 0 or uniq[-1] != len(uniq) - 1:
        raise DataError(
            f"{layout.train}: pids must be remapped to 0..N-1 (found {len(uniq)} ids, max {uniq[-1]})"
        )
    paths = [layout.resolve(p) for p in table.column("path").to_pylist()]
    camids = np.asarray(table.column("camid").to_numpy(), dtype=np.int64)
    occluded = np.asarray(table.column("occluded").to_numpy(zero_copy_only=False), dtype=bool)
    return TrainRecords(paths, pids, camids, occluded)


@dataclass(frozen=True)
class ValidationSplit:
    """Training identities held out as a query/gallery split, for choosing checkpoints (never test labels)."""

    query: SplitRecords
    gallery: SplitRecords
    ids: int


def hold_out_identities(records: TrainRecords, count: int, seed: int) -> tuple[TrainRecords, ValidationSplit]:
    """Take `count` identities (drawn with `seed`) out of training and make them a validation split.

    Each held-out identity seen by two or more cameras gives one query image (an occluded one when
    it has any, as the OPReID protocol queries with occluded images; otherwise any), drawn at
    random; all its other images go to the gallery. Identities seen by one camera only could never
    match across cameras: they join the gallery as distractors. The remaining training identities
    are renumbered 0..N-1 in their original order.
    """
    ids = np.unique(records.pids)
    if not 0 < count <= len(ids) - 2:
        raise DataError(
            f"--val-ids {count}: the release has {len(ids)} training identities; hold out between 1 and "
            f"{len(ids) - 2}"
        )
    rng = np.random.default_rng([seed, 0x7A1])
    held = np.sort(rng.choice(ids, size=count, replace=False))
    is_held = np.isin(records.pids, held)
    query_rows, gallery_rows = [], []
    for pid in held:
        rows = np.flatnonzero(records.pids == pid)
        if len(np.unique(records.camids[rows])) < 2:
            gallery_rows.extend(rows.tolist())
            continue
        pool = rows[records.occluded[rows]] if records.occluded[rows].any() else rows
        q = int(rng.choice(pool))
        query_rows.append(q)
        gallery_rows.extend(int(r) for r in rows if r != q)
    if not query_rows:
        raise DataError(f"--val-ids {count}: no held-out identity was seen by two cameras; hold out more")

    def split(rows: list[int]) -> SplitRecords:
        rows = sorted(rows)
        return SplitRecords(
            [records.paths[r].name for r in rows], [records.paths[r] for r in rows],
            records.camids[rows], records.pids[rows],
        )  # fmt: skip

    keep = np.flatnonzero(~is_held)
    remaining = np.unique(records.pids[keep])
    remap = np.full(int(records.pids.max()) + 1, -1, dtype=np.int64)
    remap[remaining] = np.arange(len(remaining))
    train = TrainRecords(
        [records.paths[r] for r in keep],
        remap[records.pids[keep]],
        records.camids[keep],
        records.occluded[keep],
    )
    return train, ValidationSplit(split(query_rows), split(gallery_rows), count)


def read_split(root: str | Path, split: str, with_truth: bool = True) -> SplitRecords:
    """Query or gallery rows; attaches pids from private/ground_truth.parquet when present and asked for."""
    layout = _check_root(Path(root))
    schema = manifests.QUERY if split == "query" else manifests.GALLERY
    table = manifests.read_manifest(layout.manifest(split), schema)
    ids = table.column("image_id").to_pylist()
    paths = [layout.resolve(p) for p in table.column("path").to_pylist()]
    camids = np.asarray(table.column("camid").to_numpy(), dtype=np.int64)
    pids = None
    if with_truth and layout.ground_truth.is_file():
        gt = manifests.read_manifest(layout.ground_truth, manifests.GROUND_TRUTH)
        lookup = {
            i: p
            for i, s, p in zip(
                gt.column("image_id").to_pylist(),
                gt.column("split").to_pylist(),
                gt.column("pid").to_pylist(),
                strict=True,
            )
            if s == split
        }
        missing = [i for i in ids if i not in lookup]
        if missing:
            raise DataError(f"{layout.ground_truth}: no {split} entry for image {missing[0]!r}")
        pids = np.asarray([lookup[i] for i in ids], dtype=np.int64)
    return SplitRecords(ids, paths, camids, pids)


def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read image {path}: {exc.__class__.__name__}") from None


class TrainDataset(Dataset):
    def __init__(self, records: TrainRecords, transform):
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records.paths)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        image = seeded_apply(self.transform, load_image(self.records.paths[index]), seed)
        return image, int(self.records.pids[index]), int(self.records.camids[index])


class ImageListDataset(Dataset):
    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.paths[index]))


def sample_seed(seed: int, step: int, rank: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, position]).generate_state(1)[0])


class SeededBatches:
    """Batch sampler over (row, seed) keys: the PK stream from global step `start` on, never ending."""

    def __init__(self, sampler: PKSampler, start: int, seed: int):
        self.sampler, self.start, self.seed = sampler, start, seed

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step, batch in enumerate(self.sampler.batches(self.start), start=self.start):
            yield [(i, sample_seed(self.seed, step, self.sampler.rank, pos)) for pos, i in enumerate(batch)]


def _collate_train(items):
    images, pids, camids = zip(*items, strict=True)
    return torch.stack(images), torch.tensor(pids), torch.tensor(camids)


def train_loader(dataset: TrainDataset, batches: SeededBatches, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_collate_train,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def image_loader(paths: list[Path], transform, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(
        ImageListDataset(paths, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )
