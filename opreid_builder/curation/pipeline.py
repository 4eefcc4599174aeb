"""`opreid curate`: raw crops -> decode + checksum -> pose -> occlusion rule -> faces -> masked crops.

Writes `OUT/private/images.parquet` (one row per raw crop, schema manifests.IMAGES),
`OUT/private/curation.json` (rule, flag, parameters, counts, refused files), the masked crops
`OUT/masked/{image_id}.jpg` and what each of them held (`OUT/cache/masked_digests.parquet`), and
with a learned occlusion flag a copy of its file (`OUT/private/occlusion_flag.json`).

This module is the driver, the same for every engine; read `curate_scan` top to bottom:

1. the read pass (read_pass.py) decodes and hashes every crop once and gives its status
   (`unreadable`, `duplicate`, `excluded`, or a candidate);
2. the content pass (content_pass.py) runs pose, the face detectors and masking on every distinct
   candidate content;
3. the occlusion flag (never cached: the paper's rule, or a learned flag, occlusion_flag.py) flags
   each candidate; a candidate without a person is kept as an occluded `ok` crop with
   `occlusion_source` `no-person` (finding nobody is itself evidence of heavy occlusion), or with
   `--no-person exclude` becomes `no_person`; review corrections override flags;
4. the images table and the curation record are written.

The stages are plain batch functions (stages.py) composed by an engine (engines.py: threads in
this process, or Ray Data). Both passes plan content-keyed shards (shards.py), hand the unfinished
ones to the engine and commit each shard when its last row comes back (shard_runs.py); the final
table is built from the shards alone. So a rerun skips finished work, a run killed at any point
(the driver or a worker) and rerun gives a byte-identical `images.parquet`, and so does a rerun with
the other engine.

Privacy: the face detector models (by default the bundled YuNet) and the pose head box of every
person found are all applied, and every crop records how many detectors ran on it
(`face_detectors`). Running without a detector model (`--face-model none`) warns on every run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from manifests import (
    IMAGE_STATUSES,
    IMAGES,
    DatasetLayout,
    atomic_write_bytes,
    atomic_write_text,
    write_manifest,
)
from opreid.version import __version__
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.content_pass import content_pass
from opreid_builder.curation.corrections import Corrections, load_corrections
from opreid_builder.curation.engines import require_ray
from opreid_builder.curation.faces import HEAD_ONLY_WARNING, FaceDetectors
from opreid_builder.curation.masked_digests import write_masked_digests
from opreid_builder.curation.masking import BLUR_WARNING
from opreid_builder.curation.occlusion import OcclusionRule
from opreid_builder.curation.occlusion_flag import NO_PERSON_SOURCE, RELEASE_FLAG_NAME, Flag, LearnedFlag
from opreid_builder.curation.pose import KeypointsFile, PoseEstimator, keypoint_source
from opreid_builder.curation.read_pass import candidates, crop_statuses, read_pass
from opreid_builder.curation.shard_runs import LazyEngine
from opreid_builder.curation.sources import SourceScan, scan_sources
from opreid_builder.curation.stages import OcclusionStage
from opreid_builder.errors import CurationError

log = logging.getLogger(__name__)

#: What the pose head box covers, by keypoint source (recorded for the card).
HEAD_BOX_SCOPE = {
    "pose": "the head of every person the pose model found",
    "keypoints-file": "the head of the person in the keypoints file",
}
#: Stage caches of opreid before shards (one keyed table per stage): never read again.
_LEGACY_CACHES = ("read", "pose", "faces", "masks")


@dataclass
class CurationResult:
    """What curate produced: the images table, counts by status and more, and the dataset.json entry."""

    images: pa.Table
    counts: dict[str, int]
    curation: dict[str, Any]
    refused: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Review:
    """What the review corrections did: how many applied, and the image ids that matched no crop."""

    applied: int = 0
    unmatched: list[str] = field(default_factory=list)


def curate(raw: Path, out: Path, config: CurateConfig, progress: bool = True) -> CurationResult:
    """Run the curation stages over RAW and write their outputs under OUT (see the module doc)."""
    if config.engine == "ray":
        require_ray()  # fail before any work when the extra is missing
    scan = scan_sources(Path(raw), config.layout)
    _check_out(scan, Path(out))
    return curate_scan(scan, Path(out), config, progress=progress)


def curate_scan(
    scan: SourceScan, out: Path, config: CurateConfig, *, mask_faces: bool = True, progress: bool = True
) -> CurationResult:
    """The curation stages over crops already listed (`scan`), e.g. a benchmark's official files.

    `mask_faces=False` runs no face detector and masks nothing (no masked crops, `faces` recorded as
    null): an import that only wants occlusion flags. `config.layout` is not used: the scan chose.
    """
    out = Path(out)
    layout = DatasetLayout(out)
    if config.engine == "ray":
        require_ray()
    corrections = load_corrections(config.corrections) if config.corrections else None
    source = keypoint_source(
        config.pose_model, config.keypoints, config.device, config.imgsz, config.half, config.batch_size,
        config.person_conf,
    )  # fmt: skip
    occlusion_flag = config.flag(isinstance(source, KeypointsFile))
    detectors = _face_detectors(config) if mask_faces else None
    out.mkdir(parents=True, exist_ok=True)
    _clean_cache(layout)
    engine = LazyEngine(config, layout, progress)

    read = read_pass(scan, layout, engine, config, progress)
    cols = crop_statuses(scan, read, config.min_size)
    picked, cand = candidates(scan, read, cols)
    if isinstance(source, KeypointsFile):
        source.check_matches(cand.column("source_path").to_pylist())
    content = content_pass(cand, scan.root, source, detectors, config, layout, engine, progress)
    taken = _apply_rule(content, cand, picked, len(scan.items), config.occlusion_rule, occlusion_flag)
    no_person = _flag_no_person(cols, taken, picked, source, config.no_person)
    review = _apply_corrections(cols, picked, corrections)

    table = _images_table(scan, read, cols, taken, masked=detectors is not None)
    write_manifest(table, layout.images_table, IMAGES)
    _keep_flag_file(layout, occlusion_flag)
    _record_masks(layout, cand, content if detectors is not None else None)
    table = table.cast(IMAGES.schema)
    counts = _counts(table, scan, review)
    curation = _curation_record(
        scan, config, source, occlusion_flag, no_person, detectors, corrections, review, counts
    )
    private = {**curation, "refused": [{"path": p, "reason": why} for p, why in scan.refused]}
    atomic_write_text(layout.curation_record, json.dumps(private, indent=2, sort_keys=True) + "\n")
    return CurationResult(table, counts, curation, list(scan.refused))


def _check_out(scan: SourceScan, out: Path) -> None:
    """OUT must not hold sources: its crops would be read back as sources on the next run.

    A folder layout reads everything under RAW, so OUT may not lie inside it; an index file lists
    its images, so only those paths matter.
    """
    out_dir = os.path.abspath(out) + os.sep
    if scan.layout == "index":
        inside = next(
            (it.source_path for it in scan.items if os.path.abspath(scan.path(it)).startswith(out_dir)), None
        )
        if inside is not None:
            raise CurationError(
                f"OUT ({out}) holds images the index lists (e.g. {inside}); choose another OUT"
            )
        return
    if (str(out.resolve()) + os.sep).startswith(str(scan.root.resolve()) + os.sep):
        raise CurationError(
            f"OUT ({out}) must not be inside RAW ({scan.root}): its crops would be read back as sources"
        )


def _face_detectors(config: CurateConfig) -> FaceDetectors:
    """The face detectors to mask with; warns when they cannot be trusted with a public release."""
    detectors = FaceDetectors(config.face_config, keypoints_available=True)
    if not detectors.models:
        log.warning(HEAD_ONLY_WARNING)
    if config.face_mask == "blur":
        log.warning(BLUR_WARNING)
    return detectors


def _clean_cache(layout: DatasetLayout) -> None:
    """Remove what a killed run or an older opreid left in the cache: work indexes, legacy caches."""
    for index in (layout.cache / "work").glob("index-*.parquet"):
        index.unlink(missing_ok=True)
    for name in _LEGACY_CACHES:
        if (layout.cache / name).is_dir():
            shutil.rmtree(layout.cache / name, ignore_errors=True)


def _keep_flag_file(layout: DatasetLayout, flag: Flag) -> None:
    """A learned flag's file beside images.parquet (byte for byte, so its sha256 is the one recorded);
    none with the paper's rule."""
    target = layout.private / RELEASE_FLAG_NAME
    if isinstance(flag, LearnedFlag):
        atomic_write_bytes(target, flag.data)
    else:
        target.unlink(missing_ok=True)


