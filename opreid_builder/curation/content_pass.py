"""The second pass of curation: pose, face boxes and masks of every distinct candidate content.

Each stage caches its columns in its own shard store, keyed by what its output depends on: pose by
the keypoint source, model face boxes by the face models, masks by every masking setting (and the
pose and face keys). So changing a rule parameter reruns no pose (the rule is applied later, never
cached), and changing the face detectors or the mask re-masks without rerunning pose; a shard runs
only the stages it lacks. The masks of a shard are reused only while every masked crop on disk
still holds what was written (`masked_sha256`): a crop edited or swapped since is masked again.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from manifests import DatasetLayout, atomic_write_text, sha256_file
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.engines import StageSpec
from opreid_builder.curation.faces import FaceDetectors, detector_summary
from opreid_builder.curation.masking import MaskSettings
from opreid_builder.curation.pose import KeypointsFile, PoseEstimator
from opreid_builder.curation.shard_runs import (
    FACES_SCHEMA,
    MASKS_SCHEMA,
    POSE_SCHEMA,
    STAGE_VERSION,
    LazyEngine,
    aligned,
    run_shards,
    spec_digest,
    stage_store,
)
from opreid_builder.curation.shards import Shard, ShardStore, plan_shards
from opreid_builder.curation.stages import (
    COLUMN_TYPES,
    FACE_COLUMNS,
    MASK_COLUMNS,
    POSE_COLUMNS,
    FaceStage,
    KeypointsFileStage,
    LoadStage,
    MaskStage,
    PoseSettings,
    PoseStage,
    WriteMaskedStage,
)

log = logging.getLogger(__name__)

#: The columns of a candidate content the stages start from.
INPUT_COLUMNS = ("sha256", "image_id", "source_path", "width", "height")


def content_pass(
    cand: pa.Table, raw_root: Path, source: KeypointsFile | PoseEstimator, detectors: FaceDetectors | None,
    config: CurateConfig, layout: DatasetLayout, engine: LazyEngine, progress: bool,
) -> pa.Table:  # fmt: skip
    """Pose, model face boxes and masks of every candidate content (`cand`: INPUT_COLUMNS, distinct
    sha256), aligned with `cand`; masked crops written. Without `detectors` (nothing to mask) only
    pose runs, and the face and mask columns are null."""
    if detectors is None:
        return _pose_only(cand, raw_root, source, config, layout, engine, progress)
    stores = _Stores.open(source, detectors, config, layout)
    shards = _plan(cand, source, config)
    image_ids = dict(zip(cand.column("sha256").to_pylist(), cand.column("image_id").to_pylist(), strict=True))
    results, todo = _reuse_finished(shards, stores, layout, image_ids)
    for (has_pose, has_faces), group in sorted(todo.items()):
        index = _stage_input(cand, group, results, has_pose, has_faces and stores.faces is not None)
        stages = _stages(raw_root, source, detectors, config, layout, has_pose, has_faces, stores)
        for shard, table in run_shards(
            engine.get(), group, index, stages, config.batch_size, progress, "curate"
        ):
            if not has_pose:
                results[shard.id]["pose"] = stores.pose.save(shard, table)
            if stores.faces is not None and not has_faces:
                results[shard.id]["faces"] = stores.faces.save(shard, table)
            results[shard.id]["masks"] = stores.masks.save(shard, table)  # last: the shard is finished
    return _columns(cand, shards, results, stores)


@dataclass(frozen=True)
class _Stores:
    """The shard stores of one masking run: pose, model face boxes (None without a face model), masks."""

    pose: ShardStore
    faces: ShardStore | None
    masks: ShardStore
    mask_settings: MaskSettings

    @classmethod
    def open(
        cls, source: KeypointsFile | PoseEstimator, detectors: FaceDetectors, config: CurateConfig,
        layout: DatasetLayout,
    ) -> _Stores:  # fmt: skip
        pose_key = _pose_key(source)
        face_key = (
            spec_digest({"faces": detectors.model_key(), "v": STAGE_VERSION["faces"]})
            if detectors.models
            else None
        )
        mask = config.mask_settings(detectors)
        mask_spec = {
            "pose": pose_key, "faces": detectors.describe(), "face_key": face_key, "mask": asdict(mask),
            "v": STAGE_VERSION["masks"],
        }  # fmt: skip
        stores = cls(
            stage_store(layout, "pose", pose_key, POSE_SCHEMA),
            stage_store(layout, "faces", face_key, FACES_SCHEMA) if face_key else None,
            stage_store(layout, "masks", spec_digest(mask_spec), MASKS_SCHEMA, mask_spec),
            mask,
        )
        _activate_masks(stores.masks, mask_spec)
        layout.masked.mkdir(parents=True, exist_ok=True)
        return stores


def _pose_key(source: KeypointsFile | PoseEstimator) -> str:
    return spec_digest({"source": source.describe(), "v": STAGE_VERSION["pose"]})


def _plan(cand: pa.Table, source: KeypointsFile | PoseEstimator, config: CurateConfig) -> list[Shard]:
    """Shards of the candidates' contents; keypoints looked up by path make the path part of a shard."""
    paths = cand.column("source_path").to_pylist() if isinstance(source, KeypointsFile) else None
    return plan_shards(cand.column("sha256").to_pylist(), config.shard_size, paths)


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


