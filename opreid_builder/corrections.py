"""Review corrections: a CSV or Parquet file of (image_id, occluded) that overrides machine flags.

Rows with an empty `occluded` are skipped, so the review template (every image, `occluded` blank)
can be filled in only where a reviewer disagrees. Extra columns are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from manifests import sha256_file
from opreid_builder.errors import CorrectionsError
from opreid_builder.tabular_files import TableFileError, read_table_file

TRUE = frozenset({"1", "true", "t", "yes", "y", "occluded"})
FALSE = frozenset({"0", "false", "f", "no", "n", "holistic"})


@dataclass(frozen=True)
class Corrections:
    path: Path
    sha256: str
    flags: dict[str, bool]  # image_id -> occluded


def _flag(value, where: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise CorrectionsError(
        f"{where}: occluded must be true/false (or 1/0, yes/no, occluded/holistic), got {value!r}"
    )


def load_corrections(path: str | Path) -> Corrections:
    """Read and check a corrections file; CorrectionsError names the file and row of any problem."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise CorrectionsError(f"corrections file not found: {path} (--corrections)")
    try:
        table = read_table_file(path, {"image_id": pa.string(), "occluded": pa.string()})
    except TableFileError as exc:
        raise CorrectionsError(str(exc)) from None
    flags: dict[str, bool] = {}
    ids = table.column("image_id").to_pylist()
    values = table.column("occluded").to_pylist()
    for i, (image_id, value) in enumerate(zip(ids, values, strict=True)):
        where = f"{path}: row {i + 1}"
        flag = _flag(value, where)
        if flag is None:
            continue
        if not image_id or not str(image_id).strip():
            raise CorrectionsError(f"{where}: empty image_id")
        image_id = str(image_id).strip()
        if image_id in flags and flags[image_id] != flag:
            raise CorrectionsError(f"{where}: image {image_id} corrected twice with different flags")
        flags[image_id] = flag
    return Corrections(path, sha256_file(path), flags)
