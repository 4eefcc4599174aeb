"""`opreid curate`: raw crops -> read -> pose -> occlusion rule -> faces -> masked crops.

Writes `OUT/private/images.parquet` (one row per raw crop, schema manifests.IMAGES),
`OUT/private/curation.json` (rule, parameters, counts, refused files) and the masked crops
`OUT/masked/{image_id}.jpg`. Stage results are cached under `OUT/cache` by content hash, so a
rerun skips finished work, a rerun after a kill gives identical outputs, and changing a rule
parameter reruns the rule (cheap, never cached) but not pose.

Statuses, first match wins:
- `unreadable`: cannot be read or decoded (zero-byte, truncated, not an image, a directory, not a
  regular file, over `max_pixels`, a name that is not UTF-8); its image_id comes from the path,
  since there is no image content to hash.
- `duplicate`: same content as a crop earlier in path order (`duplicate_of` names it).
- `excluded`: smaller than `min_size` pixels on a side (e.g. 1x1).
- `no_person`: pose found nobody (or the keypoints file has no entry); `--no-person occluded`
  keeps it as an occluded `ok` crop instead.
- `ok`: released: masked and written to `OUT/masked/`.
Greyscale, CMYK, 16-bit and PNG-data-named-.jpg crops are converted to RGB and are `ok`
(`status_detail` says what was converted).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from manifests import (
    COCO17,
    IMAGE_STATUSES,
    IMAGES,
    DatasetLayout,
    atomic_write_bytes,
    atomic_write_text,
    progress_bar,
    sha256_bytes,
    write_manifest,
)
from opreid_builder.corrections import load_corrections
from opreid_builder.errors import CurationError
from opreid_builder.faces import FaceBox, FaceConfig, FaceDetectors
from opreid_builder.masking import BLUR_WARNING, check_method, encode_jpeg, mask_faces
from opreid_builder.occlusion import PAPER_RULE, OcclusionRule, evaluate
from opreid_builder.pose import KeypointsFile, PoseEstimator, PoseResult, keypoint_source
from opreid_builder.sources import (
    DEFAULT_MAX_PIXELS,
    SourceItem,
    SourceScan,
    prefetch,
    read_and_decode,
    scan_sources,
)
from opreid_builder.stage_cache import StageCache
from opreid_builder.version import __version__

log = logging.getLogger(__name__)

NO_PERSON_CHOICES = ("exclude", "occluded")
_FACE_TYPE = IMAGES.schema.field("face_boxes").type


@dataclass(frozen=True)
class CurateConfig:
    """Every curation option (the CLI's `curate_options` map onto these fields one to one)."""

    layout: str = "auto"
    pose_model: str | None = None  # else $OPREID_POSE_MODEL, unless `keypoints` is given
    keypoints: str | None = None
    device: str | None = None
    batch_size: int = 32
    imgsz: int | None = None
    half: bool = False
    person_conf: float = 0.25
    rule: str = PAPER_RULE.rule
    kpt_conf: float = PAPER_RULE.kpt_conf
    min_run: int = PAPER_RULE.min_run
    no_person: str = "exclude"
    min_size: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS
    face_detectors: tuple[str, ...] = ()
    face_models: tuple[str, ...] = ()
    insightface_root: str | None = None
    face_score: float = FaceConfig.score_threshold
    face_upscale: int = FaceConfig.upscale_to
    face_mask: str = "fill"
    face_enlarge: float = 1.3
    head_enlarge: float = FaceConfig.head_enlarge
    jpeg_quality: int = 95
    corrections: str | None = None
    workers: int = 2

    def __post_init__(self) -> None:
        if self.no_person not in NO_PERSON_CHOICES:
            raise CurationError(
                f"--no-person must be one of {', '.join(NO_PERSON_CHOICES)}, got {self.no_person!r}"
            )
        check_method(self.face_mask)
        if self.max_pixels < 1:
            raise CurationError(f"--max-pixels must be >= 1, got {self.max_pixels}")
        if self.batch_size < 1:
            raise CurationError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise CurationError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")
        if self.face_enlarge < 1.0 or self.head_enlarge < 1.0:
            raise CurationError("--face-enlarge and --head-enlarge must be >= 1")
        _ = self.occlusion_rule  # validates rule, kpt_conf, min_run

    @property
    def occlusion_rule(self) -> OcclusionRule:
        return OcclusionRule(self.rule, self.kpt_conf, self.min_run)

    @property
    def face_config(self) -> FaceConfig:
        return FaceConfig(
            tuple(self.face_detectors), tuple(self.face_models), self.insightface_root,
            self.face_score, self.face_upscale, self.head_enlarge,
        )  # fmt: skip


@dataclass
class CurationResult:
    """What curate produced: the images table, counts by status and more, and the dataset.json entry."""

    images: pa.Table
    counts: dict[str, int]
    curation: dict[str, Any]
    refused: list[tuple[str, str]] = field(default_factory=list)


# --- caches -------------------------------------------------------------------------------------

_SCAN_SCHEMA = pa.schema(
    [
        ("key", pa.string()), ("sha256", pa.string()), ("readable", pa.bool_()), ("detail", pa.string()),
        ("width", pa.int32()), ("height", pa.int32()),
    ]
)  # fmt: skip
_POSE_SCHEMA = pa.schema(
    [
        ("sha256", pa.string()), ("n_persons", pa.int32()), ("person_index", pa.int32()),
        ("keypoints", pa.list_(pa.float32())), ("box", pa.list_(pa.float32())), ("score", pa.float32()),
    ]
)  # fmt: skip
_FACES_SCHEMA = pa.schema([("sha256", pa.string()), ("boxes", _FACE_TYPE)])
_MASKS_SCHEMA = pa.schema([("image_id", pa.string()), ("digest", pa.string())])


def _bar(total: int, desc: str, progress: bool):
    return progress_bar(total=total, desc=desc, enabled=progress)


def _scan_key(path: Path, rel: str, max_pixels: int) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{rel}\0missing"
    return f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{'d' if path.is_dir() else 'f'}\0{max_pixels}"


def _path_id(rel: str) -> str:
    return hashlib.sha256(b"unreadable:" + rel.encode()).hexdigest()[:16]


# --- stages -------------------------------------------------------------------------------------


def _read_stage(
    scan: SourceScan, cache_dir: Path, workers: int, progress: bool, max_pixels: int
) -> list[dict[str, Any]]:
    """sha256, readability and size of every crop (cached by path + size + mtime + pixel cap)."""
    cache = StageCache(cache_dir / "read", _SCAN_SCHEMA, "key")
    done = cache.load()
    keys = [_scan_key(scan.path(it), it.source_path, max_pixels) for it in scan.items]
    todo = [(i, it) for i, (it, k) in enumerate(zip(scan.items, keys, strict=True)) if k not in done]

    def load(task: tuple[int, SourceItem]) -> dict[str, Any]:
        i, item = task
        data, decoded = scan.read(item, max_pixels)
        h = w = None
        if decoded.ok:
            h, w = decoded.rgb.shape[:2]
        return {
            "key": keys[i], "sha256": None if data is None else sha256_bytes(data), "readable": decoded.ok,
            "detail": decoded.detail, "width": w, "height": h,
        }  # fmt: skip

    with _bar(len(todo), "read", progress) as bar:
        for _, row in prefetch(todo, load, workers):
            done[row["key"]] = row
            cache.put(row)
            bar.update()
    cache.flush()
    return [done[k] for k in keys]


def _pose_stage(
    rows: list[dict[str, Any]],
    scan: SourceScan,
    estimator: PoseEstimator,
    cache_dir: Path,
    workers: int,
    progress: bool,
    max_pixels: int,
) -> dict[str, PoseResult]:
    """Pose of every distinct `ok` crop content, batched and streamed; cached by sha256 and model."""
    cache = StageCache(cache_dir / "pose" / estimator.cache_key(), _POSE_SCHEMA, "sha256")
    done = cache.load()
    todo = [r for r in rows if r["status"] == "ok" and r["sha256"] not in done]

    def load(row: dict[str, Any]) -> np.ndarray:
        _, decoded = read_and_decode(scan.root / row["source_path"], max_pixels)
        if not decoded.ok:  # changed on disk since it was read: give the model a blank crop of its size
            return np.zeros((row["height"], row["width"], 3), dtype=np.uint8)
        return decoded.rgb

    with _bar(len(todo), "pose", progress) as bar:
        stream = (
            (row["sha256"], rgb)
            for row, rgb in prefetch(todo, load, workers, window=4 * estimator.batch_size)
        )
        for sha, res in estimator.run(stream):
            entry = {
                "sha256": sha, "n_persons": res.n_persons, "person_index": res.person_index,
                "keypoints": None if res.keypoints is None else res.keypoints.reshape(-1).tolist(),
                "box": None if res.box is None else list(res.box), "score": res.score,
            }  # fmt: skip
            done[sha] = entry
            cache.put(entry)
            bar.update()
    cache.flush()
    out = {}
    for sha, e in done.items():
        kp = (
            None
            if e["keypoints"] is None
            else np.asarray(e["keypoints"], dtype=np.float32).reshape(len(COCO17), 3)
        )
        out[sha] = PoseResult(e["n_persons"], e["person_index"], kp, e["box"], e["score"])
    return out


def _mask_digest(sha: str, boxes: list[dict], config: CurateConfig) -> str:
    spec = {
        "sha256": sha, "boxes": boxes, "method": config.face_mask, "enlarge": config.face_enlarge,
        "quality": config.jpeg_quality, "version": 1,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _face_stage(
    rows: list[dict[str, Any]], scan: SourceScan, layout: DatasetLayout, detectors: FaceDetectors,
    config: CurateConfig, progress: bool,
) -> None:  # fmt: skip
    """Detect faces, mask them and write `masked/{image_id}.jpg` for every `ok` row (in place)."""
    face_cache = StageCache(layout.cache / "faces" / detectors.model_key(), _FACES_SCHEMA, "sha256")
    mask_cache = StageCache(layout.cache / "masks", _MASKS_SCHEMA, "image_id")
    model_boxes = {k: v["boxes"] for k, v in face_cache.load().items()}
    written = {k: v["digest"] for k, v in mask_cache.load().items()}
    released = [r for r in rows if r["status"] == "ok"]
    layout.masked.mkdir(parents=True, exist_ok=True)

    def boxes_of(row: dict[str, Any], found: list[dict] | None) -> list[dict]:
        kp = None if row["keypoints"] is None else np.asarray(row["keypoints"]).reshape(len(COCO17), 3)
        head = detectors.head_box(kp, row["width"], row["height"], config.kpt_conf)
        return list(found or []) + [b.as_dict() for b in head]

    todo = []
    for row in released:
        target = layout.masked / f"{row['image_id']}.jpg"
        found = model_boxes.get(row["sha256"]) if detectors.models else []
        if (
            found is None
            or written.get(row["image_id"]) != _mask_digest(row["sha256"], boxes_of(row, found), config)
            or not target.is_file()
        ):
            todo.append(row)

    def work(row: dict[str, Any]) -> tuple[list[dict], str]:
        _, decoded = read_and_decode(scan.root / row["source_path"], config.max_pixels)
        rgb = decoded.rgb if decoded.ok else np.zeros((row["height"], row["width"], 3), dtype=np.uint8)
        found = model_boxes.get(row["sha256"])
        if found is None:
            found = [b.as_dict() for b in detectors.detect_models(rgb)] if detectors.models else []
        boxes = boxes_of(row, found)
        masked = mask_faces(rgb, [FaceBox(**b) for b in boxes], config.face_mask, config.face_enlarge)
        atomic_write_bytes(layout.masked / f"{row['image_id']}.jpg", encode_jpeg(masked, config.jpeg_quality))
        return found, _mask_digest(row["sha256"], boxes, config)

    with _bar(len(todo), "faces", progress) as bar:
        for row, (found, digest) in prefetch(todo, work, config.workers if not detectors.models else 0):
            if detectors.models and row["sha256"] not in model_boxes:
                model_boxes[row["sha256"]] = found
                face_cache.put({"sha256": row["sha256"], "boxes": found})
            mask_cache.put({"image_id": row["image_id"], "digest": digest})
            bar.update()
    face_cache.flush()
    mask_cache.flush()
    for row in released:
        found = model_boxes.get(row["sha256"], []) if detectors.models else []
        boxes = boxes_of(row, found)
        row["face_boxes"] = boxes
        row["mask_method"] = config.face_mask if boxes else "none"
        row["masked_path"] = f"masked/{row['image_id']}.jpg"
    keep = {f"{r['image_id']}.jpg" for r in released}
    for f in layout.masked.iterdir():
        if f.name not in keep and (f.suffix == ".jpg" or f.name.startswith(".")) and f.is_file():
            f.unlink()  # a crop no longer released, or a temp file left by a kill


# --- the pipeline -------------------------------------------------------------------------------


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


def curate(raw: Path, out: Path, config: CurateConfig, progress: bool = True) -> CurationResult:
    """Run the curation stages over RAW and write their outputs under OUT (see the module doc)."""
    scan = scan_sources(Path(raw), config.layout)
    _check_out(scan, Path(out))
    return curate_scan(scan, Path(out), config, progress=progress)


def curate_scan(
    scan: SourceScan, out: Path, config: CurateConfig, *, mask_faces: bool = True, progress: bool = True
) -> CurationResult:
    """The curation stages over crops already listed (`scan`), e.g. a benchmark's official files.

    `mask_faces=False` skips the face stage: no masked crops, `faces` recorded as null (an import
    that only wants occlusion flags). `config.layout` is not used: the scan already chose the crops.
    """
    out = Path(out)
    layout = DatasetLayout(out)
    rule = config.occlusion_rule
    corrections = load_corrections(config.corrections) if config.corrections else None
    source = keypoint_source(
        config.pose_model, config.keypoints, config.device, config.imgsz, config.half, config.batch_size,
        config.person_conf,
    )  # fmt: skip
    detectors = FaceDetectors(config.face_config, keypoints_available=True) if mask_faces else None
    if mask_faces and config.face_mask == "blur":
        log.warning(BLUR_WARNING)
    out.mkdir(parents=True, exist_ok=True)

    # 1. read: hash, decode check, size; statuses unreadable / duplicate / excluded
    read = _read_stage(scan, layout.cache, config.workers, progress, config.max_pixels)
    rows: list[dict[str, Any]] = []
    first_of: dict[str, str] = {}
    for item, r in zip(scan.items, read, strict=True):
        row: dict[str, Any] = {c: None for c in IMAGES.columns}
        row.update(source_path=item.source_path, pid=item.pid, camid=item.camid, sha256=r["sha256"])
        row.update(width=r["width"], height=r["height"], status_detail=r["detail"])
        if not r["readable"]:
            row.update(image_id=_path_id(item.source_path), status="unreadable")
        else:
            row["image_id"] = r["sha256"][:16]
            if r["sha256"] in first_of:
                row.update(status="duplicate", duplicate_of=first_of[r["sha256"]])
            elif min(r["width"], r["height"]) < config.min_size:
                first_of[r["sha256"]] = item.source_path
                row.update(
                    status="excluded",
                    status_detail=f"too small ({r['width']}x{r['height']} < {config.min_size} px)",
                )
            else:
                first_of[r["sha256"]] = item.source_path
                row["status"] = "ok"
        rows.append(row)

    # 2. pose, and 3. the occlusion rule
    if isinstance(source, KeypointsFile):
        poses = {r["sha256"]: source.lookup(r["source_path"]) for r in rows if r["status"] == "ok"}
        occlusion_source = "keypoints-file"
    else:
        poses = _pose_stage(rows, scan, source, layout.cache, config.workers, progress, config.max_pixels)
        occlusion_source = "pose"
    for row in rows:
        if row["status"] != "ok":
            continue
        res = poses[row["sha256"]]
        row.update(n_persons=res.n_persons, person_index=res.person_index)
        if res.keypoints is None:
            detail = (
                "not in the keypoints file" if isinstance(source, KeypointsFile) else "no person detected"
            )
            if config.no_person == "occluded":
                row.update(
                    occluded=True,
                    occlusion_source=occlusion_source,
                    status_detail=f"{detail}; counted occluded",
                )
            else:
                row.update(status="no_person", status_detail=detail)
            continue
        occ = evaluate(res.keypoints, row["width"], row["height"], rule)
        row.update(
            keypoints=res.keypoints.reshape(-1).tolist(), longest_missing_run=occ.longest_run,
            missing_parts=list(occ.missing_parts), occluded=occ.occluded, occlusion_source=occlusion_source,
        )  # fmt: skip

    # review corrections override the flags
    applied, ignored = 0, []
    if corrections is not None:
        by_id = {r["image_id"]: r for r in rows if r["status"] in ("ok", "no_person")}
        for image_id, flag in corrections.flags.items():
            row = by_id.get(image_id)
            if row is None:
                ignored.append(image_id)
                continue
            if row["status"] == "no_person":
                row.update(status="ok", status_detail=f"{row['status_detail']}; flag from review")
            row.update(occluded=flag, occlusion_source="review")
            applied += 1
        if ignored:
            log.warning("%d correction(s) name no ok/no_person image (e.g. %s)", len(ignored), ignored[0])

    # 4. faces and masking
    if detectors is not None:
        _face_stage(rows, scan, layout, detectors, config, progress)

    table = pa.Table.from_pylist(rows, schema=IMAGES.schema)
    write_manifest(table, layout.images_table, IMAGES)
    counts = _counts(rows, scan, applied, len(ignored))
    curation = {
        "tool_version": __version__,
        "layout": scan.layout,
        "keypoints": source.describe(),
        "occlusion": rule.describe(),
        "no_person": config.no_person,
        "min_size": config.min_size,
        "faces": None
        if detectors is None
        else {**detectors.describe(), "mask": config.face_mask, "enlarge": config.face_enlarge},
        "corrections": None
        if corrections is None
        else {
            "file": corrections.path.name,
            "sha256": corrections.sha256,
            "applied": applied,
            "unmatched": len(ignored),
        },
        "counts": counts,
    }
    private = {**curation, "refused": [{"path": p, "reason": why} for p, why in scan.refused]}
    atomic_write_text(layout.curation_record, json.dumps(private, indent=2, sort_keys=True) + "\n")
    return CurationResult(table, counts, curation, list(scan.refused))


def _counts(rows: list[dict[str, Any]], scan: SourceScan, applied: int, unmatched: int) -> dict[str, int]:
    status = Counter(r["status"] for r in rows)
    ok = [r for r in rows if r["status"] == "ok"]
    counts = {f"status_{s}": status.get(s, 0) for s in IMAGE_STATUSES}
    counts.update(
        images=len(rows), junk=scan.junk, refused=len(scan.refused),
        occluded=sum(1 for r in ok if r["occluded"]), holistic=sum(1 for r in ok if r["occluded"] is False),
        with_face=sum(1 for r in ok if r["face_boxes"]), without_face=sum(1 for r in ok if not r["face_boxes"]),
        corrections_applied=applied, corrections_unmatched=unmatched,
        identities=len({r["pid"] for r in ok}), cameras=len({r["camid"] for r in ok}),
    )  # fmt: skip
    return counts


def config_dict(config: CurateConfig) -> dict[str, Any]:
    """The config as plain JSON values (for logs and run records)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
