"""Check every invariant of a built release; each breach is one Violation with a code and a message.

Checks: checksums of every file in dataset.json (and no unlisted file); readable manifests; public
files carry no pid and nothing a pid can be recovered from (columns, key-value metadata, non-opaque
names, rows ordered or grouped by pid, released images holding more than pixels and their format's
minimum container: metadata, thumbnails, trailing bytes); the ground truth matches
the public manifests; identities disjoint between train and test; every query identity has its
cross-camera match; the protocol's per-identity counts; queries occluded; no image used twice; no
image staging tree left by an interrupted build; every released image masked by as many face
detectors as the release claims; every machine occlusion flag is what the flag the release names
gives (the paper's rule, or the learned flag file kept in `private/`, checked against its sha256),
and the ground truth carries the curated flags.

The checks of the protocol follow dataset.json `protocol`: an OPReID release (`opreid`, or no
`protocol` at all) gets all of the above. A benchmark imported with its official split (`opreid
import`, protocol = its format) keeps the integrity and leak checks and gets its own protocol's:
disjoint train and test ids, train pids 0..N-1, the counts dataset.json records, pid 0 only as a
gallery distractor, flags marked unknown left unset, and at least one query with a cross-camera
match. What an official protocol allows is reported as a note, not a violation: queries without a
cross-camera match (scoring leaves them out), counts that differ from the published ones (a
partial copy), images with the same bytes (the dataset ships them so).
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from manifests import (
    GALLERY,
    GROUND_TRUTH,
    IMAGES,
    MASKED_DIGESTS,
    OPREID_PROTOCOL,
    QUERY,
    SPLITS,
    TRAIN,
    DatasetLayout,
    ManifestError,
    occlusion_flags_known,
    read_dataset_json,
    read_manifest,
    release_protocol,
    sha256_file,
)
from manifests.layout import DATABASE_SUFFIXES, IMAGES_DIR
from opreid_builder.curation.flag_check import check_flags
from opreid_builder.curation.occlusion_flag import RELEASE_FLAG_NAME
from opreid_builder.errors import BuilderError
from opreid_builder.release.archive import package_format, unpack_archive
from opreid_builder.release.image_containers import image_file_problem
from opreid_builder.release.writer import PUBLIC_ID_HEX, RELEASE_MAP, release_files, stale_staging
from opreid_builder.split.protocol import DISTRACTOR_PID, ProtocolRules
from opreid_builder.split.public_formats import LAYOUTS

_ALLOWED_METADATA = {b"ARROW:schema", b"opreid.kind", b"opreid.schema_version"}
_OPAQUE = re.compile(rf"^[0-9a-f]{{{PUBLIC_ID_HEX}}}$")
_ORDER_Z = 6.0  # a rank correlation this many standard errors from 0 means "ordered by pid"
_BULK_FOLDERS = {IMAGES_DIR, "masked", "cache"}  # image trees: not searched for stray databases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Violation:
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class ValidationReport:
    out: Path
    violations: list[Violation] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(
        default_factory=list
    )  # what the release's protocol allows but a reader should know
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, code: str, message: str) -> None:
        self.violations.append(Violation(code, message))

    def warn(self, message: str) -> None:
        """Something the host should fix that does not break the release (logged as a warning too)."""
        self.warnings.append(message)
        log.warning("%s", message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "ok": self.ok,
            "violations": [{"code": v.code, "message": v.message} for v in self.violations],
            "notes": self.notes,
            "warnings": list(self.warnings),
            "summary": self.summary,
        }


def _rules(info: dict[str, Any]) -> ProtocolRules:
    raw = (info.get("parameters") or {}).get("split", {}).get("rules", {}) or {}
    defaults = ProtocolRules()
    return ProtocolRules(
        train_images_per_id=tuple(raw.get("train_images_per_id", defaults.train_images_per_id)),
        train_occluded_fraction=float(raw.get("train_occluded_fraction", defaults.train_occluded_fraction)),
        distractor_occluded=tuple(raw.get("distractor_occluded", defaults.distractor_occluded)),
        distractor_holistic=tuple(raw.get("distractor_holistic", defaults.distractor_holistic)),
    )


def _duplicate(report: ValidationReport, official: bool, message: str) -> None:
    """The same image twice: a violation of the OPReID protocol, a note on an official one (it ships so)."""
    if official:
        report.notes.append(message)
    else:
        report.add("duplicate-image", message)


def _check_checksums(out: Path, info: dict[str, Any], report: ValidationReport, official: bool) -> None:
    listed: dict[str, str] = info.get("checksums") or {}
    if not listed:
        report.add("checksum", "dataset.json lists no checksums")
    for rel, digest in sorted(listed.items()):
        path = out / rel
        if not path.is_file():
            report.add("missing-file", f"{rel} is listed in dataset.json but missing")
        elif sha256_file(path) != digest:
            report.add("checksum", f"{rel} does not match its sha256 in dataset.json (modified)")
    for rel in release_files(out):
        if rel not in listed:
            report.add("unlisted-file", f"{rel} is not listed in dataset.json checksums")
    report.summary["files_checked"] = len(listed)
    seen: dict[str, str] = {}
    for rel, digest in sorted(listed.items()):
        if rel.startswith(f"{IMAGES_DIR}/"):
            if digest in seen:
                _duplicate(report, official, f"{rel} has the same bytes as {seen[digest]}")
            seen.setdefault(digest, rel)


def _read(path: Path, schema, report: ValidationReport) -> pd.DataFrame | None:
    try:
        return read_manifest(path, schema).to_pandas()
    except ManifestError as exc:
        report.add("manifest", str(exc))
        return None


def _check_public_file(path: Path, split: str, schema, report: ValidationReport) -> None:
    """A public manifest holds exactly its schema's columns and no metadata beyond kind and version."""
    try:
        meta = pq.ParquetFile(path).metadata
        arrow = pq.read_schema(path)
    except Exception:  # noqa: BLE001 - reported as unreadable by read_manifest already
        return
    for name in arrow.names:
        if name not in schema.columns:
            report.add(
                "public-column", f"{path.name} carries column {name!r} (public files hold {schema.columns})"
            )
    for key in meta.metadata or {}:
        if key not in _ALLOWED_METADATA:
            report.add(
                "public-metadata", f"{path.name} carries key-value metadata {key.decode(errors='replace')!r}"
            )
    for fld in arrow:
        if fld.metadata:
            report.add("public-metadata", f"{path.name} column {fld.name!r} carries field metadata")


