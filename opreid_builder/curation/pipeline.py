"""`opreid curate`: raw crops -> decode + checksum -> pose -> occlusion rule -> faces -> masked crops.

Writes `OUT/private/images.parquet` (one row per raw crop, schema manifests.IMAGES),
`OUT/private/curation.json` (rule, flag, parameters, counts, refused files), the masked crops
`OUT/masked/{image_id}.jpg`, and with a learned occlusion flag a copy of its file
(`OUT/private/occlusion_flag.json`, occlusion_flag.py).

The stages are plain batch functions (curate_stages.py) composed by an engine (curate_engines.py:
threads in this process, or Ray Data). This module is the driver, the same for every engine: it
plans content-keyed shards (curate_shards.py), hands the unfinished ones to the engine, commits
each shard when its last row comes back, and builds the final table from the shards alone. So a
rerun skips finished work, a run killed at any point (the driver or a worker) and rerun gives a
byte-identical `images.parquet`, and so does a rerun with the other engine. Changing a rule
parameter reruns the rule (cheap, never cached) but not pose; changing the face detectors or the
mask re-masks (and says so when the detectors changed) but reruns no pose.

Two passes: every file is hashed and decoded once (statuses need all hashes: a duplicate is the
same content as a crop earlier in path order), then each distinct `ok` content goes through pose,
faces and masking.

Statuses, first match wins:
- `unreadable`: cannot be read or decoded (zero-byte, truncated, not an image, a directory, not a
  regular file, over `max_pixels`, a name that is not UTF-8); its image_id comes from the path,
  since there is no image content to hash.
- `duplicate`: same content as a crop earlier in path order (`duplicate_of` names it).
- `excluded`: smaller than `min_size` pixels on a side (e.g. 1x1).
- `no_person`: pose found nobody (or the keypoints file has no entry) and `--no-person exclude`
  was asked for; by default (`--no-person occluded`) such a crop is an `ok` crop flagged occluded
  with `occlusion_source` `no-person`: finding nobody is itself evidence of heavy occlusion.
- `ok`: released: masked and written to `OUT/masked/`.
Greyscale, CMYK, 16-bit and PNG-data-named-.jpg crops are converted to RGB and are `ok`
(`status_detail` says what was converted).

Privacy: the face detector models (by default the bundled YuNet) and the pose head box of every
person found are all applied, and every crop records how many detectors ran on it
(`face_detectors`). Running without a detector model (`--face-model none`) warns on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
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
    progress_bar,
    write_manifest,
)
from opreid.version import __version__
from opreid_builder.curation.corrections import load_corrections
from opreid_builder.curation.engines import EngineConfig, StageSpec, make_engine, require_ray
from opreid_builder.curation.faces import HEAD_ONLY_WARNING, FaceConfig, FaceDetectors, detector_summary
from opreid_builder.curation.masking import BLUR_WARNING, check_method
from opreid_builder.curation.occlusion import PAPER_RULE, OcclusionRule
from opreid_builder.curation.occlusion_flag import (
    DEFAULT_NO_PERSON,
    NO_PERSON_CHOICES,
    RELEASE_FLAG_NAME,
    Flag,
    LearnedFlag,
    load_flag,
)
from opreid_builder.curation.pose import KeypointsFile, PoseEstimator, keypoint_source
from opreid_builder.curation.shards import DEFAULT_SHARD_SIZE, Shard, ShardStore, plan_shards
from opreid_builder.curation.sources import DEFAULT_MAX_PIXELS, NOT_UTF8, SourceScan, scan_sources
from opreid_builder.curation.stages import (
    COLUMN_TYPES,
    FACE_COLUMNS,
    MASK_COLUMNS,
    POSE_COLUMNS,
    READ_COLUMNS,
    ChecksumStage,
    FaceStage,
    KeypointsFileStage,
    LoadStage,
    MaskSettings,
    MaskStage,
    OcclusionStage,
    PoseSettings,
    PoseStage,
    WriteMaskedStage,
    as_table,
)
from opreid_builder.errors import CurationError

log = logging.getLogger(__name__)

#: occlusion_source of a crop where pose found nobody, kept and flagged occluded.
NO_PERSON_SOURCE = "no-person"
#: Bumped when a stage's output for the same input changes (old shards are then ignored).
STAGE_VERSION = {"read": 1, "pose": 1, "faces": 1, "masks": 1}
#: What the pose head box covers, by keypoint source (recorded for the card).
HEAD_BOX_SCOPE = {
    "pose": "the head of every person the pose model found",
    "keypoints-file": "the head of the person in the keypoints file",
}


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
    occlusion_flag: str | None = None  # paper | learned | a flag file; None: occlusion_flag.DEFAULT_FLAG
    no_person: str = DEFAULT_NO_PERSON
    min_size: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS
    face_detectors: tuple[str, ...] = ()
    face_models: tuple[str, ...] = ()  # empty: $OPREID_FACE_MODEL, else the bundled YuNet; ("none",): off
    insightface_root: str | None = None
    face_score: float = FaceConfig.score_threshold
    face_upscale: int = FaceConfig.upscale_to
    face_mask: str = "fill"
    face_enlarge: float = 1.3
    head_enlarge: float = FaceConfig.head_enlarge
    jpeg_quality: int = 95
    corrections: str | None = None
    workers: int = 2
    engine: str = EngineConfig.engine
    ray_address: str | None = None
    pose_actors: int = EngineConfig.pose_actors
    face_actors: int = EngineConfig.face_actors
    pose_gpus: float | None = None
    shard_size: int = DEFAULT_SHARD_SIZE

    def __post_init__(self) -> None:
        if self.no_person not in NO_PERSON_CHOICES:
            raise CurationError(
                f"--no-person must be one of {', '.join(NO_PERSON_CHOICES)}, got {self.no_person!r}"
            )
        check_method(self.face_mask)
        if self.batch_size < 1:
            raise CurationError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise CurationError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")
        if self.face_enlarge < 1.0 or self.head_enlarge < 1.0:
            raise CurationError("--face-enlarge and --head-enlarge must be >= 1")
        if self.max_pixels < 1:
            raise CurationError(f"--max-pixels must be >= 1, got {self.max_pixels}")
        if self.shard_size < 1:
            raise CurationError(f"--shard-size must be >= 1, got {self.shard_size}")
        _ = self.occlusion_rule  # validates rule, kpt_conf, min_run
        _ = self.engine_config  # validates the engine options

    @property
    def occlusion_rule(self) -> OcclusionRule:
        return OcclusionRule(self.rule, self.kpt_conf, self.min_run)

    def flag(self, from_keypoints_file: bool) -> Flag:
        """The occlusion flag these options name, for a pose model or a keypoints file."""
        return load_flag(self.occlusion_flag, self.occlusion_rule, from_keypoints_file=from_keypoints_file)

    @property
    def face_config(self) -> FaceConfig:
        return FaceConfig(
            tuple(self.face_detectors), tuple(self.face_models), self.insightface_root,
            self.face_score, self.face_upscale, self.head_enlarge,
        )  # fmt: skip

    @property
    def engine_config(self) -> EngineConfig:
        return EngineConfig(self.engine, self.ray_address, self.pose_actors, self.face_actors, self.pose_gpus)


@dataclass
class CurationResult:
    """What curate produced: the images table, counts by status and more, and the dataset.json entry."""

    images: pa.Table
    counts: dict[str, int]
    curation: dict[str, Any]
    refused: list[tuple[str, str]] = field(default_factory=list)


def _digest(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _schema(key: str, columns: tuple[str, ...]) -> pa.Schema:
    return pa.schema([(key, pa.string()), *((c, COLUMN_TYPES[c]) for c in columns)])


_READ_SCHEMA = _schema("key", READ_COLUMNS)
_POSE_SCHEMA = _schema("sha256", POSE_COLUMNS)
_FACES_SCHEMA = _schema("sha256", FACE_COLUMNS)
_MASKS_SCHEMA = _schema("sha256", MASK_COLUMNS)


def _scan_key(path: Path, rel: str, max_pixels: int) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{rel}\0missing"
    return f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{'d' if path.is_dir() else 'f'}\0{max_pixels}"


def _path_id(rel: str) -> str:
    return hashlib.sha256(b"unreadable:" + rel.encode()).hexdigest()[:16]


class _Engine:
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


# --- pass 1: decode + checksum ---------------------------------------------------------------


def _read_pass(
    scan: SourceScan, layout: DatasetLayout, engine: _Engine, config: CurateConfig, progress: bool
) -> pa.Table:
    """sha256, readability and size of every crop, aligned with `scan.items` (cached by path + size +
    mtime + pixel cap). A crop whose name is not UTF-8 is never read: it cannot be recorded as it is."""
    keys = [_scan_key(scan.path(it), it.source_path, config.max_pixels) for it in scan.items]
    paths = {k: it.source_path for k, it in zip(keys, scan.items, strict=True)}
    undecodable = [
        k for k, it in zip(keys, scan.items, strict=True) if it.source_path in scan.undecodable_names
    ]
    store = ShardStore(layout.cache / "shards" / "read" / f"v{STAGE_VERSION['read']}", _READ_SCHEMA)
    store.clean_temporary()
    skipped = set(undecodable)
    shards = plan_shards([k for k in keys if k not in skipped], config.shard_size)
    tables: list[pa.Table] = []
    if undecodable:
        tables.append(pa.table(
            {"key": undecodable, "sha256": [None] * len(undecodable), "readable": [False] * len(undecodable),
             "detail": [NOT_UTF8] * len(undecodable), "width": [None] * len(undecodable),
             "height": [None] * len(undecodable)}, schema=_READ_SCHEMA,
        ))  # fmt: skip
    done, todo = store.split_done(shards)
    tables += done
    if todo:
        index = pa.table(
            {
                "shard": [s.id for s in todo for _ in s.keys],
                "key": [k for s in todo for k in s.keys],
                "source_path": [paths[k] for s in todo for k in s.keys],
            }
        )
        stages = [
            StageSpec("checksum", ChecksumStage, (str(scan.root.resolve()), config.max_pixels), batch_size=64)
        ]
        for shard, table in run_shards(engine.get(), todo, index, stages, 64, progress, "read"):
            tables.append(store.save(shard, table))
    done = pa.concat_tables(tables, promote_options="none") if tables else _READ_SCHEMA.empty_table()
    position = {k: i for i, k in enumerate(done.column("key").to_pylist())}
    return done.take(pa.array([position[k] for k in keys], type=pa.int64()))


# --- pass 2: pose, faces, masks per distinct content -------------------------------------------


def _activate_masks(store: ShardStore, spec: dict[str, Any]) -> None:
    """Make `store` the one whose masks `masked/` holds; say so when the detectors changed.

    `masked/{image_id}.jpg` has one name whatever the mask settings, so only one mask store can be
    trusted: the one recorded here, written before any file is masked under it.
    """
    marker = store.folder.parent / "active.json"
    previous = None
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(marker.read_text(encoding="utf-8"))
    key = store.folder.name
    if isinstance(previous, dict) and previous.get("key") == key:
        return
    old = (previous or {}).get("spec", {}).get("faces") if isinstance(previous, dict) else None
    if old is not None:
        before, now = detector_summary(old), detector_summary(spec["faces"])
        if _detector_set(old) != _detector_set(spec["faces"]):
            log.warning(
                "the face detectors differ from those of the cached masks (%s before, %s now): "
                "masking every crop again", before, now,
            )  # fmt: skip
        else:
            log.info("the masking settings changed: masking every crop again")
    store.remove_siblings()
    atomic_write_text(marker, json.dumps({"key": key, "spec": spec}, indent=2, sort_keys=True) + "\n")


def _detector_set(faces: dict[str, Any]) -> tuple:
    """What makes two runs' face detectors the same: their names and each model file's content."""
    models = sorted((m.get("detector"), m.get("sha256")) for m in faces.get("models") or [])
    return tuple(faces.get("detectors") or []), tuple(models)


def _content_pass(
    cand: pa.Table, raw_root: Path, source: KeypointsFile | PoseEstimator, detectors: FaceDetectors,
    config: CurateConfig, layout: DatasetLayout, engine: _Engine, progress: bool,
) -> pa.Table:  # fmt: skip
    """Pose, model face boxes and masks of every candidate content (`cand`: sha256, image_id,
    source_path, width, height; distinct sha256), aligned with `cand`; masked crops written.
    Without `detectors` (nothing to mask) only pose runs, and the mask columns are null."""
    if detectors is None:
        return _pose_pass(cand, raw_root, source, config, layout, engine, progress)
    shas = cand.column("sha256").to_pylist()
    image_ids = dict(zip(shas, cand.column("image_id").to_pylist(), strict=True))
    row_of = {sha: i for i, sha in enumerate(shas)}
    from_file = isinstance(source, KeypointsFile)
    shards = plan_shards(
        shas, config.shard_size, cand.column("source_path").to_pylist() if from_file else None
    )
    pose_key = _digest({"source": source.describe(), "v": STAGE_VERSION["pose"]})
    face_key = (
        _digest({"faces": detectors.model_key(), "v": STAGE_VERSION["faces"]}) if detectors.models else None
    )
    mask = MaskSettings(
        config.face_mask, config.face_enlarge, config.jpeg_quality, detectors.pose_head, config.head_enlarge,
        config.kpt_conf, detectors.detector_count,
    )  # fmt: skip
    mask_spec = {
        "pose": pose_key, "faces": detectors.describe(), "face_key": face_key, "mask": asdict(mask),
        "v": STAGE_VERSION["masks"],
    }  # fmt: skip
    root = layout.cache / "shards"
    pose_store = ShardStore(root / "pose" / pose_key, _POSE_SCHEMA)
    face_store = ShardStore(root / "faces" / face_key, _FACES_SCHEMA) if face_key else None
    mask_store = ShardStore(root / "masks" / _digest(mask_spec), _MASKS_SCHEMA, mask_spec)
    for store in (pose_store, face_store, mask_store):
        if store is not None:
            store.clean_temporary()
    _activate_masks(mask_store, mask_spec)
    layout.masked.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict[str, pa.Table]] = {}
    groups: dict[tuple[bool, bool], list[Shard]] = defaultdict(list)
    for shard in shards:
        got = {"pose": pose_store.load(shard), "faces": face_store.load(shard) if face_store else None}
        masks = mask_store.load(shard)
        files = all((layout.masked / f"{image_ids[k]}.jpg").is_file() for k in shard.keys)
        if (
            got["pose"] is not None
            and (face_store is None or got["faces"] is not None)
            and masks is not None
            and files
        ):
            results[shard.id] = {**got, "masks": masks}
            continue
        results[shard.id] = got
        groups[(got["pose"] is not None, face_store is None or got["faces"] is not None)].append(shard)

    root_dir = str(Path(source.path).resolve()) if from_file else None
    for (has_pose, has_faces), todo in sorted(groups.items()):
        rows = [row_of[k] for s in todo for k in s.keys]
        index = cand.take(pa.array(rows, type=pa.int64()))
        index = index.add_column(0, "shard", pa.array([s.id for s in todo for _ in s.keys]))
        index = index.select(["shard", "sha256", "image_id", "source_path", "width", "height"])
        for have, names, kind in (
            (has_pose, POSE_COLUMNS, "pose"),
            (has_faces and face_store, FACE_COLUMNS, "faces"),
        ):
            if have:
                cached = pa.concat_tables([results[s.id][kind] for s in todo])
                at = {k: i for i, k in enumerate(cached.column("sha256").to_pylist())}
                cached = cached.take(
                    pa.array([at[k] for k in index.column("sha256").to_pylist()], type=pa.int64())
                )
                for name in names:
                    index = index.append_column(name, cached.column(name))
        stages = [
            StageSpec(
                "load", LoadStage, (str(raw_root.resolve()), config.max_pixels), batch_size=config.batch_size
            )
        ]
        if not has_pose:
            stages.append(_pose_spec(source, config, root_dir))
        if face_store is not None and not has_faces:
            stages.append(
                StageSpec(
                    "faces",
                    FaceStage,
                    (detectors.worker_config(),),
                    batch_size=config.batch_size,
                    concurrency=config.face_actors,
                    actors=True,
                )  # fmt: skip
            )
        stages += [
            StageSpec("mask", MaskStage, (mask,), batch_size=config.batch_size),
            StageSpec(
                "write", WriteMaskedStage, (str(layout.masked.resolve()),), batch_size=config.batch_size
            ),
        ]
        for shard, table in run_shards(
            engine.get(), todo, index, stages, config.batch_size, progress, "curate"
        ):
            if not has_pose:
                results[shard.id]["pose"] = pose_store.save(shard, table)
            if face_store is not None and not has_faces:
                results[shard.id]["faces"] = face_store.save(shard, table)
            results[shard.id]["masks"] = mask_store.save(shard, table)  # last: the shard is finished

    out = cand.select(["sha256"])
    for kind, names in (("pose", POSE_COLUMNS), ("faces", FACE_COLUMNS), ("masks", MASK_COLUMNS)):
        tables = [results[s.id][kind] for s in shards if results[s.id].get(kind) is not None]
        if kind == "faces" and face_store is None:
            continue
        done = pa.concat_tables(tables) if tables else _schema("sha256", names).empty_table()
        at = {k: i for i, k in enumerate(done.column("sha256").to_pylist())}
        done = done.take(pa.array([at[k] for k in shas], type=pa.int64()))
        for name in names:
            out = out.append_column(name, done.column(name))
    return out


def _pose_pass(
    cand: pa.Table, raw_root: Path, source: KeypointsFile | PoseEstimator, config: CurateConfig,
    layout: DatasetLayout, engine: _Engine, progress: bool,
) -> pa.Table:  # fmt: skip
    """The pose columns of every candidate content (cached in the same shards as a masking run's)."""
    shas = cand.column("sha256").to_pylist()
    row_of = {sha: i for i, sha in enumerate(shas)}
    from_file = isinstance(source, KeypointsFile)
    shards = plan_shards(
        shas, config.shard_size, cand.column("source_path").to_pylist() if from_file else None
    )
    pose_key = _digest({"source": source.describe(), "v": STAGE_VERSION["pose"]})
    store = ShardStore(layout.cache / "shards" / "pose" / pose_key, _POSE_SCHEMA)
    store.clean_temporary()
    done, todo = store.split_done(shards)
    if todo:
        index = cand.take(pa.array([row_of[k] for s in todo for k in s.keys], type=pa.int64()))
        index = index.add_column(0, "shard", pa.array([s.id for s in todo for _ in s.keys]))
        index = index.select(["shard", "sha256", "image_id", "source_path", "width", "height"])
        stages = [
            StageSpec(
                "load", LoadStage, (str(raw_root.resolve()), config.max_pixels), batch_size=config.batch_size
            ),
            _pose_spec(source, config, str(Path(source.path).resolve()) if from_file else None),
        ]
        for shard, table in run_shards(
            engine.get(), todo, index, stages, config.batch_size, progress, "pose"
        ):
            done.append(store.save(shard, table))
    poses = pa.concat_tables(done) if done else _POSE_SCHEMA.empty_table()
    at = {k: i for i, k in enumerate(poses.column("sha256").to_pylist())}
    poses = poses.take(pa.array([at[k] for k in shas], type=pa.int64()))
    out = cand.select(["sha256"])
    for name in POSE_COLUMNS:
        out = out.append_column(name, poses.column(name))
    for name in (*FACE_COLUMNS, *MASK_COLUMNS):
        out = out.append_column(name, pa.nulls(len(shas), COLUMN_TYPES[name]))
    return out


def _pose_spec(
    source: KeypointsFile | PoseEstimator, config: CurateConfig, keypoints_path: str | None
) -> StageSpec:
    if isinstance(source, KeypointsFile):
        return StageSpec("keypoints", KeypointsFileStage, (keypoints_path,), batch_size=config.batch_size)
    settings = PoseSettings(
        str(source.path.resolve()),
        config.device,
        config.imgsz,
        config.half,
        config.batch_size,
        config.person_conf,
    )
    gpus = config.pose_gpus
    if gpus is None:
        gpus = 1.0 if config.device not in (None, "", "cpu") else 0.0
    return StageSpec(
        "pose", PoseStage, (settings,), batch_size=config.batch_size, concurrency=config.pose_actors, actors=True,
        num_gpus=gpus,
    )  # fmt: skip


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


def _statuses(scan: SourceScan, read: pa.Table, min_size: int) -> dict[str, list]:
    """image_id, status, status_detail and duplicate_of of every crop, from the read pass."""
    cols: dict[str, list] = {"image_id": [], "status": [], "status_detail": [], "duplicate_of": []}
    first_of: dict[str, str] = {}
    rows = zip(
        scan.items, read.column("sha256").to_pylist(), read.column("readable").to_pylist(),
        read.column("detail").to_pylist(), read.column("width").to_pylist(), read.column("height").to_pylist(),
        strict=True,
    )  # fmt: skip
    for item, sha, readable, detail, w, h in rows:
        dup = None
        if not readable:
            image_id, status = _path_id(item.source_path), "unreadable"
        else:
            image_id = sha[:16]
            if sha in first_of:
                status, dup = "duplicate", first_of[sha]
            else:
                first_of[sha] = item.source_path
                if min(w, h) < min_size:
                    status, detail = "excluded", f"too small ({w}x{h} < {min_size} px)"
                else:
                    status = "ok"
        for name, value in (
            ("image_id", image_id),
            ("status", status),
            ("status_detail", detail),
            ("duplicate_of", dup),
        ):
            cols[name].append(value)
    return cols


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
    rule = config.occlusion_rule
    corrections = load_corrections(config.corrections) if config.corrections else None
    source = keypoint_source(
        config.pose_model, config.keypoints, config.device, config.imgsz, config.half, config.batch_size,
        config.person_conf,
    )  # fmt: skip
    occlusion_flag = config.flag(isinstance(source, KeypointsFile))
    detectors = FaceDetectors(config.face_config, keypoints_available=True) if mask_faces else None
    if detectors is not None and not detectors.models:
        log.warning(HEAD_ONLY_WARNING)
    if detectors is not None and config.face_mask == "blur":
        log.warning(BLUR_WARNING)
    out.mkdir(parents=True, exist_ok=True)
    _clean_cache(layout)
    engine = _Engine(config, layout, progress)
    from_file = isinstance(source, KeypointsFile)
    occlusion_source = "keypoints-file" if from_file else "pose"

    # 1. decode + checksum; statuses unreadable / duplicate / excluded
    read = _read_pass(scan, layout, engine, config, progress)
    cols = _statuses(scan, read, config.min_size)
    n = len(scan.items)
    candidates = [i for i in range(n) if cols["status"][i] == "ok"]
    picked = pa.array(candidates, type=pa.int64())
    cand = pa.table(
        {
            "sha256": read.column("sha256").take(picked),
            "image_id": pa.array([cols["image_id"][i] for i in candidates], pa.string()),
            "source_path": pa.array([scan.items[i].source_path for i in candidates], pa.string()),
            "width": read.column("width").take(picked),
            "height": read.column("height").take(picked),
        }
    )

    # 2. pose, faces and masks of every distinct content; 3. the occlusion rule (never cached)
    content = _content_pass(cand, scan.root, source, detectors, config, layout, engine, progress)
    content = OcclusionStage(rule, occlusion_flag)(
        content.append_column("width", cand.column("width")).append_column("height", cand.column("height"))
    )
    at = [None] * n
    for j, i in enumerate(candidates):
        at[i] = j
    taken = content.take(pa.array(at, type=pa.int64()))

    # no person: excluded, or kept as occluded
    occluded = taken.column("occluded").to_pylist()
    source_col: list[str | None] = [occlusion_source if v is not None else None for v in occluded]
    keypoints_missing = taken.column("keypoints").is_null().to_pylist()
    no_person = 0
    for i in candidates:
        if not keypoints_missing[i]:
            continue
        no_person += 1
        detail = "not in the keypoints file" if from_file else "no person detected"
        if config.no_person == "occluded":
            occluded[i], source_col[i] = True, NO_PERSON_SOURCE
            cols["status_detail"][i] = f"{detail}; counted occluded"
        else:
            cols["status"][i], cols["status_detail"][i] = "no_person", detail

    # review corrections override the flags
    applied, ignored = 0, []
    reviewer: list[str | None] = [None] * n
    reviewed_at: list[str | None] = [None] * n
    if corrections is not None:
        by_id = {cols["image_id"][i]: i for i in candidates}
        for image_id, flag in corrections.flags.items():
            i = by_id.get(image_id)
            if i is None:
                ignored.append(image_id)
                continue
            if cols["status"][i] == "no_person":
                cols["status"][i] = "ok"
                cols["status_detail"][i] = f"{cols['status_detail'][i]}; flag from review"
            occluded[i], source_col[i] = flag, "review"
            reviewer[i], reviewed_at[i] = corrections.reviews.get(image_id, (None, None))
            applied += 1
        if ignored:
            log.warning("%d correction(s) name no ok/no_person image (e.g. %s)", len(ignored), ignored[0])

    released = pa.array([s == "ok" for s in cols["status"]], pa.bool_())

    def when_released(name: str) -> pa.Array:
        column = taken.column(name).combine_chunks()
        return pc.if_else(released, column, pa.scalar(None, type=column.type))

    masked_path = [
        f"masked/{cols['image_id'][i]}.jpg" if detectors is not None and cols["status"][i] == "ok" else None
        for i in range(n)
    ]
    table = pa.table(
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
            "occluded": pa.array(occluded, pa.bool_()),
            "occlusion_source": pa.array(source_col, pa.string()),
            "occlusion_score": taken.column("occlusion_score"),
            "face_boxes": when_released("face_boxes"),
            "mask_method": when_released("mask_method"),
            "masked_path": pa.array(masked_path, pa.string()),
            "face_detectors": when_released("face_detectors"),
            "reviewer": pa.array(reviewer, pa.string()),
            "reviewed_at": pa.array(reviewed_at, pa.string()),
        }
    ).combine_chunks()
    write_manifest(table, layout.images_table, IMAGES)
    _keep_flag_file(layout, occlusion_flag)
    if detectors is not None:
        _remove_stale_masks(layout, set(cand.column("image_id").to_pylist()))
    table = table.cast(IMAGES.schema)

    counts = _counts(table, scan, applied, len(ignored))
    faces = None
    if detectors is not None:
        faces = {
            **detectors.describe(),
            "mask": config.face_mask,
            "enlarge": config.face_enlarge,
            "head_box": HEAD_BOX_SCOPE[occlusion_source] if detectors.pose_head else None,
            "head_box_only": not detectors.models,
        }
    curation = {
        "tool_version": __version__,
        "layout": scan.layout,
        "keypoints": source.describe(),
        "occlusion": {**rule.describe(), "flag": occlusion_flag.describe()},
        "no_person": {"policy": config.no_person, "crops": no_person},
        "min_size": config.min_size,
        "faces": faces,
        "corrections": None
        if corrections is None
        else {
            "file": corrections.path.name,
            "sha256": corrections.sha256,
            "applied": applied,
            "unmatched": len(ignored),
            "reviewers": sorted({r for r, _ in corrections.reviews.values() if r}),
        },
        "counts": counts,
    }
    private = {**curation, "refused": [{"path": p, "reason": why} for p, why in scan.refused]}
    atomic_write_text(layout.curation_record, json.dumps(private, indent=2, sort_keys=True) + "\n")
    return CurationResult(table, counts, curation, list(scan.refused))