def _flag_source(source: KeypointsFile | PoseEstimator) -> str:
    return "keypoints-file" if isinstance(source, KeypointsFile) else "pose"


def _apply_rule(
    content: pa.Table, cand: pa.Table, picked: list[int], n: int, rule: OcclusionRule, flag: Flag
) -> pa.Table:
    """The occlusion flag on every candidate (with the rule's evidence), then every content column laid
    out per crop (null for crops that were no candidate)."""
    content = OcclusionStage(rule, flag)(
        content.append_column("width", cand.column("width")).append_column("height", cand.column("height"))
    )
    at: list[int | None] = [None] * n
    for j, i in enumerate(picked):
        at[i] = j
    return content.take(pa.array(at, type=pa.int64()))


def _flag_no_person(
    cols: dict[str, list], taken: pa.Table, picked: list[int], source: KeypointsFile | PoseEstimator,
    no_person: str,
) -> int:  # fmt: skip
    """Set `occluded` and `occlusion_source`; a candidate without a person becomes an occluded crop
    (source `no-person`), or `no_person` with `--no-person exclude`. Returns how many had no person."""
    flag_source = _flag_source(source)
    occluded = taken.column("occluded").to_pylist()
    sources: list[str | None] = [flag_source if v is not None else None for v in occluded]
    keypoints_missing = taken.column("keypoints").is_null().to_pylist()
    detail = "not in the keypoints file" if isinstance(source, KeypointsFile) else "no person detected"
    found_nobody = 0
    for i in picked:
        if not keypoints_missing[i]:
            continue
        found_nobody += 1
        if no_person == "occluded":
            occluded[i], sources[i] = True, NO_PERSON_SOURCE
            cols["status_detail"][i] = f"{detail}; counted occluded"
        else:
            cols["status"][i], cols["status_detail"][i] = "no_person", detail
    cols["occluded"], cols["occlusion_source"] = occluded, sources
    return found_nobody