def _check_order(split: str, pids: np.ndarray, report: ValidationReport) -> None:
    """Rows must be neither sorted nor grouped by pid (both would leak identity through position)."""
    n = len(pids)
    if n < 3:
        return
    ranks = pd.Series(pids).rank().to_numpy()
    pos = np.arange(n, dtype=float)
    if np.std(ranks) > 0:
        rho = float(np.corrcoef(pos, ranks)[0, 1])
        if abs(rho) * math.sqrt(n - 1) > _ORDER_Z:
            report.add("row-order", f"{split}.parquet rows are ordered by pid (rank correlation {rho:.3f})")
    sizes = np.unique(pids, return_counts=True)[1]
    expected = float((sizes * (sizes - 1)).sum()) / n
    adjacent = int((pids[1:] == pids[:-1]).sum())
    if adjacent > expected + _ORDER_Z * math.sqrt(expected) + 5:
        report.add(
            "row-order",
            f"{split}.parquet rows are grouped by pid ({adjacent} adjacent same-pid pairs, {expected:.1f} expected at random)",
        )


def _check_files(out: Path, split: str, frame: pd.DataFrame, report: ValidationReport) -> None:
    layout = DatasetLayout(out)
    for rel in frame["path"]:
        if not layout.resolve(rel).is_file():
            report.add("missing-image", f"{split} image {rel} is missing")
    folder = layout.images(split)
    referenced = set(frame["path"])
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            rel = p.relative_to(out).as_posix()
            if p.is_file() and rel not in referenced:
                report.add("unreferenced-image", f"{rel} is in no {split} manifest row")
    if split != "train":
        for image_id, rel in zip(frame["image_id"], frame["path"], strict=True):
            if (
                not _OPAQUE.match(str(image_id))
                or Path(rel).stem != image_id
                or rel != layout.image_path(split, Path(rel).name)
            ):
                report.add(
                    "opaque-name",
                    f"{split} row {image_id!r} ({rel}) is not an opaque images/{split}/<id> name",
                )
    for rel in frame["path"]:
        what = image_file_problem(out / rel)
        if what:
            report.add("image-metadata", f"{rel} holds {what}: released images hold pixels and their format's "
                                         "minimum container only")  # fmt: skip


