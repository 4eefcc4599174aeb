"""Arrow schemas (version 1) of every Parquet file in the data contract.

Each file records its kind and schema version in the Parquet key-value metadata
(`opreid.kind`, `opreid.schema_version`); readers accept the same major version only.
Column meanings are in docs/data-contract.md §3; the keypoint order and the body parts of
`keypoints` / `missing_parts` / `occluded_parts` are in manifests/keypoints.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = "1.0"
KIND_KEY = b"opreid.kind"
VERSION_KEY = b"opreid.schema_version"

#: Values of `private/images.parquet` `status`.
IMAGE_STATUSES = ("ok", "unreadable", "no_person", "duplicate", "excluded")
SPLITS = ("train", "query", "gallery")

_KEYPOINTS = pa.list_(pa.float32())  # 51 floats: x, y, conf for each COCO-17 keypoint (keypoints.py)
_FACE_BOX = pa.struct(
    [
        ("x1", pa.float32()), ("y1", pa.float32()), ("x2", pa.float32()), ("y2", pa.float32()),
        ("score", pa.float32()), ("detector", pa.string()),
    ]
)  # fmt: skip


@dataclass(frozen=True)
class ManifestSchema:
    """A named, versioned Arrow schema; `nullable` fields may hold nulls, others may not."""

    kind: str
    schema: pa.Schema
    version: str = SCHEMA_VERSION

    @property
    def columns(self) -> list[str]:
        return self.schema.names


def _schema(*fields: tuple) -> pa.Schema:
    return pa.schema(
        [pa.field(name, typ, nullable=(len(rest) > 0 and rest[0])) for name, typ, *rest in fields]
    )


TRAIN = ManifestSchema(
    "train",
    _schema(
        ("image_id", pa.string()), ("path", pa.string()), ("pid", pa.int64()),
        ("camid", pa.int32()), ("occluded", pa.bool_()),
    ),
)  # fmt: skip
QUERY = ManifestSchema(
    "query", _schema(("image_id", pa.string()), ("path", pa.string()), ("camid", pa.int32()))
)
GALLERY = ManifestSchema(
    "gallery", _schema(("image_id", pa.string()), ("path", pa.string()), ("camid", pa.int32()))
)
GROUND_TRUTH = ManifestSchema(
    "ground_truth",
    _schema(
        ("image_id", pa.string()), ("split", pa.string()), ("pid", pa.int64()),
        ("camid", pa.int32()), ("occluded", pa.bool_()),
    ),
)  # fmt: skip
IMAGES = ManifestSchema(
    "images",
    _schema(
        ("image_id", pa.string()),          # stable id: first 16 hex digits of the content sha256
        ("source_path", pa.string()),       # relative to RAW, POSIX
        ("sha256", pa.string(), True),
        ("pid", pa.int64()),
        ("camid", pa.int32()),
        ("status", pa.string()),            # one of IMAGE_STATUSES
        ("status_detail", pa.string(), True),
        ("width", pa.int32(), True),
        ("height", pa.int32(), True),
        ("duplicate_of", pa.string(), True),
        ("keypoints", _KEYPOINTS, True),    # 51 floats, crop pixels
        ("n_persons", pa.int32(), True),
        ("person_index", pa.int32(), True),
        ("pose_box", pa.list_(pa.float32()), True),  # x1, y1, x2, y2 of the person taken (pose model only)
        ("pose_score", pa.float32(), True),  # its detection score
        ("longest_missing_run", pa.int32(), True),
        ("missing_parts", pa.list_(pa.string()), True),
        ("occluded", pa.bool_(), True),
        ("occlusion_source", pa.string(), True),  # pose | keypoints-file | no-person | review
        ("occlusion_score", pa.float32(), True),  # P(occluded) from a learned flag; null for the rule
        ("face_boxes", pa.list_(_FACE_BOX), True),
        ("mask_method", pa.string(), True),
        ("masked_path", pa.string(), True),
        ("face_detectors", pa.int32(), True),  # how many face detectors ran on the released crop
        ("reviewer", pa.string(), True),    # who corrected the flag in review
        ("reviewed_at", pa.string(), True),  # when (ISO 8601, as the review site recorded it)
    ),
    version="1.2",
)  # fmt: skip

# Files written by `opreid synth` next to the crops (also accepted by `build-split --keypoints`).
KEYPOINTS_FILE = ManifestSchema(
    "keypoints",
    _schema(
        ("file", pa.string()), ("keypoints", _KEYPOINTS)
    ),  # file relative to RAW; 51 = x, y, conf/visibility
)
SYNTH_TRUTH = ManifestSchema(
    "synth_truth",
    _schema(
        ("file", pa.string()), ("pid", pa.int64()), ("camid", pa.int32()), ("occluded", pa.bool_()),
        ("occluded_parts", pa.list_(pa.string())), ("occluder", pa.string(), True),
        ("face_box", pa.list_(pa.float32()), True),  # x1, y1, x2, y2 in crop pixels; null when no face drawn
        ("face_visible", pa.bool_()),
    ),
)  # fmt: skip

# Written by curate beside its cache: what each masked crop held when it was written, so that
# `validate` can tell a released image from a crop swapped in afterwards.
MASKED_DIGESTS = ManifestSchema(
    "masked_digests",
    _schema(("image_id", pa.string()), ("sha256", pa.string())),  # sha256 of masked/{image_id}.jpg
)

SCHEMAS: dict[str, ManifestSchema] = {
    s.kind: s
    for s in (TRAIN, QUERY, GALLERY, GROUND_TRUTH, IMAGES, KEYPOINTS_FILE, SYNTH_TRUTH, MASKED_DIGESTS)
}