def _apply_corrections(cols: dict[str, list], picked: list[int], corrections: Corrections | None) -> _Review:
    """Review corrections override the flags (and bring a `no_person` crop back), recording who and when."""
    n = len(cols["status"])
    cols["reviewer"], cols["reviewed_at"] = [None] * n, [None] * n
    review = _Review()
    if corrections is None:
        return review
    by_id = {cols["image_id"][i]: i for i in picked}
    for image_id, flag in corrections.flags.items():
        i = by_id.get(image_id)
        if i is None:
            review.unmatched.append(image_id)
            continue
        if cols["status"][i] == "no_person":
            cols["status"][i] = "ok"
            cols["status_detail"][i] = f"{cols['status_detail'][i]}; flag from review"
        cols["occluded"][i], cols["occlusion_source"][i] = flag, "review"
        cols["reviewer"][i], cols["reviewed_at"][i] = corrections.reviews.get(image_id, (None, None))
        review.applied += 1
    if review.unmatched:
        log.warning(
            "%d correction(s) name no ok/no_person image (e.g. %s)",
            len(review.unmatched),
            review.unmatched[0],
        )
    return review


def _images_table(
    scan: SourceScan, read: pa.Table, cols: dict[str, list], taken: pa.Table, *, masked: bool
) -> pa.Table:
    """One row per crop (schema manifests.IMAGES); face and mask columns only for released crops."""
    released = pa.array([s == "ok" for s in cols["status"]], pa.bool_())

    def when_released(name: str) -> pa.Array:
        column = taken.column(name).combine_chunks()
        return pc.if_else(released, column, pa.scalar(None, type=column.type))

    masked_path = [
        f"masked/{image_id}.jpg" if masked and status == "ok" else None
        for image_id, status in zip(cols["image_id"], cols["status"], strict=True)
    ]
    return pa.table(
        {
            "image_id": pa.array(cols["image_id"], pa.string()),
            "source_path": pa.array([it.source_path for it in scan.items], pa.string()),
            "sha256": read.column("sha256"),
            "pid": pa.array([it.pid for it in scan.items], pa.int64()),
            "camid": pa.array([it.camid for it in scan.items], pa.int64()),
            "status": pa.array(cols["status"], pa.string()),
            "status_detail": pa.array(cols["status_detail"], pa.string()),
            "width": read.column("width"),
            "height": read.column("height"),
            "duplicate_of": pa.array(cols["duplicate_of"], pa.string()),
            "keypoints": taken.column("keypoints"),
            "n_persons": taken.column("n_persons"),
            "person_index": taken.column("person_index"),
            "pose_box": taken.column("pose_box"),
            "pose_score": taken.column("pose_score"),
            "longest_missing_run": taken.column("longest_missing_run"),
            "missing_parts": taken.column("missing_parts"),
            "occluded": pa.array(cols["occluded"], pa.bool_()),
            "occlusion_source": pa.array(cols["occlusion_source"], pa.string()),
            "occlusion_score": taken.column("occlusion_score"),
            "face_boxes": when_released("face_boxes"),
            "mask_method": when_released("mask_method"),
            "masked_path": pa.array(masked_path, pa.string()),
            "face_detectors": when_released("face_detectors"),
            "reviewer": pa.array(cols["reviewer"], pa.string()),
            "reviewed_at": pa.array(cols["reviewed_at"], pa.string()),
        }
    ).combine_chunks()


