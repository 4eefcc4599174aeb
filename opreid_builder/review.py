"""`opreid review OUT`: a static HTML contact sheet of the occlusion flags, and a corrections template.

The page needs no server: the item table is embedded as JSON and rendered a page at a time by a
few lines of script, so 70,000 crops stay responsive; thumbnails are the masked crops
(`../masked/...`, loaded lazily), never the raw ones. Keypoints are drawn over each thumbnail with
the missing ones crossed out in red. Filters: flag, missing body part, camera, status, flag source.

The CSV template lists every reviewable crop with an empty `occluded` column: a reviewer fills in
only the flags they change and passes the file back with `--corrections`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from manifests import BODY_PARTS, IMAGES, SKELETON, DatasetLayout, atomic_write_text, read_manifest
from opreid_builder.errors import CurationError
from opreid_builder.occlusion import missing_keypoints

log = logging.getLogger(__name__)

REVIEW_HTML = "index.html"
REVIEW_CSV = "corrections_template.csv"
REVIEWABLE = ("ok", "no_person")
FIELDS = (
    "image_id", "image", "source_path", "pid", "camid", "status", "occluded", "source", "run",
    "missing_parts", "keypoints", "missing", "width", "height",
)  # fmt: skip


@dataclass(frozen=True)
class ReviewResult:
    html: Path
    csv: Path
    items: int


def _kpt_conf(layout: DatasetLayout) -> tuple[float, str]:
    """The threshold and rule curate used (from private/curation.json), to mark missing keypoints alike."""
    path = layout.curation_record
    try:
        occ = json.loads(path.read_text(encoding="utf-8"))["occlusion"]
        return float(occ["kpt_conf"]), f"{occ['rule']}, kpt_conf {occ['kpt_conf']}, min_run {occ['min_run']}"
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s missing or unreadable: marking keypoints below 0.5 as missing", path)
        return 0.5, "unknown (no curation.json); keypoints below 0.5 shown as missing"


def write_review(out: str | Path, page_size: int = 200) -> ReviewResult:
    """Write `OUT/review/index.html` and `OUT/review/corrections_template.csv` from private/images.parquet."""
    import jinja2

    layout = DatasetLayout(out)
    if page_size < 1:
        raise CurationError(f"--page-size must be >= 1, got {page_size}")
    table = read_manifest(layout.images_table, IMAGES)
    kpt_conf, rule = _kpt_conf(layout)
    rows = [r for r in table.to_pylist() if r["status"] in REVIEWABLE]
    items = []
    for r in rows:
        kp = r["keypoints"]
        missing = None
        if kp is not None:
            missing = [int(m) for m in missing_keypoints(np.asarray(kp), r["width"], r["height"], kpt_conf)]
            kp = [round(float(v), 1) if np.isfinite(v) else 0.0 for v in kp]
        image = f"../{r['masked_path']}" if r["masked_path"] else None
        items.append(
            [
                r["image_id"], image, r["source_path"], r["pid"], r["camid"], r["status"], r["occluded"],
                r["occlusion_source"], r["longest_missing_run"], r["missing_parts"], kp, missing,
                r["width"], r["height"],
            ]
        )  # fmt: skip
    data = {"fields": list(FIELDS), "items": items, "page_size": page_size, "skeleton": SKELETON}
    data_json = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    template_text = (
        resources.files("opreid_builder").joinpath("review_template.html").read_text(encoding="utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(template_text).render(
        title=Path(out).resolve().name,
        n_items=len(items),
        parts=BODY_PARTS,
        cameras=sorted({r["camid"] for r in rows}),
        statuses=REVIEWABLE,
        sources=sorted({r["occlusion_source"] for r in rows if r["occlusion_source"]}),
        csv_name=REVIEW_CSV,
        rule=rule,
        data_json=data_json,
    )
    html_path = layout.review / REVIEW_HTML
    csv_path = layout.review / REVIEW_CSV
    atomic_write_text(html_path, html)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", "occluded", "machine_flag", "flag_source", "longest_missing_run", "missing_parts",
                     "status", "camid", "source_path"])  # fmt: skip
    for r in rows:
        flag = "" if r["occluded"] is None else str(bool(r["occluded"])).lower()
        writer.writerow([r["image_id"], "", flag, r["occlusion_source"] or "", "" if r["longest_missing_run"] is None else r["longest_missing_run"],
                         "|".join(r["missing_parts"] or []), r["status"], r["camid"], r["source_path"]])  # fmt: skip
    atomic_write_text(csv_path, buf.getvalue())
    return ReviewResult(html_path, csv_path, len(items))