def _check_identities(gt: pd.DataFrame, report: ValidationReport) -> None:
    """Every protocol: train and test identities are disjoint, train pids are 0..N-1."""
    train, query, gallery = (gt[gt["split"] == s] for s in SPLITS)
    train_ids, query_ids, gallery_ids = set(train["pid"]), set(query["pid"]), set(gallery["pid"])
    for pid in sorted(train_ids & (query_ids | gallery_ids)):
        where = (
            "query and gallery"
            if pid in query_ids and pid in gallery_ids
            else ("query" if pid in query_ids else "gallery")
        )
        report.add("identity-overlap", f"pid {pid} is in train and {where}")
    n_train = len(train_ids)
    if train_ids and train_ids != set(range(n_train)):
        report.add("train-pids", f"train pids are not 0..{n_train - 1}")
    report.summary["counts"] = {
        s: {"ids": int(f["pid"].nunique()), "images": len(f), "occluded": int(f["occluded"].sum())}
        for s, f in zip(SPLITS, (train, query, gallery), strict=True)
    }


def _check_protocol(gt: pd.DataFrame, rules: ProtocolRules, report: ValidationReport) -> None:
    """The OPReID protocol's per-identity rules (paper, section 4)."""
    train, query, gallery = (gt[gt["split"] == s] for s in SPLITS)
    query_ids, gallery_ids = set(query["pid"]), set(gallery["pid"])
    t_lo, t_hi = rules.train_images_per_id
    for pid, count in train.groupby("pid").size().items():
        if not t_lo <= count <= t_hi:
            report.add("train-count", f"train pid {pid} has {count} images (rule {t_lo}-{t_hi})")
    for image_id in query.loc[~query["occluded"].astype(bool), "image_id"]:
        report.add("query-holistic", f"query image {image_id} is not occluded")
    for pid, count in query.groupby("pid").size().items():
        if count > 2:
            report.add("query-count", f"query pid {pid} has {count} query images (rule 1-2)")
    query_cams = query.groupby("pid")["camid"].agg(set).to_dict()
    by_pid = dict(tuple(gallery.groupby("pid")))
    for pid in sorted(query_ids):
        g = by_pid.get(pid)
        if g is None:
            report.add("cross-camera", f"query pid {pid} has no image in the gallery")
            continue
        other = g[~g["camid"].isin(query_cams[pid])]
        if other.empty:
            report.add("cross-camera", f"query pid {pid} has no gallery match from another camera")
        n_occ, n_hol = int(other["occluded"].sum()), int((~other["occluded"].astype(bool)).sum())
        if len(g) != 2 or n_occ != 1 or n_hol != 1:
            report.add(
                "query-match",
                f"query pid {pid}: gallery holds {len(g)} image(s), {n_occ} occluded and {n_hol} holistic "
                "from other cameras (rule: exactly one of each)",
            )
    (do_lo, do_hi), (dh_lo, dh_hi) = rules.distractor_occluded, rules.distractor_holistic
    for pid in sorted(gallery_ids - query_ids):
        g = by_pid[pid]
        n_occ = int(g["occluded"].sum())
        n_hol = len(g) - n_occ
        if not (do_lo <= n_occ <= do_hi and dh_lo <= n_hol <= dh_hi):
            report.add(
                "distractor-count",
                f"distractor pid {pid} has {n_occ} occluded and {n_hol} holistic images "
                f"(rule {do_lo}-{do_hi} and {dh_lo}-{dh_hi})",
            )


def _without_positive(gt: pd.DataFrame) -> list[str]:
    """Query image ids with no gallery image of their pid from another camera (sorted)."""
    query, gallery = gt[gt["split"] == "query"], gt[gt["split"] == "gallery"]
    per_pid = gallery.groupby("pid").size()
    per_cam = gallery.groupby(["pid", "camid"]).size()
    ids = []
    for image_id, pid, camid in zip(query["image_id"], query["pid"], query["camid"], strict=True):
        if per_pid.get(pid, 0) - per_cam.get((pid, camid), 0) <= 0:
            ids.append(str(image_id))
    return sorted(ids)


