"""Submission formats and their validation, done before any scoring.

Formats (rows follow `query.parquet`, columns/indices follow `gallery.parquet`):

- `.npy` float16/32/64, Q x G distances (lower is closer; `similarity=True` when higher is closer);
- `.npy` integer, Q x K ranked gallery indices, best first (1 <= K <= G, each row distinct, in range);
- `.npz` with members `query` (Q x D) and `gallery` (G x D) float features.

The format is told by the file's content (NumPy magic or zip signature), not its name. Headers are
parsed and checked (shape, dtype, order, declared size against the file or zip member size) before
any data is read; `.npy` data is memory-mapped, never loaded whole; pickles are never loaded. Every
problem found is collected and raised together as one InvalidSubmissionError.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.errors import InvalidSubmissionError
from benchmarks.metrics.array_checks import nonfinite_problems, ranked_index_problems
from benchmarks.metrics.distances import METRICS
from benchmarks.submission.npy_header import NpyHeader, NpyHeaderError, read_npy_header
from benchmarks.submission.zip_directory import ZipDirectoryError, count_members

FORMATS = ("distances", "ranked", "features")
#: Bound on the summed uncompressed size of an .npz's members (features of 45k images x 2048 x
#: float32 are ~370 MB); anything larger is refused before extraction.
DEFAULT_MAX_NPZ_BYTES = 4 << 30
#: The largest submission file a leaderboard's web form takes by default (`leaderboard serve`);
#: `opreid check` warns above it.
DEFAULT_MAX_UPLOAD_BYTES = 512 * 2**20
#: Bound on the members of an .npz (it needs two), checked in the zip's central directory before
#: zipfile lists them: listing a million members costs most of a gigabyte.
MAX_NPZ_MEMBERS = 64
MAX_FEATURE_DIM = 1 << 16
#: A float32 squared norm above this could overflow float32 distance arithmetic.
MAX_SQUARED_NORM = 1e36
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_READ_PIECE = 1 << 24


@dataclass
class Submission:
    """A validated submission; arrays are memory-mapped (`.npy`) or loaded (`.npz` features)."""

    path: Path
    kind: str  # one of FORMATS
    dtype: str
    shape: tuple[int, ...]
    similarity: bool = False
    metric: str | None = None
    distances: np.ndarray | None = field(default=None, repr=False)
    ranked: np.ndarray | None = field(default=None, repr=False)
    query_features: np.ndarray | None = field(default=None, repr=False)
    gallery_features: np.ndarray | None = field(default=None, repr=False)

    @property
    def truncated_at(self) -> int | None:
        return self.shape[1] if self.kind == "ranked" else None

    def describe(self) -> str:
        if self.kind == "distances":
            what = "similarity" if self.similarity else "distance"
            return f"{what} matrix {self.shape[0]} x {self.shape[1]} ({self.dtype})"
        if self.kind == "ranked":
            return f"ranked lists {self.shape[0]} x {self.shape[1]} ({self.dtype}; metrics truncated at K={self.shape[1]})"
        return f"features query {self.shape[0]} x {self.shape[2]}, gallery {self.shape[1]} x {self.shape[2]} ({self.dtype}; {self.metric})"


def _dtype_problem(dtype: np.dtype, allowed: str) -> str | None:
    """None when acceptable; `allowed` is 'float' or 'float|int'."""
    if dtype.hasobject:
        return "dtype object is refused (pickled objects are never loaded)"
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return None
    if dtype.kind in "iu" and "int" in allowed:
        return None
    wanted = (
        "float16/32/64 distances or integer ranked indices" if "int" in allowed else "float16/32/64 features"
    )
    return f"dtype {dtype} is not accepted (expected {wanted})"


def _native(array: np.ndarray) -> np.ndarray:
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def _check_npy_matrix(header: NpyHeader, num_query: int, num_gallery: int, problems: list[str]) -> str | None:
    """Shape and dtype of a top-level .npy; returns its kind or None."""
    dtype_problem = _dtype_problem(header.dtype, "float|int")
    if dtype_problem:
        problems.append(dtype_problem)
    kind = None if dtype_problem else ("distances" if header.dtype.kind == "f" else "ranked")
    shape = header.shape
    if len(shape) != 2:
        problems.append(
            f"expected a 2-D array (Q x G distances or Q x K ranks), got a {len(shape)}-D array of shape {shape}"
        )
        return None
    rows, cols = shape
    if kind != "ranked":  # distances, or unknown dtype: say what the shape should have been
        if shape == (num_gallery, num_query) and num_query != num_gallery:
            problems.append(
                f"shape {shape} is transposed: rows must be the {num_query} queries (query.parquet order), "
                f"columns the {num_gallery} gallery images"
            )
        elif shape != (num_query, num_gallery):
            problems.append(
                f"shape {shape} does not match the dataset: expected ({num_query}, {num_gallery}) (queries x gallery)"
            )
    else:
        if rows != num_query:
            problems.append(
                f"ranked list has {rows} rows, expected {num_query} (one per query, query.parquet order)"
            )
        if not 1 <= cols <= num_gallery:
            problems.append(f"ranked list has K = {cols} columns, expected 1 <= K <= {num_gallery}")
    return kind


def _size_problem(header: NpyHeader, available: int, what: str) -> str | None:
    expected = header.nbytes
    if available < expected:
        return f"{what} is truncated: its header declares {header.size} elements ({expected} bytes) but only {available} data bytes follow"
    if available > expected:
        return f"{what} has {available - expected} unexpected bytes after the array data"
    return None


def _load_npy(path: Path, num_query: int, num_gallery: int, similarity: bool) -> Submission:
    problems: list[str] = []
    file_size = path.stat().st_size
    with open(path, "rb") as fh:
        try:
            header = read_npy_header(fh)
        except NpyHeaderError as exc:
            raise InvalidSubmissionError([str(exc)]) from None
    kind = _check_npy_matrix(header, num_query, num_gallery, problems)
    size_problem = _size_problem(header, file_size - header.data_offset, "file")
    if size_problem:
        problems.append(size_problem)
    if problems:
        raise InvalidSubmissionError(problems)
    assert kind is not None
    order = "F" if header.fortran_order else "C"
    array = np.memmap(
        path, dtype=header.dtype, mode="r", offset=header.data_offset, shape=header.shape, order=order
    )
    if not header.dtype.isnative or header.fortran_order:
        # Rare layouts: read them once into a native C-ordered array rather than convert every chunk.
        array = np.ascontiguousarray(_native(np.asarray(array)))
    if kind == "distances":
        problems += nonfinite_problems(array, "distance matrix" if not similarity else "similarity matrix")
    else:
        problems += ranked_index_problems(array, num_gallery)
    if problems:
        raise InvalidSubmissionError(problems)
    return Submission(
        path, kind, str(header.dtype), tuple(header.shape), similarity=similarity and kind == "distances",
        distances=array if kind == "distances" else None, ranked=array if kind == "ranked" else None,
    )  # fmt: skip


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, header: NpyHeader) -> np.ndarray:
    """Read one member's data (header already validated against the member size) in bounded pieces."""
    data = np.empty(header.nbytes, dtype=np.uint8)
    with zf.open(info) as stream:
        stream.read(header.data_offset)
        pos = 0
        while pos < header.nbytes:
            piece = stream.read(min(_READ_PIECE, header.nbytes - pos))
            if not piece:
                raise EOFError(f"member ends after {pos} of {header.nbytes} data bytes")
            data[pos : pos + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
            pos += len(piece)
        if stream.read(1):  # also makes zipfile verify the CRC at the end of the member
            raise EOFError("member holds more data than its header declares")
    order = "F" if header.fortran_order else "C"
    array = data.view(header.dtype).reshape(header.shape, order=order)
    return np.ascontiguousarray(_native(array))


def _feature_value_problems(name: str, array: np.ndarray, metric: str) -> list[str]:
    problems = nonfinite_problems(array, f"{name} features")
    if problems:
        return problems
    sq = np.einsum("ij,ij->i", array, array, dtype=np.float64)
    if metric == "cosine" and (zeros := int(np.count_nonzero(sq == 0))):
        problems.append(
            f"{zeros} {name} feature row(s) are all zero: cosine similarity is undefined for them"
        )
    if float(sq.max(initial=0.0)) > MAX_SQUARED_NORM:
        problems.append(
            f"{name} features have norms up to {np.sqrt(sq.max()):.3g}: too large to compare in float32"
        )
    return problems


def _load_npz(path: Path, num_query: int, num_gallery: int, metric: str, max_npz_bytes: int) -> Submission:
    problems: list[str] = []
    try:
        with open(path, "rb") as fh:
            members = count_members(fh, MAX_NPZ_MEMBERS)
    except (ZipDirectoryError, OSError) as exc:
        raise InvalidSubmissionError([f"not a readable .npz (zip) file ({exc})"]) from None
    if members > MAX_NPZ_MEMBERS:
        raise InvalidSubmissionError(
            f".npz has more than {MAX_NPZ_MEMBERS} members (expected exactly 'query' and 'gallery'; "
            "nothing was extracted)"
        )
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidSubmissionError([f"not a readable .npz (zip) file ({exc})"]) from None
    with zf:
        infos = zf.infolist()
        by_name = {}
        for info in infos:
            base = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            by_name.setdefault(base, []).append(info)
        expected = ("query", "gallery")
        missing = [n for n in expected if n not in by_name]
        extra = sorted(info.filename for info in infos if info.filename.removesuffix(".npy") not in expected)
        if missing:
            problems.append(
                f".npz lacks member(s) {', '.join(missing)} (expected exactly 'query' and 'gallery')"
            )
        if extra:
            shown = ", ".join(repr(n) for n in extra[:5]) + (" ..." if len(extra) > 5 else "")
            problems.append(f".npz has unexpected member(s) {shown} (expected exactly 'query' and 'gallery')")
        for name in expected:
            if len(by_name.get(name, [])) > 1:
                problems.append(f".npz holds member {name!r} {len(by_name[name])} times")
        total = sum(info.file_size for info in infos)
        if total > max_npz_bytes:
            problems.append(
                f".npz members inflate to {total} bytes, over the {max_npz_bytes}-byte limit (nothing was extracted)"
            )
        rows = {"query": num_query, "gallery": num_gallery}
        headers: dict[str, NpyHeader] = {}
        for name in expected:
            members = by_name.get(name, [])
            if len(members) != 1:
                continue
            info = members[0]
            if info.flag_bits & 0x1:
                problems.append(f"member {info.filename!r} is encrypted")
                continue
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                problems.append(
                    f"member {info.filename!r} uses an unsupported compression (method {info.compress_type})"
                )
                continue
            try:
                with zf.open(info) as stream:
                    header = read_npy_header(stream)
            except NpyHeaderError as exc:
                problems.append(f"member {info.filename!r}: {exc}")
                continue
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
                problems.append(f"member {info.filename!r} cannot be read ({exc})")
                continue
            dtype_problem = _dtype_problem(header.dtype, "float")
            if dtype_problem:
                problems.append(f"member {name!r}: {dtype_problem}")
            if len(header.shape) != 2:
                problems.append(f"member {name!r} must be 2-D ({rows[name]} x D), got shape {header.shape}")
                continue
            if header.shape[0] != rows[name]:
                problems.append(
                    f"member {name!r} has {header.shape[0]} rows, expected {rows[name]} ({name}.parquet order)"
                )
            if not 1 <= header.shape[1] <= MAX_FEATURE_DIM:
                problems.append(
                    f"member {name!r} has feature dimension {header.shape[1]}, expected 1..{MAX_FEATURE_DIM}"
                )
            size_problem = _size_problem(header, info.file_size - header.data_offset, f"member {name!r}")
            if size_problem:
                problems.append(size_problem)
            headers[name] = header
        if len(headers) == 2 and headers["query"].shape[1:] != headers["gallery"].shape[1:]:
            problems.append(
                f"query features have dimension {headers['query'].shape[1]} but gallery features {headers['gallery'].shape[1]}"
            )
        if problems:
            raise InvalidSubmissionError(problems)
        arrays = {}
        for name in expected:
            try:
                arrays[name] = _read_member(zf, by_name[name][0], headers[name])
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                problems.append(f"member {name!r} is corrupt ({exc})")
    if problems:
        raise InvalidSubmissionError(problems)
    for name in expected:
        problems += _feature_value_problems(name, arrays[name], metric)
    if problems:
        raise InvalidSubmissionError(problems)
    dtypes = {str(arrays[n].dtype) for n in expected}
    return Submission(
        path, "features", "/".join(sorted(dtypes)),
        (num_query, num_gallery, int(headers["query"].shape[1])), metric=metric,
        query_features=arrays["query"], gallery_features=arrays["gallery"],
    )  # fmt: skip


def load_submission(
    path: str | Path,
    num_query: int,
    num_gallery: int,
    *,
    similarity: bool = False,
    metric: str = "cosine",
    max_npz_bytes: int = DEFAULT_MAX_NPZ_BYTES,
) -> Submission:
    """Validate a submission against the dataset's Q and G and return it ready to score.

    Raises InvalidSubmissionError listing every problem found (a header-level problem stops the
    checks of the values, which cannot be read then).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    path = Path(path)
    if not path.exists():
        raise InvalidSubmissionError([f"{path}: no such file"])
    if not path.is_file():
        raise InvalidSubmissionError([f"{path}: not a regular file"])
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InvalidSubmissionError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    if not head:
        raise InvalidSubmissionError(["empty file (0 bytes)"])
    if head.startswith(b"\x93NUMPY"):
        return _load_npy(path, num_query, num_gallery, similarity)
    if head[:4] in _ZIP_MAGIC:
        return _load_npz(path, num_query, num_gallery, metric, max_npz_bytes)
    raise InvalidSubmissionError(
        [f"not a .npy or .npz file (starts with {head[:8]!r}); save with numpy.save or numpy.savez"]
    )
