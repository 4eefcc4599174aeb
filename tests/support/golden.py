"""What the pipeline produced, as content: the digests the golden-output test records and compares.

A Parquet file's bytes carry its writer ("parquet-cpp-arrow version N") and page layout, so they
change with every pyarrow release while the tables stay the same. Everything here is described by
what a reader gets back instead:

- tables: per Parquet file, the Arrow schema (fields, types with list children unnamed, nullability,
  key-value metadata) and the rows (every value, floats exactly);
- images: the sha256 of every released image file, so any change in masking or encoding shows;
- texts (card, dataset.json, croissant.json, curation.json): the text, with each sha256 of a file
  compared by content (a Parquet file, release or input, or another text) replaced by that file's
  name: those checksums are of bytes, and the files they name are compared in their own right;
- weights, predictions, score: the trained state's tensors, the submission array, the score's JSON
  (checksums replaced as above).

`compare` names every part that differs, so a library upgrade (one part, versions differ) is told
apart from a change in our outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
#: The libraries whose releases can change the outputs; recorded beside the digests for the message.
LIBRARIES = ("pyarrow", "numpy", "pillow", "opencv-python-headless", "torch", "onnxruntime", "pandas")
_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical_type(t: pa.DataType) -> str:
    """A type's description without the names pyarrow gives list children (`item` vs `element`)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"list<{canonical_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {canonical_type(f.type)}" for f in t) + ">"
    return str(t)


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # exact, and NaN/inf stay distinct
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def table_digest(path: Path) -> dict[str, Any]:
    table = pq.read_table(path)
    schema = {
        "fields": [[f.name, canonical_type(f.type), f.nullable] for f in table.schema],
        "metadata": {k.decode(): v.decode() for k, v in sorted((table.schema.metadata or {}).items())},
    }
    rows = hashlib.sha256()
    for name in table.column_names:
        values = _json_value(table.column(name).to_pylist())
        rows.update(json.dumps([name, values], sort_keys=True).encode())
    return {
        "schema": _sha(json.dumps(schema, sort_keys=True)),
        "rows": rows.hexdigest(),
        "num_rows": table.num_rows,
    }


def mask_checksums(text: str, content_sha: dict[str, str]) -> str:
    """Replace each sha256 of a file compared by content (`content_sha`: sha -> name) by its name."""
    return _HEX64.sub(
        lambda m: f"<sha256 of {content_sha.get(m.group(0))}>" if m.group(0) in content_sha else m.group(0),
        text,
    )


def weights_digest(state: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def array_digest(path: Path) -> str:
    array = np.load(path, allow_pickle=False)
    return _sha(f"{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def release_outputs(release: Path, inputs: list[Path]) -> dict[str, Any]:
    """Tables, images and texts of a release; `inputs` are the Parquet files it was built from."""
    files = sorted(
        p for p in release.rglob("*") if p.is_file() and "cache" not in p.relative_to(release).parts
    )
    by_content = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    content_sha = {_sha(p.read_bytes()): p.name for p in [*by_content, *inputs]}
    out: dict[str, Any] = {"tables": {}, "images": {}, "texts": {}}
    for path in files:
        name = path.relative_to(release).as_posix()
        if path.suffix == ".parquet":
            out["tables"][name] = table_digest(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            out["images"][name] = _sha(path.read_bytes())
        else:
            out["texts"][name] = _sha(mask_checksums(path.read_text(encoding="utf-8"), content_sha))
    out["content_sha"] = content_sha
    return out


#: The part a difference belongs to, in the words of the failure message.
def _part(section: str, name: str, field: str | None = None) -> str:
    if section == "tables":
        return "rows" if field in ("rows", "num_rows") else "table"
    if section == "texts":
        return "card" if name.endswith(".md") else "metadata"
    return section


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """One line per differing item, each naming its part: table, rows, images, card, metadata,
    weights, predictions or score."""
    problems = []
    for section in ("tables", "images", "texts"):
        want, got = expected[section], actual[section]
        for name in sorted(set(want) - set(got)):
            problems.append(f"{_part(section, name)}: {name} is missing")
        for name in sorted(set(got) - set(want)):
            problems.append(f"{_part(section, name)}: {name} is new")
        for name in sorted(set(want) & set(got)):
            if section == "tables":
                for field in ("schema", "num_rows", "rows"):
                    if want[name][field] != got[name][field]:
                        what = {"schema": "schema or metadata", "num_rows": "row count", "rows": "rows"}[
                            field
                        ]
                        problems.append(f"{_part(section, name, field)}: {name}: {what} differ")
            elif want[name] != got[name]:
                problems.append(f"{_part(section, name)}: {name} differs")
    for part in ("weights", "predictions", "score"):
        if expected[part] != actual[part]:
            problems.append(f"{part}: differs")
    return problems


def failure_message(expected: dict[str, Any], actual: dict[str, Any], problems: list[str]) -> str:
    parts = sorted({line.split(":")[0] for line in problems})
    images = [line for line in problems if line.startswith("images:")]
    shown = [line for line in problems if not line.startswith("images:")][:20]
    if images:
        shown.append(f"images: {len(images)} of {len(expected['images'])} differ, e.g. {images[0][8:]}")
    drift = {
        name: f"{version} -> {actual['libraries'].get(name)}"
        for name, version in expected["libraries"].items()
        if actual["libraries"].get(name) != version
    }
    lines = [f"golden outputs differ in: {', '.join(parts)}", *shown]
    if drift:
        lines.append(
            "library versions differ from the recording: "
            + ", ".join(f"{k} {v}" for k, v in sorted(drift.items()))
            + " (a difference confined to parts those libraries write is drift, not a regression)"
        )
    else:
        lines.append("library versions are those of the recording: this is a change in our outputs")
    return "\n".join(lines)