def _keep_flag_file(layout: DatasetLayout, flag: Flag) -> None:
    """A learned flag's file beside images.parquet (byte for byte, so its sha256 is the one recorded);
    none with the paper's rule."""
    target = layout.private / RELEASE_FLAG_NAME
    if isinstance(flag, LearnedFlag):
        atomic_write_bytes(target, flag.data)
    else:
        target.unlink(missing_ok=True)


#: Stage caches of opreid before shards (one keyed table per stage): never read again.
_LEGACY_CACHES = ("read", "pose", "faces", "masks")


def _clean_cache(layout: DatasetLayout) -> None:
    """Remove what a killed run or an older opreid left in the cache: work indexes, legacy caches."""
    for index in (layout.cache / "work").glob("index-*.parquet"):
        index.unlink(missing_ok=True)
    for name in _LEGACY_CACHES:
        if (layout.cache / name).is_dir():
            shutil.rmtree(layout.cache / name, ignore_errors=True)


def _remove_stale_masks(layout: DatasetLayout, keep_ids: set[str]) -> None:
    """Remove masked crops of no current candidate, and temporary files a killed write left."""
    if not layout.masked.is_dir():
        return
    keep = {f"{i}.jpg" for i in keep_ids}
    for f in layout.masked.iterdir():
        if f.name not in keep and (f.suffix == ".jpg" or f.name.startswith(".")) and f.is_file():
            with contextlib.suppress(OSError):
                f.unlink()


def _counts(table: pa.Table, scan: SourceScan, applied: int, unmatched: int) -> dict[str, int]:
    status = Counter(table.column("status").to_pylist())
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    occ = ok.column("occluded").to_pylist()
    faces = ok.column("face_boxes").to_pylist()
    counts = {f"status_{s}": status.get(s, 0) for s in IMAGE_STATUSES}
    counts.update(
        images=table.num_rows, junk=scan.junk, refused=len(scan.refused),
        occluded=sum(1 for v in occ if v), holistic=sum(1 for v in occ if v is False),
        with_face=sum(1 for b in faces if b), without_face=sum(1 for b in faces if not b),
        corrections_applied=applied, corrections_unmatched=unmatched,
        identities=len(set(ok.column("pid").to_pylist())), cameras=len(set(ok.column("camid").to_pylist())),
    )  # fmt: skip
    return counts


def config_dict(config: CurateConfig) -> dict[str, Any]:
    """The config as plain JSON values (for logs and run records)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