def _check_official(gt: pd.DataFrame, info: dict[str, Any], report: ValidationReport) -> None:
    """An imported benchmark: its recorded and published counts, cross-camera matches, unknown flags."""
    fmt = release_protocol(info)
    found = report.summary.get("counts", {})
    missing = _without_positive(gt)
    recorded = info.get("counts") or {}
    for split in SPLITS:
        got, rec = found.get(split, {}), recorded.get(split, {})
        if (rec.get("ids"), rec.get("images")) != (got.get("ids"), got.get("images")):
            report.add("counts", f"{split}: dataset.json records {rec.get('ids')} ids / {rec.get('images')} "
                                 f"images, the release holds {got.get('ids')} / {got.get('images')}")  # fmt: skip
        official = (info.get("official_counts") or {}).get(split)
        if official and (official["ids"], official["images"]) != (got.get("ids"), got.get("images")):
            report.notes.append(
                f"{split}: {got.get('ids')} ids / {got.get('images')} images, the published {fmt} has "
                f"{official['ids']} / {official['images']}"
            )
        if not occlusion_flags_known(info, split) and got.get("occluded"):
            report.add("occlusion-flags", f"{split}: flags are marked unknown in dataset.json, yet "
                                          f"{got['occluded']} images are flagged occluded")  # fmt: skip
    if recorded.get("query", {}).get("without_positive") not in (None, len(missing)):
        report.add("counts", f"query: dataset.json records {recorded['query']['without_positive']} queries "
                             f"without a cross-camera match, the release has {len(missing)}")  # fmt: skip
    n_query = found.get("query", {}).get("images", 0)
    if n_query and len(missing) == n_query:
        report.add(
            "cross-camera", "no query has a cross-camera match in the gallery: nothing could be scored"
        )
    elif missing:
        report.notes.append(
            f"{len(missing)} of {n_query} queries have no cross-camera match in the gallery (scoring leaves "
            f"them out, as fast-reid and torchreid do), e.g. {', '.join(missing[:5])}"
        )
    report.summary["queries_without_positive"] = missing


def _check_distractor_pid(mapping: pd.DataFrame, report: ValidationReport) -> None:
    """Source pid 0 (distractor boxes) may only be released as a gallery distractor."""
    wrong = mapping[(mapping["source_pid"] == DISTRACTOR_PID) & (mapping["role"] != "distractor")]
    for image_id, split in zip(wrong["image_id"], wrong["split"], strict=True):
        report.add("distractor-pid", f"{split} image {image_id} comes from pid 0 (a distractor): pid 0 may "
                                     "only give gallery distractors")  # fmt: skip


def _check_ground_truth(public: dict[str, pd.DataFrame], gt: pd.DataFrame, report: ValidationReport) -> None:
    dup = gt["image_id"][gt["image_id"].duplicated()]
    for image_id in sorted(set(dup)):
        report.add("duplicate-image", f"image_id {image_id} is used more than once")
    gt_by_id = gt.drop_duplicates("image_id").set_index("image_id")
    public_ids: set[str] = set()
    for split, frame in public.items():
        for image_id in frame["image_id"][frame["image_id"].duplicated()]:
            report.add("duplicate-image", f"image_id {image_id} appears twice in {split}.parquet")
        for image_id in sorted(set(frame["image_id"]) & public_ids):
            report.add("duplicate-image", f"image_id {image_id} is used in more than one split")
        public_ids |= set(frame["image_id"])
        joined = frame.merge(gt_by_id, left_on="image_id", right_index=True, how="left", suffixes=("", "_gt"))
        for image_id in joined.loc[joined["split"].isna(), "image_id"]:
            report.add("ground-truth", f"{split} image {image_id} has no ground-truth row")
        known = joined[joined["split"].notna()]
        for image_id in known.loc[known["split"] != split, "image_id"]:
            report.add(
                "ground-truth", f"{split} image {image_id} is listed as another split in the ground truth"
            )
        for image_id in known.loc[known["camid"] != known["camid_gt"], "image_id"]:
            report.add("ground-truth", f"{split} image {image_id}: camid differs from the ground truth")
        if split == "train":
            bad = known[(known["pid"] != known["pid_gt"]) | (known["occluded"] != known["occluded_gt"])]
            for image_id in bad["image_id"]:
                report.add(
                    "ground-truth", f"train image {image_id}: pid/occluded differ from the ground truth"
                )
    for image_id in sorted(set(gt["image_id"]) - public_ids):
        report.add("ground-truth", f"ground-truth image {image_id} is in no public manifest")


