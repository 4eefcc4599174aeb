"""The curation stages as plain batch functions, for any engine to compose.

A stage is a small class: its constructor takes picklable settings and loads what the stage needs
(a model is loaded once per worker: a thread of the local engine, an actor of Ray Data's pool), and
calling it on a batch (a pyarrow Table, or a dict of columns) returns the same batch as a Table with
its new columns added (or replaced). Column types are fixed here (`COLUMN_TYPES`), so batches from
any worker concatenate.

| stage | reads | adds |
|---|---|---|
| `ChecksumStage` (decode + checksum) | source_path | sha256, readable, detail, width, height |
| `LoadStage` | source_path, sha256 | data (the file's bytes; null if it changed since it was hashed) |
| `PoseStage` / `KeypointsFileStage` | data (source_path) | n_persons, person_index, keypoints, persons, pose_box, pose_score |
| `OcclusionStage` | keypoints, width, height (+ n_persons, pose_box, pose_score) | longest_missing_run, missing_parts, occluded, occlusion_score |
| `FaceStage` | data | model_faces (boxes of the face detector models) |
| `MaskStage` (masking + encode) | data, persons, model_faces | face_boxes, face_detectors, mask_method, masked (JPEG bytes), masked_sha256 |
| `WriteMaskedStage` | image_id, masked | writes masked/{image_id}.jpg; drops the byte columns |

Pixels travel as the crop's encoded bytes and are decoded by each stage that needs them: a 64 x 128
JPEG decodes in a tenth of a millisecond, and bytes are what Ray's object store moves cheaply.
Every box goes through float32 before it is used, so a box read back from a cache masks exactly as
a fresh one: masked bytes never depend on what was cached or which engine ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from manifests import COCO17, IMAGES, PART_KEYPOINTS, atomic_write_bytes, missing_keypoints, sha256_bytes
from opreid_builder.curation import pose as pose_module
from opreid_builder.curation.faces import FaceBox, FaceConfig, FaceDetectors, pose_head_box
from opreid_builder.curation.masking import MaskSettings, encode_jpeg, mask_faces
from opreid_builder.curation.occlusion import OcclusionRule
from opreid_builder.curation.occlusion_flag import Flag, PaperFlag, PoseEvidence
from opreid_builder.curation.sources import (
    DEFAULT_MAX_PIXELS,
    decode_image,
    read_and_decode,
    read_regular_file,
)

Batch = pa.Table | Mapping[str, Any]

_FACES = IMAGES.schema.field("face_boxes").type
_FLOATS = pa.list_(pa.float32())
#: The type of every column a stage adds.
COLUMN_TYPES: dict[str, pa.DataType] = {
    "sha256": pa.string(), "readable": pa.bool_(), "detail": pa.string(),
    "width": pa.int32(), "height": pa.int32(), "data": pa.binary(),
    "n_persons": pa.int32(), "person_index": pa.int32(), "keypoints": _FLOATS,
    "persons": pa.list_(_FLOATS), "pose_box": _FLOATS, "pose_score": pa.float32(),
    "longest_missing_run": pa.int32(), "missing_parts": pa.list_(pa.string()), "occluded": pa.bool_(),
    "occlusion_score": pa.float32(),
    "model_faces": _FACES, "face_boxes": _FACES, "face_detectors": pa.int32(), "mask_method": pa.string(),
    "masked": pa.binary(), "masked_sha256": pa.string(),
}  # fmt: skip
READ_COLUMNS = ("sha256", "readable", "detail", "width", "height")
POSE_COLUMNS = ("n_persons", "person_index", "keypoints", "persons", "pose_box", "pose_score")
FACE_COLUMNS = ("model_faces",)
#: `masked_sha256` is what the masked crop held when written: a cached mask is reused only while it holds that.
MASK_COLUMNS = ("face_boxes", "face_detectors", "mask_method", "masked_sha256")


def as_table(batch: Batch) -> pa.Table:
    """A batch as a pyarrow Table (a dict of columns: lists, numpy or Arrow arrays)."""
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    columns = {}
    for name, values in batch.items():
        if isinstance(values, pa.Array | pa.ChunkedArray):
            columns[name] = values
            continue
        items = [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
        columns[name] = pa.array(items, type=COLUMN_TYPES.get(name))
    return pa.table(columns)


def with_columns(table: pa.Table, columns: Mapping[str, list]) -> pa.Table:
    """`table` with each column set (added, or replaced when present) at its type in COLUMN_TYPES."""
    for name, values in columns.items():
        array = pa.array(values, type=COLUMN_TYPES[name])
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    return table


def pixels(data: bytes | None, width: int, height: int) -> np.ndarray:
    """The crop's RGB pixels; a black crop of its recorded size if its bytes changed or vanished."""
    if data is not None:
        decoded = decode_image(data, max(width * height, 1))  # validated at that size by the read pass
        if decoded.ok and decoded.rgb.shape[:2] == (height, width):
            return decoded.rgb
    return np.zeros((height, width, 3), dtype=np.uint8)


