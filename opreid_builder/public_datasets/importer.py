"""`opreid import FORMAT SRC -o OUT`: a public benchmark, with its official split, as an opreid release.

The protocol is the dataset's own, applied as fast-reid and torchreid apply it (`benchmark_layouts`):
junk (pid -1) is left out, Market's pid 0 stays in the gallery as distractors, train pids are
remapped to 0..N-1, camera-less datasets get query camera 1 and gallery camera 2. The output is the
release contract of docs/data-contract.md: opaque public query/gallery names (an official name
carries its pid, so it stays in `private/release_map.parquet`), `private/ground_truth.parquet`, a
card, and `dataset.json` naming the `protocol`, the source, the conventions and the official counts.

Occlusion flags, per split: the dataset's own (Occluded-REID's folders, Occluded-Duke's queries);
else those of an optional curation pass (`--pose-model` / `--keypoints`, the stages of `opreid
curate`); else unknown, stored as `occluded = false` and marked unknown in dataset.json, so that no
occluded/holistic breakdown is ever reported for them.

Images are hard-linked from SRC (`--copy` copies them): a hard link is a regular file to every
reader, costs no space and names nothing, whereas a symbolic link would carry the official path
(and so the pid) next to each opaque name and break when SRC moves. Where SRC is on another file
system, or the file belongs to another user (who could rewrite a released image in place), the
image is copied. An image holding more than pixels and its format's minimum container (EXIF, ICC,
IPTC, text chunks, TIFF tags, thumbnails, trailing bytes: `release.image_containers`) is written
reduced to it instead, losslessly, or converted to PNG where that cannot be done; `--mask-faces`
releases the masked crops of the curation pass.

Public names and the pid remapping are drawn from a random secret per release, kept in
`private/naming.json`, unless `--seed` fixes it: the datasets are public, so whoever knows the seed
can replay the draw and read every test pid off the public names.

Nothing is written when the copy breaks its layout (the scan is read-only), and the release is
built in `.OUT.importing/` beside OUT, validated there, and renamed into place last; the
curation caches of a killed run are kept there and reused, and a previous release left beside OUT
by a run killed between its two renames is put back (or removed, when the new one is in place).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from manifests import (
    FLAGS_KEY,
    PROTOCOL_KEY,
    SPLITS,
    UNKNOWN_FLAGS,
    DatasetLayout,
    ManifestError,
    atomic_write_text,
    progress_bar,
    read_dataset_json,
    sha256_bytes,
    sha256_tree,
    write_dataset_json,
)
from opreid.version import __version__
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.pipeline import curate_scan
from opreid_builder.curation.sources import SourceItem, SourceScan, decode_image, prefetch, read_regular_file
from opreid_builder.errors import BenchmarkImportError, BenchmarkLayoutError
from opreid_builder.public_datasets.card import render_benchmark_card
from opreid_builder.public_datasets.scan import BenchmarkScan, scan_benchmark
from opreid_builder.release.image_containers import ContainerError, clean_image, image_problem
from opreid_builder.release.leaderboard_marker import refuse_replacing_leaderboard_release
from opreid_builder.release.png_chunks import encode_png
from opreid_builder.release.validate import ValidationReport, validate
from opreid_builder.release.writer import PUBLIC_ID_HEX, ReleaseRows, release_files
from opreid_builder.split.protocol import DISTRACTOR_PID
from opreid_builder.split.public_formats import FORMATS, BenchmarkLayout, get_layout

log = logging.getLogger(__name__)

_IMPORT_SALT = 0x1AB0127  # separates the import's draws from a build-split release of the same seed
#: How an image reached images/ (dataset.json `images`): `stripped` is reduced to its format's
#: minimum container, losslessly; `converted` is its decoded pixels as a PNG.
IMAGE_METHODS = ("hardlink", "copy", "stripped", "converted", "masked")
#: Where the seed of the public names is kept (never in a public file).
NAMING_FILE = "naming.json"


@dataclass(frozen=True)
class ImportOptions:
    """What `opreid import` may be asked beyond FORMAT, SRC and OUT.

    `curation`: run the curation stages (pose or keypoints, the occlusion rule, faces) over the
    official images; its flags fill the splits the dataset leaves unflagged. `mask_faces` releases
    the face-masked crops of that pass (it needs `curation`).
    """

    subset: str | None = None
    copy: bool = False
    seed: int | None = None  # None: a random secret (kept in private/); an int makes the names reproducible
    mask_faces: bool = False
    curation: CurateConfig | None = None
    workers: int = 2
    force: bool = False  # replace a release a leaderboard was made from
    name: str | None = None  # the release's name (default: the dataset's, or SRC's in the layout's)
    published: bool = False  # SRC is the published dataset even though its counts differ

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            raise BenchmarkImportError(f"--seed must be >= 0 (got {self.seed})")
        if self.name is not None and not self.name.strip():
            raise BenchmarkImportError("--name must not be empty")
        if self.mask_faces and self.curation is None:
            raise BenchmarkImportError("--mask-faces runs the curation stages: give them a CurateConfig")


@dataclass
class ImportResult:
    """A written release: its counts next to the official ones, the flag sources, what was skipped."""

    out: Path
    format: str
    subset: str | None
    name: str
    published: str | None  # why it is the layout's published dataset ("counts", "user"), or None
    counts: dict[str, dict[str, int]]
    official_counts: dict[str, dict[str, int]]
    occlusion_flags: dict[str, str]
    images: dict[str, Any]  # images per IMAGE_METHODS entry, and the `method` asked for
    junk: int
    unexpected: list[tuple[str, str]]
    unused: dict[str, int]
    unreadable: list[tuple[str, str]]
    report: ValidationReport

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "format": self.format, "subset": self.subset, "name": self.name,
            "published": self.published, "counts": self.counts,
            "official_counts": self.official_counts, "occlusion_flags": self.occlusion_flags,
            "images": self.images, "junk": self.junk,
            "unexpected": [{"path": p, "reason": r} for p, r in self.unexpected], "unused": self.unused,
            "unreadable": [{"path": p, "detail": d} for p, d in self.unreadable],
            "validate": self.report.as_dict(),
        }  # fmt: skip


@dataclass(frozen=True)
class _Read:
    """One official image as read: its digest, whether it decodes, and how it must be written: as it is
    (None), reduced to its minimum container (`stripped`) or converted to PNG (`converted`)."""

    sha256: str | None
    detail: str | None
    readable: bool
    rewrite: str | None


@dataclass
class _Release:
    """The rows of the release being written, one per released image (parallel arrays)."""

    path: list[str] = field(default_factory=list)  # source path, relative to the dataset root
    split: list[str] = field(default_factory=list)
    source_pid: list[int] = field(default_factory=list)
    camid: list[int] = field(default_factory=list)
    occluded: list[bool] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    rewrite: list[str | None] = field(default_factory=list)
    masked: list[str | None] = field(default_factory=list)  # masked crop relative to staging


# --- checks on OUT -------------------------------------------------------------------------------


def _previous_import(out: Path) -> bool:
    try:
        return read_dataset_json(out).get(PROTOCOL_KEY) in FORMATS
    except ManifestError:
        return False


def _check_out(out: Path, root: Path, force: bool) -> None:
    """OUT must lie outside the dataset (and hold it not); an existing OUT must be empty or an import,
    and not the release of a leaderboard unless forced."""
    o, r = out.resolve(), root.resolve()
    if o == r or r in o.parents or o in r.parents:
        raise BenchmarkImportError(f"OUT ({out}) and the dataset ({root}) must not contain one another")
    if out.exists() and not out.is_dir():
        raise BenchmarkImportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _previous_import(out):
        raise BenchmarkImportError(
            f"{out} is neither empty nor an imported release; choose a new folder (an import replaces "
            "only a previous import)"
        )
    refuse_replacing_leaderboard_release(out, force, action="re-importing into it", instead="Import")


# --- reading ------------------------------------------------------------------------------------


def _read_all(scan: BenchmarkScan, workers: int, progress: bool) -> list[_Read]:
    """Digest and decode every official image once (a truncated file fails here, not in training)."""

    def load(rel: str) -> _Read:
        data, why = read_regular_file(scan.root / rel)
        if data is None:
            return _Read(None, why, False, None)
        decoded = decode_image(data)
        return _Read(sha256_bytes(data), decoded.detail, decoded.ok, _rewrite(data) if decoded.ok else None)

    paths = [im.path for im in scan.images]
    bar = progress_bar(total=len(paths), desc="read", enabled=progress)
    out = []
    with bar:
        for _, read in prefetch(paths, load, workers):
            out.append(read)
            bar.update()
    return out


def _curate(scan: BenchmarkScan, keep: list[int], staging: Path, options: ImportOptions, progress: bool):
    """The curation stages over the readable official images; their rows by source path."""
    config = dataclasses.replace(options.curation, no_person="occluded", min_size=1, workers=options.workers)
    items = [SourceItem(scan.images[i].path, scan.images[i].pid, scan.images[i].camid) for i in keep]
    source = SourceScan(f"{scan.layout.name}", scan.root, items)
    result = curate_scan(source, staging, config, mask_faces=options.mask_faces, progress=progress)
    rows = result.images.to_pylist()
    first = {r["sha256"]: r for r in rows if r["status"] == "ok"}
    # a duplicate (same bytes as an earlier official image) shares its original's flag and masked crop
    by_path = {r["source_path"]: first.get(r["sha256"], r) for r in rows}
    return by_path, result.curation


def _flag_sources(scan: BenchmarkScan, curation: dict[str, Any] | None) -> dict[str, str]:
    """Per split: `dataset` where every image carries the dataset's flag, else the curation's, else unknown
    (an empty split too)."""
    pose = None if curation is None else curation["keypoints"]["source"]  # pose | keypoints-file
    sources = {}
    for split in SPLITS:
        images = scan.split_images(split)
        if not images:  # a test-only dataset's train split: nothing to flag
            sources[split] = UNKNOWN_FLAGS
        elif all(im.occluded is not None for im in images):
            sources[split] = "dataset"
        else:
            sources[split] = pose or UNKNOWN_FLAGS
    return sources


# --- writing ------------------------------------------------------------------------------------


def _rewrite(data: bytes) -> str | None:
    """How an image must be written so that it holds pixels and its minimum container only."""
    if image_problem(data) is None:
        return None
    try:
        clean_image(data)
    except ContainerError:
        return "converted"
    return "stripped"


def _rewritten(data: bytes, how: str) -> bytes:
    if how == "stripped":
        cleaned = clean_image(data)
        if cleaned is not None:
            return cleaned
    decoded = decode_image(data)
    if not decoded.ok:
        raise BenchmarkImportError("an official image changed while it was imported; run the import again")
    return encode_png(decoded.rgb)


def _place(src: Path, dst: Path, copy: bool, rewrite: str | None) -> str:
    """Put one image at dst: a hard link, or a copy (asked for, across file systems, or a file another
    user owns), or its pixels in their minimum container (`_rewrite`). Returns the method used."""
    if rewrite is not None:
        data, why = read_regular_file(src)
        if data is None:
            raise BenchmarkImportError(f"{src}: {why} (it changed while it was imported)")
        dst.write_bytes(_rewritten(data, rewrite))
        return rewrite
    if not copy and os.stat(src, follow_symlinks=False).st_uid == os.geteuid():
        try:
            os.link(src, dst, follow_symlinks=False)
            return "hardlink"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
    shutil.copyfile(src, dst)
    return "copy"


def _prepare_staging(out: Path) -> Path:
    """`.OUT.importing/` beside OUT; a killed run's curation caches in it are kept, the rest cleared."""
    staging = out.parent / f".{out.name}.importing"
    if staging.is_dir():
        for entry in staging.iterdir():
            if entry.name not in ("cache", "masked"):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def _replaced(out: Path) -> Path:
    return out.parent / f".{out.name}.replaced"