def _splits_required(protocol: str, official: bool) -> tuple[str, ...]:
    """The splits that must hold images: query and gallery always, train where the protocol has one
    (an imported test-only benchmark has none)."""
    if (
        official
        and not any(f.split == "train" for f in LAYOUTS[protocol].folders)
        and not any(lst.split == "train" for lst in LAYOUTS[protocol].lists)
    ):
        return ("query", "gallery")
    return ("train", "query", "gallery") if official else ("query", "gallery")


def _check_not_empty(
    public: dict[str, pd.DataFrame], required: tuple[str, ...], report: ValidationReport
) -> None:
    for split in required:
        if split in public and public[split].empty:
            report.add("empty-split", f"{split}.parquet holds no image: the {split} split is empty")


def claimed_detectors(curation: dict[str, Any]) -> int | None:
    """How many face detectors a release says ran on every image (None when it records no faces entry)."""
    faces = curation.get("faces")
    if not isinstance(faces, dict):
        return None
    if "detector_count" in faces:
        return int(faces["detector_count"])
    return len(faces.get("models") or []) + int("pose-head" in (faces.get("detectors") or []))


#: Released images named one by one when they were masked by too few detectors (the rest are counted).
_NAMED = 10


def _check_face_detectors(
    layout: DatasetLayout, info: dict[str, Any], mapping: pd.DataFrame, report: ValidationReport
) -> None:
    """Every released image was masked by at least the detectors the release claims."""
    claimed = claimed_detectors((info.get("parameters") or {}).get("curation") or {})
    if claimed is None or not layout.images_table.is_file():
        return
    images = _read(layout.images_table, IMAGES, report)
    if images is None:
        return
    ran = images.drop_duplicates("image_id").set_index("image_id")["face_detectors"]
    counts = mapping["source_image_id"].map(ran)
    short = mapping[counts.isna() | (counts < claimed)]
    for _, row in short.head(_NAMED).iterrows():
        got = ran.get(row["source_image_id"])
        got = "no" if got is None or pd.isna(got) else int(got)
        report.add(
            "face-detectors",
            f"released image {row['image_id']} (source {row['source_image_id']}) was masked by {got} face "
            f"detector(s); the release claims {claimed}",
        )
    if len(short) > _NAMED:
        report.add(
            "face-detectors", f"{len(short) - _NAMED} more released image(s) were masked by too few detectors"
        )


def _check_occlusion_flags(
    layout: DatasetLayout,
    info: dict[str, Any],
    mapping: pd.DataFrame,
    gt: pd.DataFrame,
    report: ValidationReport,
) -> None:
    """Recompute the machine flags from images.parquet and the flag the release names; the ground
    truth of every released image carries its curated flag."""
    curation = (info.get("parameters") or {}).get("curation") or {}
    if "occlusion" not in curation or not layout.images_table.is_file():
        return
    try:
        images = read_manifest(layout.images_table, IMAGES)
    except ManifestError:
        return  # reported by the face detector check
    for finding in check_flags(images, curation, layout.private / RELEASE_FLAG_NAME):
        report.add(finding.code, finding.message)
    curated = dict(
        zip(images.column("image_id").to_pylist(), images.column("occluded").to_pylist(), strict=True)
    )
    released = mapping.merge(gt[["image_id", "occluded"]], on="image_id", how="inner")
    differ = [
        row.image_id for row in released.itertuples()
        if curated.get(row.source_image_id) is not None and bool(curated[row.source_image_id]) != bool(row.occluded)
    ]  # fmt: skip
    if differ:
        report.add("occlusion-flag", f"{len(differ)} released image(s) carry another flag in the ground truth than "
                                     f"in private/images.parquet (e.g. {differ[0]})")  # fmt: skip


