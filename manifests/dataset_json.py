"""`dataset.json`: the built dataset's descriptor (schema version, parameters, counts, checksums)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from manifests.atomic import atomic_write_text
from manifests.errors import SchemaVersionError, UnreadableManifestError
from manifests.schemas import SCHEMA_VERSION

DATASET_JSON = "dataset.json"
#: The key naming the protocol a release follows; absent means the OPReID protocol (`opreid build-split`).
PROTOCOL_KEY = "protocol"
OPREID_PROTOCOL = "opreid"
#: Per split, where the release's occlusion flags come from; a split marked `UNKNOWN_FLAGS` stores
#: `occluded = false` for every image and nothing may report an occluded/holistic breakdown of it.
FLAGS_KEY = "occlusion_flags"
UNKNOWN_FLAGS = "unknown"


def write_dataset_json(out_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write `OUT/dataset.json` atomically, stamping the schema version."""
    path = Path(out_dir) / DATASET_JSON
    body = {"schema_version": SCHEMA_VERSION, **{k: v for k, v in info.items() if k != "schema_version"}}
    atomic_write_text(path, json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_dataset_json(out_dir: str | Path) -> dict[str, Any]:
    """Read `OUT/dataset.json` (or a path to the file itself) and check its major version."""
    path = Path(out_dir)
    if path.is_dir():
        path = path / DATASET_JSON
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnreadableManifestError(path, "no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableManifestError(path, f"not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise UnreadableManifestError(path, "not a JSON object")
    version = info.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise SchemaVersionError(path, None if version is None else str(version), SCHEMA_VERSION)
    return info


def release_protocol(info: dict[str, Any]) -> str:
    """The protocol a release's dataset.json declares (`opreid` when it declares none)."""
    return str(info.get(PROTOCOL_KEY) or OPREID_PROTOCOL)


def occlusion_flags_known(info: dict[str, Any], split: str) -> bool:
    """Whether `split`'s occlusion flags mean anything (releases that record no source: they do)."""
    sources = info.get(FLAGS_KEY) or {}
    return sources.get(split) != UNKNOWN_FLAGS