def _recover_interrupted_swap(out: Path) -> None:
    """A run killed between the two renames of `_swap_into_place` left the previous release beside OUT:
    put it back when OUT is gone, remove it when the new release is in place."""
    old = _replaced(out)
    if not old.is_dir() or old.is_symlink():
        return
    if not out.exists() or (out.is_dir() and not out.is_symlink() and not any(out.iterdir())):
        if out.exists():
            out.rmdir()
        os.replace(old, out)
        log.warning("put back %s: an import killed while replacing it had left it in %s", out, old.name)
    else:
        shutil.rmtree(old)
        log.warning("removed %s: the release an import killed after replacing it had left beside %s",
                    old.name, out.name)  # fmt: skip


def _swap_into_place(staging: Path, out: Path) -> None:
    if out.is_dir() and any(out.iterdir()):
        old = _replaced(out)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old)
    else:
        if out.is_dir():
            out.rmdir()
        os.replace(staging, out)


def _positives(split: np.ndarray, pid: np.ndarray, camid: np.ndarray) -> np.ndarray:
    """Per query: whether the gallery holds its pid from another camera (the Market protocol's 'valid')."""
    query, gallery = split == "query", split == "gallery"
    g_all = Counter(pid[gallery].tolist())
    g_cam = Counter(zip(pid[gallery].tolist(), camid[gallery].tolist(), strict=True))
    return np.array(
        [
            g_all[p] - g_cam[(p, c)] > 0
            for p, c in zip(pid[query].tolist(), camid[query].tolist(), strict=True)
        ],
        dtype=bool,
    )