def _check_masked_crops(
    layout: DatasetLayout, public: dict[str, pd.DataFrame], mapping: pd.DataFrame, report: ValidationReport
) -> None:
    """Every released image is, byte for byte, the masked crop curate wrote for its source (as recorded in
    cache/masked_digests.parquet): a crop swapped into masked/ after curation is not released unnoticed."""
    if not layout.masked_digests.is_file():
        return
    recorded = _read(layout.masked_digests, MASKED_DIGESTS, report)
    if recorded is None:
        return
    wanted = recorded.drop_duplicates("image_id").set_index("image_id")["sha256"]
    frames = [frame[["image_id", "path"]] for frame in public.values()]
    paths = pd.concat(frames).drop_duplicates("image_id").set_index("image_id")["path"] if frames else {}
    differ = []
    for image_id, source in zip(mapping["image_id"], mapping["source_image_id"], strict=True):
        file = layout.resolve(paths[image_id]) if image_id in paths else None
        if file is not None and file.is_file() and sha256_file(file) != wanted.get(source):
            differ.append((image_id, source))
    for image_id, source in differ[:_NAMED]:
        report.add(
            "masked-crop",
            f"released image {image_id} is not the masked crop curate wrote for its source {source} "
            "(masked/ changed after curation: run `opreid curate` again, then build-split)",
        )
    if len(differ) > _NAMED:
        report.add(
            "masked-crop", f"{len(differ) - _NAMED} more released image(s) differ from their masked crop"
        )


def validate(out: str | Path) -> ValidationReport:
    """Run every check on the release in `out`; never raises for a broken release, reports instead."""
    out = Path(out)
    layout = DatasetLayout(out)
    report = ValidationReport(out=out)
    if not out.is_dir():
        report.add("not-a-release", f"{out} is not a folder (a packed archive is checked with --public)")
        return report
    _warn_databases(out, report)
    try:
        info = read_dataset_json(out)
    except ManifestError as exc:
        report.add("dataset-json", str(exc))
        info = {}
    if info.get("kind") == PACKAGE_KIND:
        report.add(
            "public-package", f"{out} is a participants' package: check it with `opreid validate --public`"
        )
        return report
    protocol = release_protocol(info)
    official = protocol in LAYOUTS
    report.summary["protocol"] = protocol
    if protocol != OPREID_PROTOCOL and not official:
        report.add("protocol", f"dataset.json names the protocol {protocol!r}; this opreid knows "
                               f"{', '.join([OPREID_PROTOCOL, *LAYOUTS])}")  # fmt: skip
    if info:
        _check_checksums(out, info, report, official)
    for folder in stale_staging(out):
        report.add(
            "staging-folder",
            f"{folder.name}/ is an image staging tree left by an interrupted build-split "
            "(rerun build-split, or delete it)",
        )

    public: dict[str, pd.DataFrame] = {}
    for split, schema in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY)):
        path = layout.manifest(split)
        if split != "train":
            _check_public_file(path, split, schema, report)
        frame = _read(path, schema, report)
        if frame is not None:
            public[split] = frame
            _check_files(out, split, frame, report)
    _check_not_empty(public, _splits_required(protocol, official), report)
    gt = _read(layout.ground_truth, GROUND_TRUTH, report)
    if gt is None:
        return report
    gt["occluded"] = gt["occluded"].astype(bool)
    _check_ground_truth(public, gt, report)
    _check_identities(gt, report)
    if official:
        _check_official(gt, info, report)
    elif protocol == OPREID_PROTOCOL:
        _check_protocol(gt, _rules(info), report)
    gt_pid = gt.drop_duplicates("image_id").set_index("image_id")["pid"]
    for split in ("query", "gallery"):
        if split in public:
            pids = public[split]["image_id"].map(gt_pid)
            _check_order(split, pids.dropna().to_numpy(), report)
    if layout.release_map.is_file():
        mapping = _read(layout.release_map, RELEASE_MAP, report)
        if mapping is not None:
            for source in sorted(set(mapping["source_image_id"][mapping["source_image_id"].duplicated()])):
                _duplicate(report, official, f"source image {source} is released more than once")
            if not official or LAYOUTS[protocol].has_distractors:
                _check_distractor_pid(mapping, report)
            if "query" in public and "gallery" in public:
                leaked = (set(public["query"]["image_id"]) | set(public["gallery"]["image_id"])) & set(
                    mapping["source_image_id"]
                )
                for image_id in sorted(leaked):
                    report.add("opaque-name", f"public image_id {image_id} is a source image id")
            _check_face_detectors(layout, info, mapping, report)
            if protocol == OPREID_PROTOCOL:
                _check_occlusion_flags(layout, info, mapping, gt, report)
            _check_masked_crops(layout, public, mapping, report)
    report.summary["violations"] = len(report.violations)
    return report


