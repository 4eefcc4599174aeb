"""`opreid check`: what a participant runs before submitting, against the public package alone.

It reads `query.parquet` and `gallery.parquet` (their row counts fix the shape; their order is the
order scored, so each must match its checksum in the package's `dataset.json`), validates the
file exactly as the scorer and the leaderboard will (`load_submission`: the same reasons, word for
word), and also checks the values of a matrix whose shape is wrong, so that every problem shows at
once. Nothing is sent anywhere and no ground truth is needed.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import DatasetError, InvalidSubmissionError
from benchmarks.metrics.array_checks import nonfinite_problems, ranked_index_problems
from benchmarks.metrics.distances import METRICS
from benchmarks.submission.formats import DEFAULT_MAX_NPZ_BYTES, DEFAULT_MAX_UPLOAD_BYTES, load_submission
from benchmarks.submission.npy_header import NpyHeaderError, read_npy_header
from manifests import (
    GALLERY,
    QUERY,
    DatasetLayout,
    ManifestError,
    read_dataset_json,
    read_manifest,
    sha256_file,
)


@dataclass
class CheckReport:
    path: Path
    num_query: int
    num_gallery: int
    size_bytes: int | None = None
    container: str | None = None  # npy | npz
    kind: str | None = None  # distances | ranked | features, when valid
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    description: str | None = None
    order: list[str] = field(default_factory=list)  # how rows and columns are ordered, and whether it holds
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def values(self) -> str | None:
        """What the value checks found, for a valid file."""
        if not self.ok or self.kind is None:
            return None
        if self.kind == "ranked":
            return f"every index in [0, {self.num_gallery}), none repeated within a row"
        return "all finite (no NaN, no infinity)"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "ok": self.ok, "size_bytes": self.size_bytes, "container": self.container,
            "kind": self.kind, "dtype": self.dtype, "shape": None if self.shape is None else list(self.shape),
            "expected": {"num_query": self.num_query, "num_gallery": self.num_gallery},
            "description": self.description, "order": self.order, "values": self.values, "problems": self.problems,
            "warnings": self.warnings,
        }  # fmt: skip

    def format_text(self) -> str:
        size = "?" if self.size_bytes is None else f"{self.size_bytes:,} bytes"
        shape = "?" if self.shape is None else " x ".join(map(str, self.shape))
        contents = self.description or f"dtype {self.dtype or '?'}, shape {shape}"
        lines = [
            f"file      {self.path}: {size}, {self.container or 'unrecognised'}",
            f"contents  {contents}",
            f"expected  rows = the {self.num_query} queries, columns = the {self.num_gallery} gallery images "
            f"(distances {self.num_query} x {self.num_gallery}; ranked lists {self.num_query} x K, "
            f"K <= {self.num_gallery}; or features .npz)",
            *(f"order     {line}" for line in self.order),
        ]
        if self.ok:
            lines.append(f"values    {self.values}")
        lines += [f"warning   {w}" for w in self.warnings]
        if self.ok:
            lines.append(f"ok        a valid {self.kind} submission (nothing was sent anywhere)")
        else:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _order(layout: DatasetLayout, report: CheckReport) -> None:
    """Rows and columns follow query.parquet and gallery.parquet: each must be the package's own file."""
    try:
        listed = read_dataset_json(layout.root).get("checksums") or {}
    except ManifestError:
        listed = {}
    for path, what in ((layout.query, "rows"), (layout.gallery, "columns")):
        digest = listed.get(path.name)
        if digest is None:
            report.order.append(
                f"{what} follow {path.name} (no dataset.json checksum to confirm it is the package's)"
            )
        elif sha256_file(path) != digest:
            report.problems.append(
                f"{path.name} differs from its checksum in dataset.json: the {what} may not be in the order "
                "scored; use the package's own file"
            )
        else:
            report.order.append(f"{what} follow {path.name} (matches the package's checksum)")


def _extra_value_problems(path: Path, report: CheckReport, similarity: bool) -> list[str]:
    """Value problems of a readable .npy whose header the loader refused (e.g. a wrong shape), which the
    loader does not look at: so that one run lists every problem."""
    try:
        with open(path, "rb") as fh:
            header = read_npy_header(fh)
    except (NpyHeaderError, OSError):
        return []
    report.dtype, report.shape = str(header.dtype), header.shape
    if (
        len(header.shape) != 2
        or header.dtype.hasobject
        or header.data_offset + header.nbytes != report.size_bytes
    ):
        return []
    if header.size == 0 or header.dtype.kind not in "fiu" or header.dtype.itemsize not in (1, 2, 4, 8):
        return []
    rows, cols = header.shape
    fits = (
        (rows, cols) == (report.num_query, report.num_gallery)
        if header.dtype.kind == "f"
        else (rows == report.num_query and 1 <= cols <= report.num_gallery)
    )
    if fits:
        return []  # the loader got past the header: it checked the values itself
    order = "F" if header.fortran_order else "C"
    array = np.memmap(
        path, dtype=header.dtype, mode="r", offset=header.data_offset, shape=header.shape, order=order
    )
    if not header.dtype.isnative or header.fortran_order:
        return []  # rare layouts: the loader's own pass covers them once the shape is right
    if header.dtype.kind == "f":
        return nonfinite_problems(array, "similarity matrix" if similarity else "distance matrix")
    return ranked_index_problems(array, report.num_gallery)


def _describe_npz(path: Path, report: CheckReport) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist()[:10]]
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    report.description = f".npz with member(s) {', '.join(names)}"


def check_submission(
    path: str | Path,
    data_dir: str | Path,
    *,
    similarity: bool = False,
    metric: str = METRICS[0],
    max_npz_bytes: int = DEFAULT_MAX_NPZ_BYTES,
) -> CheckReport:
    """Check `path` against the participants' package (or release) in `data_dir`; never raises for a bad
    submission (the report lists its problems), only for a package that cannot be read."""
    path, layout = Path(path), DatasetLayout(data_dir)
    try:
        num_query = read_manifest(layout.query, QUERY, columns=["image_id"]).num_rows
        num_gallery = read_manifest(layout.gallery, GALLERY, columns=["image_id"]).num_rows
    except ManifestError as exc:
        raise DatasetError(f"{data_dir} is not a participants' package (or release): {exc}") from None
    report = CheckReport(path=path, num_query=num_query, num_gallery=num_gallery)
    _order(layout, report)
    if path.is_file():
        report.size_bytes = path.stat().st_size
        limit = DEFAULT_MAX_UPLOAD_BYTES
        if report.size_bytes > limit:
            report.warnings.append(
                f"{report.size_bytes:,} bytes is over the web form's default limit of {limit:,}: submit with "
                "`opreid leaderboard submit`, or as float16, ranked lists or features"
            )
        with open(path, "rb") as fh:
            head = fh.read(8)
        report.container = "npy" if head.startswith(b"\x93NUMPY") else "npz" if head[:2] == b"PK" else None
    try:
        sub = load_submission(
            path, num_query, num_gallery, similarity=similarity, metric=metric, max_npz_bytes=max_npz_bytes
        )
    except InvalidSubmissionError as exc:
        report.problems += exc.problems
        if report.container == "npy":
            extra = _extra_value_problems(path, report, similarity)
            report.problems += [p for p in extra if p not in report.problems]
        elif report.container == "npz":
            _describe_npz(path, report)
        return report
    report.kind, report.dtype, report.shape = sub.kind, sub.dtype, tuple(sub.shape)
    report.description = sub.describe()
    return report