def _counts(split: np.ndarray, pid: np.ndarray, occluded: np.ndarray, role: np.ndarray, valid: np.ndarray,
            pid0: np.ndarray) -> dict[str, dict[str, int]]:  # fmt: skip
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        sel = split == name
        counts[name] = {"ids": int(len(np.unique(pid[sel]))), "images": int(sel.sum()),
                        "occluded": int(occluded[sel].sum())}  # fmt: skip
    gallery = split == "gallery"
    counts["query"]["without_positive"] = int((~valid).sum())
    counts["gallery"]["query_match_images"] = int((role == "match").sum())
    counts["gallery"]["distractor_ids"] = int(len(np.unique(pid[role == "distractor"])))
    counts["gallery"]["distractor_images"] = int((role == "distractor").sum())
    counts["gallery"]["pid0_images"] = int((gallery & pid0).sum())
    return counts


#: At most this many skipped paths are listed in dataset.json and the card (the rest are counted).
MAX_LISTED = 1000


def _source_record(scan: BenchmarkScan, unreadable: list[tuple[str, str]]) -> dict[str, Any]:
    """dataset.json `source`: what was read, and everything set aside (no host path: the folder name)."""
    layout = scan.layout
    return {
        "format": layout.name, "title": layout.title, "reference": layout.reference, "subset": scan.subset,
        "root": scan.root.name,
        "folders": [
            {"path": f.path, "split": f.split, "name_pattern": f.pattern.template, "content": f.content,
             "camera": f.camera, "per_identity": f.per_identity}
            for f in layout.protocol_folders(scan.subset) + layout.unused_folders(scan.subset)
        ],
        "lists": [{"path": lst.path, "images": lst.images, "split": lst.split} for lst in layout.lists],
        "junk_images": len(scan.junk),
        "unused": scan.unused,
        "unexpected": [{"path": p, "reason": r} for p, r in scan.unexpected[:MAX_LISTED]],
        "unexpected_count": len(scan.unexpected),
        "unreadable": [{"path": p, "detail": d} for p, d in unreadable[:MAX_LISTED]],
        "unreadable_count": len(unreadable),
        "notes": list(layout.notes),
    }  # fmt: skip