def _reuse_finished(
    shards: list[Shard], stores: _Stores, layout: DatasetLayout, image_ids: dict[str, str]
) -> tuple[dict[str, dict[str, pa.Table | None]], dict[tuple[bool, bool], list[Shard]]]:
    """What each shard has cached, and the unfinished shards grouped by (has pose, has faces)."""
    results: dict[str, dict[str, pa.Table | None]] = {}
    todo: dict[tuple[bool, bool], list[Shard]] = defaultdict(list)
    for shard in shards:
        got = {"pose": stores.pose.load(shard), "faces": stores.faces.load(shard) if stores.faces else None}
        has_faces = stores.faces is None or got["faces"] is not None
        masks = stores.masks.load(shard)
        if (
            got["pose"] is not None
            and has_faces
            and masks is not None
            and _masked_intact(layout, masks, image_ids)
        ):
            results[shard.id] = {**got, "masks": masks}
            continue
        results[shard.id] = got
        todo[(got["pose"] is not None, has_faces)].append(shard)
    return results, todo


def _masked_intact(layout: DatasetLayout, masks: pa.Table, image_ids: dict[str, str]) -> bool:
    """Whether every masked crop of a cached mask shard is on disk and holds what was written."""
    for sha, want in zip(
        masks.column("sha256").to_pylist(), masks.column("masked_sha256").to_pylist(), strict=True
    ):
        path = layout.masked / f"{image_ids[sha]}.jpg"
        if not path.is_file():
            return False
        if sha256_file(path) != want:
            log.warning("%s differs from the masked crop curate wrote: masking its shard again", path)
            return False
    return True


def _stage_input(
    cand: pa.Table, group: list[Shard], results: dict[str, dict[str, pa.Table | None]], has_pose: bool,
    has_faces: bool,
) -> pa.Table:  # fmt: skip
    """The index of a group of shards: a `shard` column, INPUT_COLUMNS, and the cached columns they have."""
    row_of = {sha: i for i, sha in enumerate(cand.column("sha256").to_pylist())}
    index = cand.take(pa.array([row_of[k] for s in group for k in s.keys], type=pa.int64()))
    index = index.add_column(0, "shard", pa.array([s.id for s in group for _ in s.keys]))
    index = index.select(["shard", *INPUT_COLUMNS])
    shas = index.column("sha256").to_pylist()
    for have, names, kind, schema in (
        (has_pose, POSE_COLUMNS, "pose", POSE_SCHEMA),
        (has_faces, FACE_COLUMNS, "faces", FACES_SCHEMA),
    ):
        if have:
            cached = aligned([results[s.id][kind] for s in group], schema, shas)
            for name in names:
                index = index.append_column(name, cached.column(name))
    return index