def _f32(value: float) -> float:
    return float(np.float32(value))


def _box_dict(box: FaceBox) -> dict[str, Any]:
    d = box.as_dict()
    for k in ("x1", "y1", "x2", "y2", "score"):
        d[k] = _f32(d[k])
    return d


# --- stages ----------------------------------------------------------------------------------


class ChecksumStage:
    """Decode + checksum: each crop's sha256, whether it decodes, why not, and its size."""

    def __init__(self, root: str, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.root, self.max_pixels = Path(root), max_pixels

    def __call__(self, batch: Batch) -> pa.Table:
        table = as_table(batch)
        out: dict[str, list] = {c: [] for c in READ_COLUMNS}
        for rel in table.column("source_path").to_pylist():
            data, decoded = read_and_decode(self.root / rel, self.max_pixels)
            h, w = decoded.rgb.shape[:2] if decoded.ok else (None, None)
            out["sha256"].append(None if data is None else sha256_bytes(data))
            out["readable"].append(decoded.ok)
            out["detail"].append(decoded.detail)
            out["width"].append(w)
            out["height"].append(h)
        return with_columns(table, out)


class LoadStage:
    """The bytes of each crop, checked against the sha256 it was curated under (null when changed)."""

    def __init__(self, root: str, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.root, self.max_pixels = Path(root), max_pixels

    def __call__(self, batch: Batch) -> pa.Table:
        table = as_table(batch)
        data = []
        for rel, sha in zip(
            table.column("source_path").to_pylist(), table.column("sha256").to_pylist(), strict=True
        ):
            raw, _ = read_regular_file(self.root / rel, self.max_pixels)
            data.append(raw if raw is not None and sha256_bytes(raw) == sha else None)
        return with_columns(table, {"data": data})


def pose_columns(results: list) -> dict[str, list]:
    """The pose columns of a list of PoseResult."""
    out: dict[str, list] = {c: [] for c in POSE_COLUMNS}
    for res in results:
        out["n_persons"].append(res.n_persons)
        out["person_index"].append(res.person_index)
        out["keypoints"].append(None if res.keypoints is None else res.keypoints.reshape(-1).tolist())
        out["persons"].append([np.asarray(kp).reshape(-1).tolist() for kp in res.everyone])
        out["pose_box"].append(None if res.box is None else list(res.box))
        out["pose_score"].append(res.score)
    return out


@dataclass(frozen=True)
class PoseSettings:
    """What a worker needs to load the pose model (the path already resolved and checked)."""

    model_path: str
    device: str | None = None
    imgsz: int | None = None
    half: bool = False
    batch_size: int = pose_module.BATCH_SIZE
    person_conf: float = pose_module.PERSON_CONF


class PoseStage:
    """Pose keypoints of every person in each crop, and the person taken (model loaded once per worker)."""

    def __init__(self, settings: PoseSettings):
        s = settings
        self.estimator = pose_module.PoseEstimator(
            s.model_path, s.device, s.imgsz, s.half, s.batch_size, s.person_conf
        )

    def __call__(self, batch: Batch) -> pa.Table:
        table = as_table(batch)
        rows = zip(
            table.column("sha256").to_pylist(), table.column("data").to_pylist(),
            table.column("width").to_pylist(), table.column("height").to_pylist(), strict=True,
        )  # fmt: skip
        stream = ((sha, pixels(d, w, h)) for sha, d, w, h in rows)
        return with_columns(table, pose_columns([res for _, res in self.estimator.run(stream)]))


class KeypointsFileStage:
    """Keypoints looked up in a precomputed keypoints file, by the crop's path."""

    def __init__(self, path: str):
        self.file = pose_module.KeypointsFile(path)

    def __call__(self, batch: Batch) -> pa.Table:
        table = as_table(batch)
        results = [self.file.lookup(rel) for rel in table.column("source_path").to_pylist()]
        return with_columns(table, pose_columns(results))


class OcclusionStage:
    """The occlusion flag on each crop with a person (null columns where no person was taken).

    The rule's evidence (longest missing run, missing parts) is always recorded; the decision is the
    flag's: the rule itself (`PaperFlag`, the default) or a learned flag with its P(occluded).
    """

    def __init__(self, rule: OcclusionRule, flag: Flag | None = None):
        self.rule = rule
        self.flag = flag if flag is not None else PaperFlag(rule)

    def __call__(self, batch: Batch) -> pa.Table:
        table = as_table(batch)
        kps = table.column("keypoints").to_pylist()
        n = len(kps)
        run: list = [None] * n
        parts: list = [None] * n
        occluded: list = [None] * n
        score: list = [None] * n
        idx = [i for i, kp in enumerate(kps) if kp is not None]
        if idx:
            kp = np.asarray([kps[i] for i in idx], dtype=np.float32).reshape(-1, len(COCO17), 3)
            w = np.asarray(table.column("width").to_pylist(), dtype=np.float64)[idx]
            h = np.asarray(table.column("height").to_pylist(), dtype=np.float64)[idx]
            missing = missing_keypoints(kp, w, h, self.rule.kpt_conf)
            runs = self.rule.decide(missing)[0]
            flags, probs = self.flag.decide(
                PoseEvidence(kp, np.stack([w, h], axis=1), *_box_columns(table, idx), missing)
            )
            part_missing = {p: missing[:, list(k)].any(axis=1) for p, k in PART_KEYPOINTS.items()}
            for j, i in enumerate(idx):
                run[i] = int(runs[j])
                occluded[i] = bool(flags[j])
                parts[i] = [p for p, m in part_missing.items() if m[j]]
                score[i] = None if probs is None else float(probs[j])
        return with_columns(
            table,
            {
                "longest_missing_run": run,
                "missing_parts": parts,
                "occluded": occluded,
                "occlusion_score": score,
            },
        )


def _box_columns(table: pa.Table, idx: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person boxes, scores and people counts of the rows `idx` (NaN where a keypoints file gave none)."""
    n = table.num_rows

    def column(name: str) -> list:
        return table.column(name).to_pylist() if name in table.column_names else [None] * n

    boxes, scores, people = column("pose_box"), column("pose_score"), column("n_persons")
    box = np.array([boxes[i] if boxes[i] is not None else [np.nan] * 4 for i in idx], dtype=np.float64)
    score = np.array([np.nan if scores[i] is None else scores[i] for i in idx], dtype=np.float64)
    count = np.array([1 if people[i] is None else people[i] for i in idx], dtype=np.float64)
    return box.reshape(len(idx), 4), score, count


class FaceStage:
    """Boxes of the face detector models on each crop (models loaded once per worker)."""

    def __init__(self, config: FaceConfig):
        self.detectors = FaceDetectors(config)

    def __call__(self, batch: Batch) -> pa.Table:
        table = as_table(batch)
        rows = zip(
            table.column("data").to_pylist(), table.column("width").to_pylist(),
            table.column("height").to_pylist(), strict=True,
        )  # fmt: skip
        found = [[_box_dict(b) for b in self.detectors.detect_models(pixels(d, w, h))] for d, w, h in rows]
        return with_columns(table, {"model_faces": found})


class MaskStage:
    """Masking + encode: every face box (models, then the head of each person) filled, EXIF-free JPEG."""

    def __init__(self, settings: MaskSettings):
        self.s = settings

    def boxes(
        self, model_faces: list[dict] | None, persons: list | None, width: int, height: int
    ) -> list[dict]:
        boxes = list(model_faces or [])
        if self.s.pose_head:
            for kp in persons or []:
                head = pose_head_box(
                    np.asarray(kp, dtype=np.float32).reshape(len(COCO17), 3), width, height,
                    self.s.kpt_conf, self.s.head_enlarge,
                )  # fmt: skip
                if head is not None:
                    boxes.append(_box_dict(head))
        return boxes

    def __call__(self, batch: Batch) -> pa.Table:
        table = as_table(batch)
        n = table.num_rows
        faces = table.column("model_faces").to_pylist() if "model_faces" in table.column_names else [None] * n
        persons = table.column("persons").to_pylist()
        rows = zip(
            table.column("data").to_pylist(), table.column("width").to_pylist(),
            table.column("height").to_pylist(), faces, persons, strict=True,
        )  # fmt: skip
        out: dict[str, list] = {c: [] for c in (*MASK_COLUMNS, "masked")}
        for data, w, h, found, people in rows:
            boxes = self.boxes(found, people, w, h)
            masked = mask_faces(
                pixels(data, w, h), [FaceBox(**b) for b in boxes], self.s.method, self.s.enlarge
            )
            jpeg = encode_jpeg(masked, self.s.jpeg_quality)
            out["face_boxes"].append(boxes)
            out["face_detectors"].append(self.s.detector_count)
            out["mask_method"].append(self.s.method if boxes else "none")
            out["masked"].append(jpeg)
            out["masked_sha256"].append(sha256_bytes(jpeg))
        return with_columns(table, out)


class WriteMaskedStage:
    """Writes each masked crop to `{masked_dir}/{image_id}.jpg` (atomically) and drops the byte columns."""

    def __init__(self, masked_dir: str):
        self.folder = Path(masked_dir)

    def __call__(self, batch: Batch) -> pa.Table:
        table = as_table(batch)
        ids, data = table.column("image_id").to_pylist(), table.column("masked").to_pylist()
        for image_id, jpeg in zip(ids, data, strict=True):
            atomic_write_bytes(self.folder / f"{image_id}.jpg", jpeg)
        return table.drop_columns([c for c in ("data", "masked") if c in table.column_names])