def _conventions(layout: BenchmarkLayout) -> dict[str, str]:
    return {
        "junk": "pid -1 images are left out" if any(f.junk for f in layout.folders) else "none in this dataset",
        "distractors": "pid 0 images stay in the gallery as distractors (one gallery id), never train or query"
        if layout.has_distractors else "none in this dataset",
        "train_pids": "remapped to 0..N-1 in a seeded random order",
        "test_pids": "remapped to N.. in a seeded random order"
        + ("; test ids are their own namespace in the source" if layout.separate_test_ids else ""),
        "cameras": "the community convention for camera-less data: query side camera 1, gallery side camera 2"
        if layout.camera_convention else "from the file names",
        "public_names": "query and gallery images have opaque random ids; official names stay in "
        "private/release_map.parquet (source_path)",
    }  # fmt: skip


def import_benchmark(
    fmt: str,
    src: str | Path,
    out: str | Path,
    options: ImportOptions | None = None,
    *,
    progress: bool = False,
) -> ImportResult:
    """Import the dataset copy in SRC (layout `fmt`) as a release in OUT; see the module doc."""
    options = options or ImportOptions()
    layout = get_layout(fmt)
    out = Path(out)
    scan = scan_benchmark(layout, src, options.subset)
    _recover_interrupted_swap(out)
    _check_out(out, scan.root, options.force)
    staging = _prepare_staging(out)
    try:
        result = _build(scan, staging, options, progress)
        _swap_into_place(staging, out)
    except BaseException:
        if not (staging / "cache").is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out = out
    result.report.out = out
    for line in _warnings(result):
        log.warning(line)
    return result


