"""Export a release to the Market-1501 folder layout, for fast-reid and torchreid users.

Market names carry the pid (`0002_c1s1_000451_00.jpg`), so the export needs the private ground
truth and is for the benchmark host or a fully released dataset, never for participants.
Cameras are renumbered 1..K in camid order (Market loaders read one digit after `c`); the mapping
and the link from each exported name back to the release image_id are written beside the images.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from manifests import (
    GALLERY,
    GROUND_TRUTH,
    QUERY,
    TRAIN,
    DatasetLayout,
    ManifestError,
    atomic_folder,
    atomic_write_text,
    progress_bar,
    read_manifest,
)
from opreid_builder.errors import ExportError
from opreid_builder.export.result import ExportResult

log = logging.getLogger(__name__)

MARKET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
#: Limits of the stock Market-1501 loaders of fast-reid / torchreid (they assert on these).
MARKET_MAX_PID = 1501
MARKET_MAX_CAMERAS = 6


def _load(out: Path) -> pd.DataFrame:
    layout = DatasetLayout(out)
    if not layout.ground_truth.is_file():
        raise ExportError(
            f"{layout.ground_truth} is missing: the Market-1501 export writes pids into file names and "
            "needs the private ground truth (run it where the full release with private/ is kept)"
        )
    try:
        gt = read_manifest(layout.ground_truth, GROUND_TRUTH).to_pandas()
        frames = [
            read_manifest(layout.manifest(split), schema, columns=["image_id", "path"])
            .to_pandas()
            .assign(split=split)
            for split, schema in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY))
        ]
    except ManifestError as exc:
        raise ExportError(str(exc)) from None
    public = pd.concat(frames, ignore_index=True)
    merged = public.merge(gt, on=["image_id", "split"], how="left", validate="one_to_one")
    missing = merged["pid"].isna()
    if missing.any():
        raise ExportError(
            f"{int(missing.sum())} released image(s) have no ground-truth row (e.g. "
            f"{merged.loc[missing, 'image_id'].iloc[0]}); run `opreid validate` first"
        )
    return merged


def export_market1501(out: str | Path, dest: str | Path, progress: bool = False) -> ExportResult:
    """Copy the release's images into DEST/{bounding_box_train,query,bounding_box_test} with Market names."""
    out, dest = Path(out), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ExportError(f"{dest} exists and is not empty; choose a new folder")
    rows = _load(out)
    rows = rows.sort_values(["split", "pid", "camid", "image_id"], kind="stable").reset_index(drop=True)
    cameras = {int(c): i + 1 for i, c in enumerate(sorted(rows["camid"].unique()))}
    warnings = []
    if len(cameras) > MARKET_MAX_CAMERAS:
        warnings.append(
            f"{len(cameras)} cameras: stock Market-1501 loaders accept cameras 1-{MARKET_MAX_CAMERAS} and read one "
            "digit after 'c'; register a custom dataset class (see export.json) for this export"
        )
    if int(rows["pid"].max()) > MARKET_MAX_PID:
        warnings.append(
            f"pids up to {int(rows['pid'].max())}: stock Market-1501 loaders assert pid <= {MARKET_MAX_PID}; "
            "register a custom dataset class for this export"
        )
    rows["cam"] = rows["camid"].map(cameras)
    rows["seq"] = rows.groupby(["split", "pid", "cam"]).cumcount()
    rows["name"] = [
        f"{MARKET_FOLDERS[s]}/{int(p):04d}_c{int(c)}s1_{int(n):06d}_00{Path(path).suffix.lower() or '.jpg'}"
        for s, p, c, n, path in zip(
            rows["split"], rows["pid"], rows["cam"], rows["seq"], rows["path"], strict=True
        )
    ]
    with atomic_folder(dest) as staging:
        for folder in MARKET_FOLDERS.values():
            (staging / folder).mkdir()
        pairs = zip(rows["path"], rows["name"], strict=True)
        for src, name in progress_bar(pairs, total=len(rows), desc="export", enabled=progress):
            if not (out / src).is_file():
                raise ExportError(f"released image {out / src} is missing; run `opreid validate {out}`")
            shutil.copyfile(out / src, staging / name)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["market_name", "image_id", "split", "camid"])
        writer.writerows(
            zip(rows["name"], rows["image_id"], rows["split"], rows["camid"].astype(int), strict=True)
        )
        atomic_write_text(staging / "image_map.csv", buf.getvalue())
        info = {
            "format": "market1501",
            "source": "opreid release",
            "folders": MARKET_FOLDERS,
            "cameras": {str(k): v for k, v in cameras.items()},
            "name_pattern": "{pid:04d}_c{camera}s1_{seq:06d}_00.jpg; camera = exported number (see cameras)",
            "warnings": warnings,
            "contains_ground_truth": True,
        }
        atomic_write_text(staging / "export.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    for w in warnings:
        log.warning(w)
    counts = rows.groupby("split").size().to_dict()
    return ExportResult(
        dest=dest,
        images={s: int(counts.get(s, 0)) for s in MARKET_FOLDERS},
        cameras=cameras,
        warnings=warnings,
    )