def _stages(
    raw_root: Path, source: KeypointsFile | PoseEstimator, detectors: FaceDetectors, config: CurateConfig,
    layout: DatasetLayout, has_pose: bool, has_faces: bool, stores: _Stores,
) -> list[StageSpec]:  # fmt: skip
    """Load, then the stages a group of shards lacks, then mask and write."""
    stages = [_load_spec(raw_root, config)]
    if not has_pose:
        stages.append(pose_spec(source, config))
    if stores.faces is not None and not has_faces:
        stages.append(StageSpec(
            "faces", FaceStage, (detectors.worker_config(),), batch_size=config.batch_size,
            concurrency=config.face_actors, actors=True,
        ))  # fmt: skip
    stages += [
        StageSpec("mask", MaskStage, (stores.mask_settings,), batch_size=config.batch_size),
        StageSpec("write", WriteMaskedStage, (str(layout.masked.resolve()),), batch_size=config.batch_size),
    ]
    return stages


def _columns(
    cand: pa.Table, shards: list[Shard], results: dict[str, dict[str, pa.Table | None]], stores: _Stores
) -> pa.Table:
    """sha256 plus every pose, face and mask column, aligned with `cand`."""
    shas = cand.column("sha256").to_pylist()
    out = cand.select(["sha256"])
    for kind, names, schema in (
        ("pose", POSE_COLUMNS, POSE_SCHEMA), ("faces", FACE_COLUMNS, FACES_SCHEMA), ("masks", MASK_COLUMNS, MASKS_SCHEMA),
    ):  # fmt: skip
        if kind == "faces" and stores.faces is None:
            continue
        done = aligned(
            [results[s.id][kind] for s in shards if results[s.id].get(kind) is not None], schema, shas
        )
        for name in names:
            out = out.append_column(name, done.column(name))
    return out


def _pose_only(
    cand: pa.Table, raw_root: Path, source: KeypointsFile | PoseEstimator, config: CurateConfig,
    layout: DatasetLayout, engine: LazyEngine, progress: bool,
) -> pa.Table:  # fmt: skip
    """The pose columns of every candidate content (cached in the same shards as a masking run's)."""
    store = stage_store(layout, "pose", _pose_key(source), POSE_SCHEMA)
    done, todo = store.split_done(_plan(cand, source, config))
    if todo:
        index = _stage_input(cand, todo, {}, False, False)
        stages = [_load_spec(raw_root, config), pose_spec(source, config)]
        for shard, table in run_shards(
            engine.get(), todo, index, stages, config.batch_size, progress, "pose"
        ):
            done.append(store.save(shard, table))
    shas = cand.column("sha256").to_pylist()
    poses = aligned(done, POSE_SCHEMA, shas)
    out = cand.select(["sha256"])
    for name in POSE_COLUMNS:
        out = out.append_column(name, poses.column(name))
    for name in (*FACE_COLUMNS, *MASK_COLUMNS):
        out = out.append_column(name, pa.nulls(len(shas), COLUMN_TYPES[name]))
    return out


def _load_spec(raw_root: Path, config: CurateConfig) -> StageSpec:
    return StageSpec(
        "load", LoadStage, (str(raw_root.resolve()), config.max_pixels), batch_size=config.batch_size
    )


def pose_spec(source: KeypointsFile | PoseEstimator, config: CurateConfig) -> StageSpec:
    """The stage that gives keypoints: a lookup in the keypoints file, or the pose model (an actor pool)."""
    if isinstance(source, KeypointsFile):
        return StageSpec(
            "keypoints", KeypointsFileStage, (str(Path(source.path).resolve()),), batch_size=config.batch_size
        )
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
