"""The data contract of a built dataset: Arrow schemas, keypoint topology, atomic writes, validating
reads, checksums.

Imports nothing else from opreid: every other package builds on it.
"""

from manifests.atomic import atomic_folder, atomic_path, atomic_write_bytes, atomic_write_text, staging_dir
from manifests.checksums import MANIFEST_FILES, sha256_bytes, sha256_file, sha256_tree, verify_manifests
from manifests.csv_cells import FORMULA_PREFIXES, csv_cell
from manifests.dataset_json import (
    FLAGS_KEY,
    OPREID_PROTOCOL,
    PROTOCOL_KEY,
    UNKNOWN_FLAGS,
    occlusion_flags_known,
    read_dataset_json,
    release_protocol,
    write_dataset_json,
)
from manifests.errors import (
    ChecksumError,
    ColumnTypeError,
    ExitCode,
    InvalidInputError,
    ManifestError,
    MissingColumnError,
    OpreidError,
    RefusedError,
    SchemaKindError,
    SchemaVersionError,
    UnreadableManifestError,
    UserError,
)
from manifests.keypoints import (
    BODY_PARTS,
    COCO17,
    COCO18,
    COCO18_ORDER,
    DEFAULT_KPT_CONF,
    FACE_POINTS,
    HEAD_POINTS,
    KEYPOINT_INDEX,
    KEYPOINT_VALUES,
    NECK,
    PART_KEYPOINTS,
    SHOULDERS,
    SKELETON,
    in_order,
    missing_keypoints,
)
from manifests.layout import DatasetLayout
from manifests.parquet_io import conform, read_manifest, read_metadata, write_manifest
from manifests.progress import progress_bar, progress_enabled, progress_option
from manifests.schemas import (
    GALLERY,
    GROUND_TRUTH,
    IMAGE_STATUSES,
    IMAGES,
    KEYPOINTS_FILE,
    MASKED_DIGESTS,
    QUERY,
    SCHEMA_VERSION,
    SCHEMAS,
    SPLITS,
    SYNTH_TRUTH,
    TRAIN,
    ManifestSchema,
)

__all__ = [
    "BODY_PARTS", "COCO17", "COCO18", "COCO18_ORDER", "DEFAULT_KPT_CONF", "FACE_POINTS", "FLAGS_KEY", "FORMULA_PREFIXES", "GALLERY", "GROUND_TRUTH", "HEAD_POINTS",
    "IMAGES", "IMAGE_STATUSES", "KEYPOINTS_FILE", "MASKED_DIGESTS", "KEYPOINT_INDEX", "KEYPOINT_VALUES", "MANIFEST_FILES", "NECK", "OPREID_PROTOCOL", "PART_KEYPOINTS", "PROTOCOL_KEY",
    "QUERY", "SCHEMAS", "SCHEMA_VERSION", "SHOULDERS", "SKELETON", "SPLITS", "SYNTH_TRUTH", "TRAIN", "UNKNOWN_FLAGS",
    "ChecksumError", "ColumnTypeError", "DatasetLayout", "ExitCode", "InvalidInputError", "ManifestError", "ManifestSchema",
    "MissingColumnError", "OpreidError", "RefusedError", "SchemaKindError", "SchemaVersionError",
    "UnreadableManifestError", "UserError",
    "atomic_folder", "atomic_path", "atomic_write_bytes", "atomic_write_text", "conform", "csv_cell", "in_order",
    "missing_keypoints",
    "occlusion_flags_known",
    "progress_bar", "progress_enabled", "progress_option", "read_dataset_json", "read_manifest", "read_metadata",
    "release_protocol", "sha256_bytes", "sha256_file", "sha256_tree", "staging_dir", "verify_manifests",
    "write_dataset_json", "write_manifest",
]  # fmt: skip
