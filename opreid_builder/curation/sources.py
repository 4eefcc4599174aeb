"""Raw sources: find the crops under RAW, their person and camera ids, and decode them safely.

Three layouts (auto-detected, or forced with `--layout`):

- `market`: Market-1501 names anywhere under RAW (`0002_c1s1_000451_03.jpg`: pid 2, camera 1);
  pid -1 is junk and dropped, pid 0 is a distractor and kept.
- `folders`: one folder per identity (`RAW/0002/...`); the camera comes from a `c<N>` token in the
  file name or a `c<N>` / `cam<N>` sub-folder.
- `index`: a CSV or Parquet file with columns path, pid, camid (paths relative to the file's folder).
  RAW may be the file itself, or a folder holding `index.csv` / `index.parquet`.

Symlinks that leave RAW are refused, and so are index paths that do, ids that do not fit the
manifests' integer columns and folders that cannot be listed. Nothing here is fatal for a single bad
image: reading and decoding problems come back as a status, never as an exception. Only regular
files are read (a FIFO would block forever), a file name that is not UTF-8 is recorded escaped and
never read, and a crop over `max_pixels` is refused from its header, before it is decoded.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from manifests import IMAGES
from opreid_builder.curation.tabular_files import TableFileError, read_table_file
from opreid_builder.errors import SourceError

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "market", "folders", "index")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
INDEX_NAMES = ("index.csv", "index.parquet")
MARKET_NAME = re.compile(r"([-\d]+)_c(\d+)")
_CAMERA_TOKEN = re.compile(r"(?:^|[_\-.])c(?:am)?(\d+)(?=$|[_\-.s])", re.IGNORECASE)
_CAMERA_FOLDER = re.compile(r"^c(?:am)?(\d+)$", re.IGNORECASE)
JUNK_PID = -1
#: Largest crop decoded, in pixels (width x height), checked from the header before decoding. Far
#: above any pedestrian crop (Market-1501's are 128 x 64); a 12000 x 12000 photo would take ~1 GB.
DEFAULT_MAX_PIXELS = 16_000_000
#: A file larger than this many bytes per allowed pixel (plus slack for metadata) is not read at all:
#: 8 bytes covers an uncompressed 16-bit RGBA image, the largest a decodable crop can need.
_BYTES_PER_PIXEL, _SLACK_BYTES = 8, 16 << 20
NOT_UTF8 = "file name is not valid UTF-8 (recorded escaped; rename the file)"
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SourceItem:
    """One candidate crop: where it is (relative to RAW, POSIX) and its labels."""

    source_path: str
    pid: int
    camid: int


@dataclass
class SourceScan:
    """What RAW holds: the crops to curate (sorted by path) and what was set aside, with reasons."""

    layout: str
    root: Path
    items: list[SourceItem]
    junk: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    #: escaped source_path -> the name on disk, for names that are not UTF-8 (never read, see `read`)
    undecodable_names: dict[str, str] = field(default_factory=dict)

    def path(self, item: SourceItem) -> Path:
        return self.root / self.undecodable_names.get(item.source_path, item.source_path)

    def read(self, item: SourceItem, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes | None, Decoded]:
        """Read and decode one crop; a crop whose name cannot be recorded (not UTF-8) is unreadable."""
        if item.source_path in self.undecodable_names:
            return None, Decoded(None, NOT_UTF8)
        return read_and_decode(self.path(item), max_pixels)


def escape_name(name: str) -> str:
    """`name` as valid UTF-8 text: bytes that are not UTF-8 (surrogate-escaped by os) become \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _id_range(column: str) -> tuple[int, int]:
    """The values an integer column of the images manifest can hold (one source: the schema)."""
    bits = IMAGES.schema.field(column).type.bit_width
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def id_problem(pid: int, camid: int) -> str | None:
    """Why a (pid, camid) pair cannot be stored in the manifests, or None when it can."""
    for name, value in (("pid", pid), ("camid", camid)):
        lo, hi = _id_range(name)
        if not lo <= value <= hi:
            return f"{name} {value} is out of range ({lo}..{hi})"
    return None


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _walk(raw: Path, scan: SourceScan) -> list[tuple[str, bool]]:
    """Every image-named entry under RAW as (relative path, is_file); escaping symlinks are refused.

    A directory named like an image is returned with is_file False so that it gets a status instead
    of vanishing silently; so is a FIFO or a device (the read stage says it is not a regular file).
    A folder that cannot be listed is refused (with a warning), and a path that is not UTF-8 is
    returned escaped (`SourceScan.undecodable_names` keeps the name on disk).
    """
    root = raw.resolve()
    found: list[tuple[str, bool]] = []
    unlisted: list[tuple[str, str]] = []

    def cannot_list(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename is not None else raw
        if where == raw:
            raise SourceError(f"{raw}: cannot be listed ({exc.strerror or exc})")
        rel = where.relative_to(raw).as_posix()
        unlisted.append((escape_name(rel), f"folder cannot be listed ({exc.strerror or exc})"))

    for dirpath, dirnames, filenames in os.walk(raw, onerror=cannot_list, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = here / d
            rel = full.relative_to(raw).as_posix()
            if d.startswith("."):
                continue
            if full.is_symlink():
                if not _inside(root, full):
                    scan.refused.append((escape_name(rel), "symlink leaves RAW"))
                # a symlink to a folder inside RAW would list the same crops twice: skip it
                continue
            if Path(d).suffix.lower() in IMAGE_SUFFIXES:
                found.append((rel, False))
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            full = here / name
            rel = full.relative_to(raw).as_posix()
            if full.is_symlink() and not _inside(root, full):
                scan.refused.append((escape_name(rel), "symlink leaves RAW"))
                continue
            found.append((rel, True))
    if unlisted:
        scan.refused += unlisted
        log.warning(
            "%d folder(s) under %s cannot be listed, their crops are left out (e.g. %s: %s)",
            len(unlisted), raw, *unlisted[0],
        )  # fmt: skip
    escaped = []
    for rel, is_file in found:
        shown = escape_name(rel)
        if shown != rel:
            scan.undecodable_names[shown] = rel
        escaped.append((shown, is_file))
    return sorted(escaped)


def _add(scan: SourceScan, rel: str, pid: int, camid: int) -> None:
    if pid == JUNK_PID:
        scan.junk += 1
    elif pid < JUNK_PID:
        scan.refused.append((rel, f"negative pid {pid}"))
    elif problem := id_problem(pid, camid):
        scan.refused.append((rel, problem))
    else:
        scan.items.append(SourceItem(rel, pid, camid))


def _scan_market(raw: Path, scan: SourceScan) -> None:
    for rel, _ in _walk(raw, scan):
        match = MARKET_NAME.search(Path(rel).name)
        if match is None:
            scan.refused.append((rel, "name does not match the Market-1501 pattern <pid>_c<cam>"))
            continue
        try:
            pid = int(match.group(1))
        except ValueError:
            scan.refused.append((rel, f"pid {match.group(1)!r} is not an integer"))
            continue
        _add(scan, rel, pid, int(match.group(2)))


def _scan_folders(raw: Path, scan: SourceScan) -> None:
    for rel, _ in _walk(raw, scan):
        parts = rel.split("/")
        if len(parts) < 2:
            scan.refused.append((rel, "not inside an identity folder"))
            continue
        try:
            pid = int(parts[0])
        except ValueError:
            scan.refused.append((rel, f"identity folder {parts[0]!r} is not an integer pid"))
            continue
        camid = None
        for part in parts[1:-1]:
            if m := _CAMERA_FOLDER.match(part):
                camid = int(m.group(1))
        if camid is None and (m := _CAMERA_TOKEN.search(Path(parts[-1]).stem)):
            camid = int(m.group(1))
        if camid is None:
            scan.refused.append((rel, "no camera id (c<N> in the name or a c<N> sub-folder)"))
            continue
        _add(scan, rel, pid, camid)


def _read_index(path: Path) -> list[tuple[str, int, int]]:
    """Rows (path, pid, camid) of a CSV or Parquet index; SourceError naming the row on a bad value.

    CSV ids are read as text and converted here, so that a value that is not an integer, or does
    not fit its manifest column, is reported with its row rather than as a bare Arrow error.
    """
    try:
        table = read_table_file(path, {"path": pa.string(), "pid": pa.string(), "camid": pa.string()})
    except TableFileError as exc:
        raise SourceError(f"index file {exc}") from None
    cols = [table.column(c).to_pylist() for c in ("path", "pid", "camid")]
    rows = []
    for i, (p, pid, camid) in enumerate(zip(*cols, strict=True)):
        if any(v is None or v == "" for v in (p, pid, camid)):
            raise SourceError(f"{path}: row {i + 1} has an empty path, pid or camid")
        try:
            row = (str(p), int(pid), int(camid))
        except (TypeError, ValueError):
            raise SourceError(
                f"{path}: row {i + 1} ({p}): pid and camid must be integers, got {pid!r} and {camid!r}"
            ) from None
        if problem := id_problem(row[1], row[2]):
            raise SourceError(f"{path}: row {i + 1} ({row[0]}): {problem}")
        rows.append(row)
    return rows


def _scan_index(index: Path, scan: SourceScan) -> None:
    base = index.parent.resolve()
    scan.root = index.parent
    seen: set[str] = set()
    for p, pid, camid in _read_index(index):
        given = Path(p)
        if given.is_absolute():
            try:
                rel = given.relative_to(base).as_posix()
            except ValueError:
                scan.refused.append((p, "path leaves RAW"))
                continue
        else:
            rel = os.path.normpath(p).replace(os.sep, "/")
        if rel == ".." or rel.startswith("../") or not _inside(base, index.parent / rel):
            scan.refused.append((p, "path leaves RAW"))
            continue
        if rel in seen:
            scan.refused.append((p, "listed twice in the index"))
            continue
        seen.add(rel)
        _add(scan, rel, pid, camid)
    scan.items.sort(key=lambda it: it.source_path)


def detect_layout(raw: Path) -> str:
    """Guess the layout: an index file, identity folders (integer-named, no top-level images) or Market."""
    if raw.is_file():
        return "index"
    if any((raw / name).is_file() for name in INDEX_NAMES):
        return "index"
    top_images = [p for p in raw.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    subdirs = [p for p in raw.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not top_images and subdirs and all(re.fullmatch(r"-?\d+", p.name) for p in subdirs):
        return "folders"
    return "market"


def scan_sources(raw: str | Path, layout: str = "auto") -> SourceScan:
    """List the crops under RAW with their pid and camid, sorted by path (deterministic)."""
    raw = Path(raw)
    if layout not in LAYOUTS:
        raise SourceError(f"unknown layout {layout!r} (choose one of {', '.join(LAYOUTS)})")
    if not raw.exists():
        raise SourceError(f"{raw}: no such file or folder")
    try:
        chosen = detect_layout(raw) if layout == "auto" else layout
    except OSError as exc:
        raise SourceError(f"{raw}: cannot be listed ({exc.strerror or exc})") from None
    scan = SourceScan(chosen, raw, [])
    if chosen == "index":
        if raw.is_file():
            index = raw
        else:
            found = [raw / n for n in INDEX_NAMES if (raw / n).is_file()]
            if not found:
                raise SourceError(
                    f"{raw}: --layout index needs index.csv or index.parquet in RAW, or RAW = the file"
                )
            index = found[0]
        _scan_index(index, scan)
    elif not raw.is_dir():
        raise SourceError(f"{raw}: the {chosen} layout needs a folder")
    elif chosen == "market":
        _scan_market(raw, scan)
    else:
        _scan_folders(raw, scan)
    log.info(
        "%s: layout %s, %d crops, %d junk, %d refused",
        raw,
        chosen,
        len(scan.items),
        scan.junk,
        len(scan.refused),
    )
    return scan


# --- decoding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """A decoded crop (RGB uint8, H x W x 3) or the reason it could not be decoded."""

    rgb: np.ndarray | None
    detail: str | None = None  # why unreadable, or what conversion was applied

    @property
    def ok(self) -> bool:
        return self.rgb is not None


def _pil_open() -> Callable:
    """Pillow's own `Image.open`, even after Ultralytics has patched it.

    Ultralytics replaces `PIL.Image.open` with a wrapper that, on an unidentified file, calls its
    requirement checker for a HEIF plugin (a pip install when auto-install is on). A crop that is
    not an image must simply be `unreadable`, so the original opener is used when it is known.
    """
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None) if patches is not None else None
    return original if callable(original) else Image.open


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, without object addresses: a rebuild must give the
    same bytes, and Pillow names an in-memory file by its repr (`<_io.BytesIO object at 0x7f...>`)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _ADDRESS.sub("", _OBJECT_REPR.sub("the data", text))


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return f"too large ({width} x {height}; the cap is {max_pixels} pixels)"


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode image bytes to RGB uint8 whatever the file's extension says.

    Greyscale, palette, alpha, CMYK and 16-bit images are converted (and say so); zero-byte,
    truncated or undecodable data is reported as unreadable, and so is an image of more than
    `max_pixels` pixels, from its header, before any pixel is decoded. EXIF orientation is applied,
    because the released copy carries no EXIF and must look the same.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        return Decoded(None, "zero-byte file")
    try:
        with _pil_open()(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                return Decoded(None, _too_large(width, height, max_pixels))
            img.load()
            fmt, mode = img.format, img.mode
            img = ImageOps.exif_transpose(img)
            notes = []
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(img, dtype=np.float64)
                peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
                arr = np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
                img = Image.fromarray(arr, mode="L")
                notes.append(f"{mode} scaled to 8 bit")
            if img.mode != "RGB":
                notes.append(f"{img.mode} converted to RGB")
                img = img.convert("RGB")
            rgb = np.asarray(img, dtype=np.uint8).copy()
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours: refused at open
        return Decoded(None, f"too large (over {2 * Image.MAX_IMAGE_PIXELS} pixels; the cap is {max_pixels})")
    except UnidentifiedImageError:
        return Decoded(None, "cannot decode: not an image format Pillow can read")
    except (OSError, SyntaxError, ValueError, ImportError) as exc:
        return Decoded(None, f"cannot decode: {_reason(exc)}")
    if fmt and fmt not in ("JPEG", "MPO"):
        notes.insert(0, f"{fmt} data")
    return Decoded(rgb, "; ".join(notes) or None)


#: Opening never blocks (a FIFO without a writer) nor adopts a terminal; binary on Windows.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
)


def max_file_bytes(max_pixels: int) -> int:
    """The largest file read for a crop of at most `max_pixels` pixels (bigger ones are not read)."""
    return max_pixels * _BYTES_PER_PIXEL + _SLACK_BYTES


def read_regular_file(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes | None, str | None]:
    """A crop's bytes, or None and why not.

    Only a regular file is read: the file is opened without blocking and checked with fstat (on the
    open file, so nothing can be swapped in between), because reading a FIFO blocks forever and a
    device never ends. A file too large to hold a crop of `max_pixels` is not read either.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a directory"
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or _reason(exc)}"
    limit = max_file_bytes(max_pixels)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return None, "is a directory"
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file"
        if info.st_size > limit:
            return None, f"too large ({info.st_size} bytes; the cap is {limit} bytes for {max_pixels} pixels)"
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or _reason(exc)}"
    finally:
        os.close(fd)
    if len(data) > limit:  # grew since fstat
        return None, f"too large (over {limit} bytes; the cap is {max_pixels} pixels)"
    return data, None


def read_and_decode(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes | None, Decoded]:
    """Read a crop's bytes (None when it cannot be read at all, see `read_regular_file`) and decode them."""
    data, why = read_regular_file(path, max_pixels)
    if data is None:
        return None, Decoded(None, why)
    return data, decode_image(data, max_pixels)


def prefetch(
    items: Iterable[T], load: Callable[[T], R], workers: int = 2, window: int = 64
) -> Iterator[tuple[T, R]]:
    """Yield (item, load(item)) in input order, loading up to `window` items ahead on `workers` threads.

    Keeps decoding (PIL releases the GIL) busy while the model runs, with bounded memory.
    """
    if workers <= 0:
        for item in items:
            yield item, load(item)
        return
    pending: collections.deque = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for item in items:
            pending.append((item, pool.submit(load, item)))
            if len(pending) >= window:
                head, fut = pending.popleft()
                yield head, fut.result()
        while pending:
            head, fut = pending.popleft()
            yield head, fut.result()