def _databases(root: Path) -> list[Path]:
    """Database files anywhere under `root` but the image trees (which are searched by name only)."""
    found = []
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in _BULK_FOLDERS]
        found += [Path(folder) / f for f in files if f.lower().endswith(DATABASE_SUFFIXES)]
    return sorted(found)


def _warn_databases(out: Path, report: ValidationReport) -> None:
    host = DatasetLayout(out).host_dir
    for path in _databases(out):
        report.warn(
            f"{path.relative_to(out).as_posix()} is a database inside the release: a leaderboard database "
            f"holds the private split, the private scores and the token hashes; move it out of the release "
            f"(e.g. to {host}/) and keep it mode 0600"
        )


# ---- the participants' package (`opreid release pack`) ------------------------------------------
#: `dataset.json` `kind` of a public package, and the only keys its dataset.json may hold.
PACKAGE_KIND = "public_package"
PACKAGE_KEYS = frozenset(
    {"schema_version", "kind", "name", "tool", "tool_version", "built_with", "counts", "target_vs_achieved",
     "public_id_hex_digits", "submission", "release_sha256", "checksums"}
)  # fmt: skip
#: What never reaches participants, by top-level name (besides database files anywhere).
PRIVATE_NAMES = ("private", "masked", "cache", "review")


def package_files(root: Path) -> list[str]:
    """The public files of a package a participant may receive, by POSIX path relative to `root`."""
    layout = DatasetLayout(root)
    files = [p.name for p in (*layout.public_top_level, layout.sample_submission, layout.submitting_guide)]
    return sorted(files)


def _private_reason(rel: str) -> str | None:
    first = rel.split("/", 1)[0]
    if first in PRIVATE_NAMES:
        return f"{rel} is a host file ({first}/): participants must never receive it"
    if rel.lower().endswith(DATABASE_SUFFIXES):
        return f"{rel} is a database file: a leaderboard database holds the private split and scores"
    if Path(rel).name.startswith(".opreid"):
        return f"{rel} is a host marker file"
    return None


def _check_package_files(root: Path, info: dict[str, Any], report: ValidationReport) -> None:
    listed: dict[str, str] = info.get("checksums") or {}
    if not listed:
        report.add("checksum", "dataset.json lists no checksums")
    expected = set(package_files(root))
    present = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if (p.is_file() or p.is_symlink())
    )
    for rel in present:
        path = root / rel
        if rel == "dataset.json":
            continue
        if reason := _private_reason(rel):
            report.add("private-file", reason)
        elif path.is_symlink() or not path.is_file():
            report.add("not-a-file", f"{rel} is a link or not a regular file")
        elif rel not in expected and not rel.startswith(f"{IMAGES_DIR}/"):
            report.add("unexpected-file", f"{rel} is not part of a participants' package")
        elif rel not in listed:
            report.add("unlisted-file", f"{rel} is not listed in dataset.json checksums")
    for rel, digest in sorted(listed.items()):
        path = root / rel
        if not path.is_file():
            report.add("missing-file", f"{rel} is listed in dataset.json but missing")
        elif sha256_file(path) != digest:
            report.add("checksum", f"{rel} does not match its sha256 in dataset.json (modified)")
    optional = {DatasetLayout(root).croissant.name}  # an imported benchmark's release has none
    for rel in sorted(expected - set(present) - optional):
        if rel not in listed:
            report.add("missing-file", f"{rel} is missing from the package")
    report.summary["files_checked"] = len(listed)


def _check_package_json(info: dict[str, Any], report: ValidationReport) -> None:
    if info.get("kind") != PACKAGE_KIND:
        report.add(
            "not-a-package",
            f"dataset.json has kind {info.get('kind')!r}, not {PACKAGE_KIND!r}: write a package with "
            "`opreid release pack OUT -o PUBLIC`",
        )
    for key in sorted(set(info) - PACKAGE_KEYS):
        why = " (with the source images, the split seed rebuilds the ground truth)" if "seed" in key else ""
        report.add(
            "public-metadata", f"dataset.json carries {key!r}, which a participants' package never holds{why}"
        )


