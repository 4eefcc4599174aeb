"""Review corrections: a CSV or Parquet file of (image_id, occluded) that overrides machine flags.

Rows with an empty `occluded` are skipped, so the review template (every image, `occluded` blank)
can be filled in only where a reviewer disagrees. The optional `reviewer` and `reviewed_at` columns
(written by the review site's download button) are recorded with each correction; other columns are
ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from manifests import sha256_file
from opreid_builder.curation.tabular_files import TableFileError, read_table_file
from opreid_builder.errors import CorrectionsError

#: Optional columns recorded with each correction (images.parquet `reviewer`, `reviewed_at`).
REVIEW_COLUMNS = ("reviewer", "reviewed_at")
TRUE = frozenset({"1", "true", "t", "yes", "y", "occluded"})
FALSE = frozenset({"0", "false", "f", "no", "n", "holistic"})


@dataclass(frozen=True)
class Corrections:
    path: Path
    sha256: str
    flags: dict[str, bool]  # image_id -> occluded
    reviews: dict[str, tuple[str | None, str | None]] = field(
        default_factory=dict
    )  # -> (reviewer, reviewed_at)


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
    path = Path(path)
    if not path.is_file():
        raise CorrectionsError(f"corrections file not found: {path} (--corrections)")
    try:
        table = read_table_file(
            path, {"image_id": pa.string(), "occluded": pa.string()},
            {c: pa.string() for c in REVIEW_COLUMNS}, newlines_in_values=True,
        )  # fmt: skip
    except TableFileError as exc:
        raise CorrectionsError(str(exc)) from None
    flags: dict[str, bool] = {}
    reviews: dict[str, tuple[str | None, str | None]] = {}
    ids = table.column("image_id").to_pylist()
    values = table.column("occluded").to_pylist()
    who = [_text(table, c) for c in REVIEW_COLUMNS]
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
        reviewer, reviewed_at = who[0][i], who[1][i]
        if reviewer or reviewed_at:
            reviews[image_id] = (reviewer, reviewed_at)
    return Corrections(path, sha256_file(path), flags, reviews)


def _text(table, column: str) -> list[str | None]:
    """An optional column as stripped strings (None where absent or empty)."""
    if column not in table.column_names:
        return [None] * table.num_rows
    return [
        None if v is None or not str(v).strip() else str(v).strip() for v in table.column(column).to_pylist()
    ]
