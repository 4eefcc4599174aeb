"""The hidden ground truth, aligned to the public query/gallery order that submissions follow.

`OUT/query.parquet` and `OUT/gallery.parquet` fix the order of a submission's rows and columns;
`OUT/private/ground_truth.parquet` (or `truth=`) gives pid, camid and the occlusion flag of each
image, joined on `image_id`. A split whose dataset.json marks its occlusion flags unknown (an
imported benchmark without them) gets no flags here, so no occluded/holistic breakdown is reported
for it. Any inconsistency between them is a DatasetError: scoring against a
ground truth that does not describe exactly the public images would be silently wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.errors import DatasetError
from manifests import (
    GALLERY,
    GROUND_TRUTH,
    MANIFEST_FILES,
    QUERY,
    DatasetLayout,
    ManifestError,
    occlusion_flags_known,
    read_dataset_json,
    read_manifest,
    sha256_file,
    verify_manifests,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroundTruth:
    """Labels in public order: index i of `q_*` is row i of query.parquet (and of a submission)."""

    query_ids: np.ndarray
    gallery_ids: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray
    q_occluded: np.ndarray | None
    g_occluded: np.ndarray | None
    manifests_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def num_query(self) -> int:
        return len(self.q_pids)

    @property
    def num_gallery(self) -> int:
        return len(self.g_pids)

    @property
    def has_occlusion_flags(self) -> bool:
        return self.q_occluded is not None and self.g_occluded is not None


def _first(values: pa.Array | pa.ChunkedArray, mask) -> str:
    return str(values.filter(mask)[0].as_py())


def _duplicates(ids: pa.ChunkedArray) -> pa.Array:
    if pc.count_distinct(ids).as_py() == len(ids):
        return pa.array([], type=ids.type)
    counts = pc.value_counts(ids)
    return counts.field("values").filter(pc.greater(counts.field("counts"), 1))


def _align(public: pa.Table, truth: pa.Table, split: str, truth_path: Path) -> pa.Table:
    """Rows of `truth` in the order of `public` (joined on image_id), checked for consistency."""
    ids = public.column("image_id")
    dup = _duplicates(ids)
    if len(dup):
        raise DatasetError(f"{split}.parquet lists image_id {dup[0].as_py()!r} more than once")
    index = pc.index_in(ids, value_set=truth.column("image_id"))
    missing = pc.is_null(index)
    if pc.any(missing).as_py():
        n = pc.sum(missing.cast(pa.int64())).as_py()
        raise DatasetError(
            f"{truth_path}: {n} {split} image(s) have no ground-truth row (first: {_first(ids, missing)!r})"
        )
    rows = truth.take(index)
    wrong_split = pc.not_equal(rows.column("split"), split)
    if pc.any(wrong_split).as_py():
        raise DatasetError(
            f"{truth_path}: {split} image {_first(ids, wrong_split)!r} is recorded with split "
            f"{_first(rows.column('split'), wrong_split)!r}"
        )
    wrong_cam = pc.not_equal(rows.column("camid"), public.column("camid"))
    if pc.any(wrong_cam).as_py():
        raise DatasetError(
            f"{truth_path}: camid of {split} image {_first(ids, wrong_cam)!r} differs from {split}.parquet"
        )
    return rows


def _flags(rows: pa.Table) -> np.ndarray:
    return rows.column("occluded").to_numpy(zero_copy_only=False).astype(bool)


def _known_flags(layout: DatasetLayout) -> dict[str, bool]:
    """Per split, whether the release's occlusion flags are known (dataset.json; none: they are)."""
    if not layout.dataset_json.is_file():
        return {"query": True, "gallery": True}
    try:
        info = read_dataset_json(layout.dataset_json)
    except ManifestError as exc:
        raise DatasetError(str(exc)) from None
    return {split: occlusion_flags_known(info, split) for split in ("query", "gallery")}


def load_ground_truth(data_dir: str | Path, truth: str | Path | None = None) -> GroundTruth:
    """Read the public manifests and the ground truth; raise DatasetError on anything unusable."""
    layout = DatasetLayout(data_dir)
    if not layout.root.is_dir():
        raise DatasetError(
            f"{layout.root}: not a dataset directory (expected query.parquet, gallery.parquet)"
        )
    truth_path = Path(truth) if truth is not None else layout.ground_truth
    # the scored order and labels are the release's own (a truth given apart is the caller's): exit 2
    verify_manifests(layout.root, MANIFEST_FILES if truth is None else ("query.parquet", "gallery.parquet"))
    try:
        query = read_manifest(layout.query, QUERY)
        gallery = read_manifest(layout.gallery, GALLERY)
        gt = read_manifest(truth_path, GROUND_TRUTH)
    except ManifestError as exc:
        raise DatasetError(str(exc)) from None
    if query.num_rows == 0 or gallery.num_rows == 0:
        raise DatasetError(
            f"{layout.root}: query ({query.num_rows}) and gallery ({gallery.num_rows}) must not be empty"
        )
    dup = _duplicates(gt.column("image_id"))
    if len(dup):
        raise DatasetError(f"{truth_path}: image_id {dup[0].as_py()!r} appears more than once")
    q_rows = _align(query, gt, "query", truth_path)
    g_rows = _align(gallery, gt, "gallery", truth_path)
    hashes = {
        "query": sha256_file(layout.query),
        "gallery": sha256_file(layout.gallery),
        "ground_truth": sha256_file(truth_path),
    }
    known = _known_flags(layout)
    log.debug("ground truth: %d queries, %d gallery images", query.num_rows, gallery.num_rows)
    return GroundTruth(
        query_ids=np.asarray(query.column("image_id").to_pylist(), dtype=object),
        gallery_ids=np.asarray(gallery.column("image_id").to_pylist(), dtype=object),
        q_pids=q_rows.column("pid").to_numpy().astype(np.int64),
        g_pids=g_rows.column("pid").to_numpy().astype(np.int64),
        q_camids=q_rows.column("camid").to_numpy().astype(np.int32),
        g_camids=g_rows.column("camid").to_numpy().astype(np.int32),
        q_occluded=_flags(q_rows) if known["query"] else None,
        g_occluded=_flags(g_rows) if known["gallery"] else None,
        manifests_sha256=hashes,
    )