def _check_paths(split: str, frame: pd.DataFrame, report: ValidationReport) -> None:
    """Every manifest path is a plain file name in images/<split>/ (nothing else can be shipped by it)."""
    prefix = f"{IMAGES_DIR}/{split}/"
    for rel in frame["path"]:
        name = str(rel)[len(prefix) :]
        if not str(rel).startswith(prefix) or not name or "/" in name or name.startswith("."):
            report.add("manifest-path", f"{split}.parquet names {rel!r}, not a file in {prefix}")


def _check_sample(
    root: Path, num_query: int | None, num_gallery: int | None, report: ValidationReport
) -> None:
    path = DatasetLayout(root).sample_submission
    if not path.is_file():
        return  # reported as a missing file
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = reader(fh, max_header_size=1 << 16)
            offset = fh.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        report.add("sample-submission", f"{path.name} is not a readable .npy file ({exc})")
        return
    expected = (num_query, num_gallery)
    if None not in expected and tuple(shape) != expected:
        report.add(
            "sample-submission",
            f"{path.name} has shape {tuple(shape)}, expected {expected} (queries x gallery)",
        )
    if np.dtype(dtype).kind != "f" or fortran:
        report.add("sample-submission", f"{path.name} is not a C-ordered float matrix ({np.dtype(dtype)})")
    elif path.stat().st_size != offset + int(np.prod(shape)) * np.dtype(dtype).itemsize:
        report.add("sample-submission", f"{path.name} is truncated or has trailing bytes")


def _validate_package(root: Path, report: ValidationReport) -> None:
    layout = DatasetLayout(root)
    try:
        info = read_dataset_json(root)
    except ManifestError as exc:
        report.add("dataset-json", str(exc))
        info = {}
    if info:
        _check_package_json(info, report)
        _check_package_files(root, info, report)
    frames: dict[str, pd.DataFrame] = {}
    for split, schema in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY)):
        path = layout.manifest(split)
        if not path.is_file():
            continue  # a missing public file is reported above
        _check_public_file(path, split, schema, report)
        frame = _read(path, schema, report)
        if frame is None:
            continue
        frames[split] = frame
        _check_paths(split, frame, report)
        _check_files(root, split, frame, report)
        if split != "train" and not frame["image_id"].is_monotonic_increasing:
            report.add("row-order", f"{split}.parquet rows are not sorted by image_id (the submission order)")
    seen: dict[str, str] = {}
    for split, frame in frames.items():
        for image_id in frame["image_id"]:
            if image_id in seen:
                report.add("duplicate-image", f"image_id {image_id} appears in {seen[image_id]} and {split}")
            seen.setdefault(image_id, split)
    _check_not_empty(frames, ("query", "gallery"), report)
    sizes = {s: len(frames[s]) if s in frames else None for s in ("query", "gallery")}
    _check_sample(root, sizes["query"], sizes["gallery"], report)
    report.summary["counts"] = {s: {"images": len(f)} for s, f in frames.items()}


def validate_public(package: str | Path) -> ValidationReport:
    """Check a participants' package alone (a folder, or the .tar/.tar.gz/.zip `release pack` wrote):
    only public files, each listed and matching its checksum; no pid, no private column or metadata
    anywhere; opaque query/gallery names; no metadata in any image (the whitelist of
    `image_containers`); a sample submission of
    the right shape. Never raises for a broken package: reports instead."""
    package = Path(package)
    report = ValidationReport(out=package)
    if package.is_dir():
        _validate_package(package, report)
    elif package.is_file() and package_format(package) != "folder":
        with tempfile.TemporaryDirectory(prefix="opreid-public-") as tmp:
            try:
                root = unpack_archive(package, Path(tmp))
            except BuilderError as exc:
                report.add("archive", str(exc))
                return report
            _validate_package(root, report)
    else:
        report.add(
            "not-a-package", f"{package} is neither a folder nor a .tar, .tar.gz, .tgz or .zip archive"
        )
    report.summary["violations"] = len(report.violations)
    return report