def _record_masks(layout: DatasetLayout, cand: pa.Table, content: pa.Table | None) -> None:
    """Keep `masked/` to the current candidates and record what each masked crop holds; without
    masking (`content` None), no record stands."""
    if content is None:
        layout.masked_digests.unlink(missing_ok=True)
        return
    keep = {f"{i}.jpg" for i in cand.column("image_id").to_pylist()}
    if layout.masked.is_dir():  # crops of no current candidate, and temporary files a killed write left
        for f in layout.masked.iterdir():
            if f.name not in keep and (f.suffix == ".jpg" or f.name.startswith(".")) and f.is_file():
                with contextlib.suppress(OSError):
                    f.unlink()
    write_masked_digests(layout, cand.column("image_id"), content.column("masked_sha256"))


def _counts(table: pa.Table, scan: SourceScan, review: _Review) -> dict[str, int]:
    status = Counter(table.column("status").to_pylist())
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    occ = ok.column("occluded").to_pylist()
    faces = ok.column("face_boxes").to_pylist()
    counts = {f"status_{s}": status.get(s, 0) for s in IMAGE_STATUSES}
    counts.update(
        images=table.num_rows, junk=scan.junk, refused=len(scan.refused),
        occluded=sum(1 for v in occ if v), holistic=sum(1 for v in occ if v is False),
        with_face=sum(1 for b in faces if b), without_face=sum(1 for b in faces if not b),
        corrections_applied=review.applied, corrections_unmatched=len(review.unmatched),
        identities=len(set(ok.column("pid").to_pylist())), cameras=len(set(ok.column("camid").to_pylist())),
    )  # fmt: skip
    return counts


def _curation_record(
    scan: SourceScan, config: CurateConfig, source: KeypointsFile | PoseEstimator, flag: Flag, no_person: int,
    detectors: FaceDetectors | None, corrections: Corrections | None, review: _Review, counts: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    """The `curation` entry of dataset.json and the card: what ran, with which settings, and the counts."""
    faces = None
    if detectors is not None:
        faces = {
            **detectors.describe(),
            "mask": config.face_mask,
            "enlarge": config.face_enlarge,
            "head_box": HEAD_BOX_SCOPE[_flag_source(source)] if detectors.pose_head else None,
            "head_box_only": not detectors.models,
        }
    return {
        "tool_version": __version__,
        "layout": scan.layout,
        "keypoints": source.describe(),
        "occlusion": {**config.occlusion_rule.describe(), "flag": flag.describe()},
        "no_person": {"policy": config.no_person, "crops": no_person},
        "min_size": config.min_size,
        "faces": faces,
        "corrections": None
        if corrections is None
        else {
            "file": corrections.path.name,
            "sha256": corrections.sha256,
            "applied": review.applied,
            "unmatched": len(review.unmatched),
            "reviewers": sorted({r for r, _ in corrections.reviews.values() if r}),
        },
        "counts": counts,
    }
