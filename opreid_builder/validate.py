"""Check every invariant of a built release; each breach is one Violation with a code and a message.

Checks: checksums of every file in dataset.json (and no unlisted file); readable manifests; public
files carry no pid and nothing a pid can be recovered from (columns, key-value metadata, non-opaque
names, rows ordered or grouped by pid, EXIF/comments in released images); the ground truth matches
the public manifests; identities disjoint between train and test; every query identity has its
cross-camera match; the protocol's per-identity counts; queries occluded; no image used twice;
every released image masked by as many face detectors as the release claims.
"""

from __future__ import annotations

import math
import re
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
    QUERY,
    SPLITS,
    TRAIN,
    DatasetLayout,
    ManifestError,
    read_dataset_json,
    read_manifest,
    sha256_file,
)
from manifests.layout import IMAGES_DIR
from opreid_builder.release import PUBLIC_ID_HEX, RELEASE_MAP, release_files
from opreid_builder.split_protocol import ProtocolRules

_ALLOWED_METADATA = {b"ARROW:schema", b"opreid.kind", b"opreid.schema_version"}
_OPAQUE = re.compile(rf"^[0-9a-f]{{{PUBLIC_ID_HEX}}}$")
_ORDER_Z = 6.0  # a rank correlation this many standard errors from 0 means "ordered by pid"


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

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, code: str, message: str) -> None:
        self.violations.append(Violation(code, message))

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "ok": self.ok,
            "violations": [{"code": v.code, "message": v.message} for v in self.violations],
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


def _check_checksums(out: Path, info: dict[str, Any], report: ValidationReport) -> None:
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
                report.add("duplicate-image", f"{rel} has the same bytes as {seen[digest]}")
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


def _jpeg_metadata(path: Path) -> str | None:
    """Name the first EXIF/XMP (APP1) or comment (COM) segment of a JPEG, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(head) and head[i] == 0xFF:
        marker = head[i + 1]
        if marker in (0xD9, 0xDA):  # end of image / start of scan: headers are over
            return None
        length = int.from_bytes(head[i + 2 : i + 4], "big")
        if marker == 0xE1:
            return "EXIF/XMP (APP1)"
        if marker == 0xFE:
            return "a comment (COM)"
        i += 2 + length
    return None


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
        what = _jpeg_metadata(out / rel)
        if what:
            report.add("image-metadata", f"{rel} carries {what}")


def _check_protocol(gt: pd.DataFrame, rules: ProtocolRules, report: ValidationReport) -> None:
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
    report.summary["counts"] = {
        s: {"ids": int(f["pid"].nunique()), "images": len(f), "occluded": int(f["occluded"].sum())}
        for s, f in zip(SPLITS, (train, query, gallery), strict=True)
    }


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


def validate(out: str | Path) -> ValidationReport:
    """Run every check on the release in `out`; never raises for a broken release, reports instead."""
    out = Path(out)
    layout = DatasetLayout(out)
    report = ValidationReport(out=out)
    try:
        info = read_dataset_json(out)
    except ManifestError as exc:
        report.add("dataset-json", str(exc))
        info = {}
    if info:
        _check_checksums(out, info, report)
    rules = _rules(info)

    public: dict[str, pd.DataFrame] = {}
    for split, schema in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY)):
        path = layout.manifest(split)
        if split != "train":
            _check_public_file(path, split, schema, report)
        frame = _read(path, schema, report)
        if frame is not None:
            public[split] = frame
            _check_files(out, split, frame, report)
    gt = _read(layout.ground_truth, GROUND_TRUTH, report)
    if gt is None:
        return report
    gt["occluded"] = gt["occluded"].astype(bool)
    _check_ground_truth(public, gt, report)
    _check_protocol(gt, rules, report)
    gt_pid = gt.drop_duplicates("image_id").set_index("image_id")["pid"]
    for split in ("query", "gallery"):
        if split in public:
            pids = public[split]["image_id"].map(gt_pid)
            _check_order(split, pids.dropna().to_numpy(), report)
    if layout.release_map.is_file():
        mapping = _read(layout.release_map, RELEASE_MAP, report)
        if mapping is not None:
            for source in sorted(set(mapping["source_image_id"][mapping["source_image_id"].duplicated()])):
                report.add("duplicate-image", f"source image {source} is released more than once")
            if "query" in public and "gallery" in public:
                leaked = (set(public["query"]["image_id"]) | set(public["gallery"]["image_id"])) & set(
                    mapping["source_image_id"]
                )
                for image_id in sorted(leaked):
                    report.add("opaque-name", f"public image_id {image_id} is a source image id")
            _check_face_detectors(layout, info, mapping, report)
    report.summary["violations"] = len(report.violations)
    return report