def _warnings(result: ImportResult) -> list[str]:
    lines = []
    for split, official in result.official_counts.items():
        got = result.counts[split]
        if (got["ids"], got["images"]) != (official["ids"], official["images"]):
            lines.append(
                f"{split}: {got['ids']} ids / {got['images']} images, the published {result.format} has "
                f"{official['ids']} / {official['images']} (a partial or modified copy, or another dataset in its "
                "layout?)"
            )
    if result.unexpected:
        lines.append(f"{len(result.unexpected)} unexpected file(s) skipped (listed in the card), e.g. "
                     f"{result.unexpected[0][0]}")  # fmt: skip
    if result.images["copy"] and result.images["method"] != "copy":
        lines.append(f"{result.images['copy']} image(s) copied: a hard link was not possible (OUT on another "
                     "file system, or files you do not own)")  # fmt: skip
    if result.unreadable:
        lines.append(f"{len(result.unreadable)} unreadable image(s) left out, e.g. {result.unreadable[0][0]}")
    missing = result.counts["query"]["without_positive"]
    if missing:
        lines.append(
            f"{missing} query image(s) have no cross-camera match in the gallery; scoring leaves them out"
        )
    return lines


def _build(scan: BenchmarkScan, staging: Path, options: ImportOptions, progress: bool) -> ImportResult:
    layout = scan.layout
    reads = _read_all(scan, options.workers, progress)
    keep = [i for i, r in enumerate(reads) if r.readable]
    unreadable = [
        (scan.images[i].path, reads[i].detail or "unreadable") for i, r in enumerate(reads) if not r.readable
    ]
    _check_readable_splits(scan, reads)
    curated, curation = None, None
    if options.curation is not None:
        # pose only where the dataset has no flags of its own; masking needs every image
        wanted = [i for i in keep if options.mask_faces or scan.images[i].occluded is None]
        if wanted:
            curated, curation = _curate(scan, wanted, staging, options, progress)
        else:
            log.info("the dataset flags every image itself: no curation pass is needed")
    flags = _flag_sources(scan, curation)

    rel = _Release()
    for i in keep:
        im = scan.images[i]
        row = curated.get(im.path) if curated is not None else None
        occluded = im.occluded if flags[im.split] == "dataset" else None
        if occluded is None and row is not None and flags[im.split] != UNKNOWN_FLAGS:
            occluded = bool(row["occluded"])
        rel.path.append(im.path)
        rel.split.append(im.split)
        rel.source_pid.append(im.pid)
        rel.camid.append(im.camid)
        rel.occluded.append(bool(occluded))
        rel.sha256.append(reads[i].sha256)
        rel.rewrite.append(reads[i].rewrite)
        rel.masked.append(row["masked_path"] if options.mask_faces and row is not None else None)
    if options.mask_faces and any(m is None for m in rel.masked):
        raise BenchmarkImportError("the curation pass left an official image without a masked crop")
    written = _write(scan, staging, rel, options, progress)
    counts = written.counts
    images = {**written.methods, "method": "copy" if options.copy else "hardlink"}
    naming = "given" if options.seed is not None else "random"
    official = {s: dataclasses.asdict(c) for s, c in layout.published_counts(scan.subset).items()}
    published = _published(counts, official, options.published)
    info = {
        "name": _release_name(scan, options, published),
        "published_dataset": layout.name if published else None,
        "published_by": published,
        PROTOCOL_KEY: layout.name,
        "tool": "opreid",
        "tool_version": __version__,
        "naming_seed": naming,
        "source": _source_record(scan, unreadable),
        "conventions": _conventions(layout),
        "counts": counts,
        "official_counts": official,
        FLAGS_KEY: flags,
        "images": images,
        "parameters": {"curation": curation},
        "public_id_hex_digits": PUBLIC_ID_HEX,
    }
    atomic_write_text(DatasetLayout(staging).card, render_benchmark_card(layout, info))
    files = release_files(staging)
    checksums = {**sha256_tree(staging, [f for f in files if f not in written.digests]),
                 **{f: written.digests[f] for f in files if f in written.digests}}  # fmt: skip
    write_dataset_json(staging, {**info, "checksums": dict(sorted(checksums.items()))})
    report = validate(staging)
    if not report.ok:
        first = report.violations[0]
        raise BenchmarkImportError(
            f"the imported release breaks {len(report.violations)} invariant(s), first {first}; please report "
            "this with the dataset's name (a bug)"
        )
    return ImportResult(
        out=staging, format=layout.name, subset=scan.subset, name=info["name"], published=published,
        counts=counts, official_counts=official,
        occlusion_flags=flags, images=images, junk=len(scan.junk), unexpected=list(scan.unexpected),
        unused=dict(scan.unused), unreadable=unreadable, report=report,
    )  # fmt: skip


@dataclass(frozen=True)
class _Written:
    methods: dict[str, int]  # images per IMAGE_METHODS entry
    counts: dict[str, dict[str, int]]
    digests: dict[str, str]  # sha256 of the images that are byte copies of the source


def _published(counts: dict, official: dict, said: bool) -> str | None:
    """Why the copy is its layout's published dataset (`counts` match, or the `user` says so), or None:
    only then are runs on it compared with published numbers (`opreid report`)."""
    if said:
        return "user"
    same = all(
        (counts[s]["ids"], counts[s]["images"]) == (c["ids"], c["images"]) for s, c in official.items()
    )
    return "counts" if official and same else None


def _release_name(scan: BenchmarkScan, options: ImportOptions, published: str | None) -> str:
    if options.name is not None:
        return options.name.strip()
    if published:
        return f"{scan.layout.title}, official protocol (imported by opreid)"
    # another dataset in the layout (CUHK03-NP or CUHK01 in Market's, a lab's own crops): not the published one
    return f"{scan.root.name} in the {scan.layout.title} layout (imported by opreid)"


def _check_readable_splits(scan: BenchmarkScan, reads: list[_Read]) -> None:
    """Every split the copy holds keeps at least one readable image: an empty split is no benchmark."""
    for split in SPLITS:
        found = [(im.path, r) for im, r in zip(scan.images, reads, strict=True) if im.split == split]
        if found and not any(r.readable for _, r in found):
            path, first = found[0]
            raise BenchmarkLayoutError(
                f"{split}: no readable image: all {len(found)} are unreadable (e.g. {path}: {first.detail})"
            )


def _write(
    scan: BenchmarkScan, staging: Path, rel: _Release, options: ImportOptions, progress: bool
) -> _Written:
    """images/, the three public manifests, the ground truth, the release map and the naming seed."""
    layout = DatasetLayout(staging)
    seed = int(options.seed) if options.seed is not None else secrets.randbits(128)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _IMPORT_SALT]))
    source_pid = np.array(rel.source_pid, dtype=np.int64)
    split = np.array(rel.split, dtype=object)
    query_pids = set(source_pid[split == "query"].tolist())  # one namespace with the gallery's
    images = ReleaseRows(
        split=split,
        role=[s if s != "gallery" else ("match" if p in query_pids else "distractor")
              for s, p in zip(rel.split, rel.source_pid, strict=True)],
        source_pid=source_pid,
        camid=np.array(rel.camid, dtype=np.int64),
        occluded=np.array(rel.occluded, dtype=bool),
        source_image_id=[sha[:16] for sha in rel.sha256],
        source_path=list(rel.path),
        ext=[".png" if how == "converted" and m is None else Path(m or p).suffix.lower()
             for p, m, how in zip(rel.path, rel.masked, rel.rewrite, strict=True)],
    )  # fmt: skip
    images.name(layout, rng)
    for s in SPLITS:
        layout.images(s).mkdir(parents=True, exist_ok=True)
    methods: Counter = Counter()
    digests: dict[str, str] = {}  # images that are the source's bytes need no second read
    for i in progress_bar(range(len(split)), total=len(split), desc="copy" if options.copy else "link",
                          enabled=progress):  # fmt: skip
        dst = staging / images.path[i]
        if rel.masked[i] is not None:
            os.link(staging / rel.masked[i], dst)
            methods["masked"] += 1
            continue
        method = _place(scan.root / rel.path[i], dst, options.copy, rel.rewrite[i])
        methods[method] += 1
        if method in ("hardlink", "copy"):
            digests[images.path[i]] = rel.sha256[i]
    images.write_manifests(layout)
    naming = {"seed": seed, "given": options.seed is not None,
              "note": "the seed of the public names and the pid remapping: with the dataset, it gives every test pid"}  # fmt: skip
    atomic_write_text(layout.private / NAMING_FILE, json.dumps(naming, indent=2, sort_keys=True) + "\n")
    role = np.array(images.role, dtype=object)
    pid0 = (source_pid == DISTRACTOR_PID) & scan.layout.has_distractors
    return _Written(
        methods={m: methods.get(m, 0) for m in IMAGE_METHODS},
        counts=_counts(
            split, images.pid, images.occluded, role, _positives(split, images.pid, images.camid), pid0
        ),
        digests=digests,
    )
