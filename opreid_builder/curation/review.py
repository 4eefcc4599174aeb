"""`opreid review OUT`: a static review site for the occlusion flags, and a corrections template.

The site needs no server (open `OUT/review/index.html` from disk) and stays small at any pool size:

- `index.html` is the page (a few kilobytes); `items.js` holds the crops column by column (ids
  and thumbnail digests as fixed-width strings; pid, camera, status, flag, flag source, run,
  missing parts and face detectors as numbers and bit masks), parsed with one `JSON.parse`;
- thumbnails are files (`thumbs/{image_id}-{digest}.jpg`), cut from the masked crops (never the raw
  ones) with the keypoints drawn in (seen: green, missing: a red cross) and loaded lazily;
- pages of `--page-size` crops are addressed in the URL (`#page=3&flag=occluded&cam=2`), and the
  filters (flag, reviewed, missing body part, camera, status, detector disagreement) work on all
  crops, not just the page shown.

Clicking a crop toggles its flag; edits are kept in the browser (localStorage) until the
"Download corrections.csv" button saves them with the reviewer's name and the time of each edit
(`image_id, occluded, reviewer, reviewed_at, machine_flag`): the file `build-split --corrections`
takes, which records the reviewer and time in images.parquet. `--sample N` and `--only` keep a
review of a large pool proportionate.

`--order doubt` puts first the crops whose flag a reviewer is likeliest to change: crops where pose
found nobody (flagged occluded, or excluded, without a look at the pixels), then the crops whose
P(occluded) from the learned flag lies nearest its threshold (with the paper's rule, whose run
length is nearest `min_run`), and crops already reviewed last. Nearness is measured in log-odds, the
scale the flag's model is linear in: with a threshold of 0.73, P 0.95 and P 0.25 are about equally
far from it. On Partial-iLIDS (flags and P from nested cross-validation) the first 20% of crops in
this order hold 63% of the wrong flags and the first half 80%, and the band of +-1 log-odds holds 16%
of the crops and half of the wrong flags. Every tile shows its P(occluded), and the summary
counts the crops inside the uncertain band (log-odds within `--band` of the threshold's).

The CSV template lists every crop in the site with an empty `occluded` column, for reviewers who
prefer a spreadsheet.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from manifests import (
    BODY_PARTS,
    FORMULA_PREFIXES,
    IMAGES,
    SKELETON,
    DatasetLayout,
    atomic_write_bytes,
    atomic_write_text,
    csv_cell,
    progress_bar,
    read_manifest,
)
from opreid_builder.curation.faces import DETECTORS
from opreid_builder.curation.occlusion import missing_keypoints
from opreid_builder.curation.occlusion_flag import NO_PERSON_SOURCE
from opreid_builder.curation.sources import prefetch
from opreid_builder.errors import CurationError

log = logging.getLogger(__name__)

REVIEW_HTML = "index.html"
REVIEW_DATA = "items.js"
REVIEW_CSV = "corrections_template.csv"
THUMBS = "thumbs"
REVIEWABLE = ("ok", "no_person")
#: `--only` choices: which crops the site holds.
ONLY_CHOICES = ("flagged", "holistic", "unflagged", "disagreement")
#: Columns of the file the site's download button writes (and `--corrections` reads).
DOWNLOAD_COLUMNS = ("image_id", "occluded", "reviewer", "reviewed_at", "machine_flag")
#: The per-crop number columns of items.js (besides the fixed-width `ids` and `thumbs` strings);
#: `prob` is P(occluded) in thousandths, -1 when the flag gives none.
FIELDS = ("pid", "cam", "status", "flag", "source", "run", "parts", "found", "disagree", "prob")
#: `--order` choices: as curated (source path), or most doubtful first.
ORDER_CHOICES = ("file", "doubt")
#: `--band`: crops whose log-odds of occlusion lie within this of the threshold's are uncertain (1.0:
#: odds within a factor e; P from 0.50 to 0.88 around a 0.73 threshold).
DEFAULT_BAND = 1.0

ID_WIDTH, THUMB_WIDTH = 16, 8
_NO_THUMB = "-" * THUMB_WIDTH
THUMB_HEIGHT = 128
_THUMB_VERSION = 1
_SEEN, _MISSING = (40, 220, 40), (235, 30, 30)


@dataclass(frozen=True)
class ReviewResult:
    html: Path
    csv: Path
    items: int
    pages: int
    thumbnails: int  # written by this run (the others were up to date)
    site_bytes: int  # index.html + items.js
    order: str = "file"
    uncertain: int = 0  # crops whose log-odds lie within `band` of the threshold's
    no_person: int = 0  # crops where pose found nobody (first in doubt order)
    band: float = DEFAULT_BAND
    threshold: float | None = None


@dataclass(frozen=True)
class _Curated:
    """What curate recorded about its flag (private/curation.json), to show the site alike."""

    kpt_conf: float
    rule: str
    detectors: list[str]
    min_run: int = 3
    threshold: float | None = None  # of the learned flag; None for the paper's rule


def _rule(layout: DatasetLayout) -> _Curated:
    """The keypoint threshold, flag and face detectors curate used (private/curation.json)."""
    path = layout.curation_record
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        occ = record["occlusion"]
        detectors = list((record.get("faces") or {}).get("detectors") or [])
        flag = occ.get("flag") or {}
        text = f"{occ['rule']}, kpt_conf {occ['kpt_conf']}, min_run {occ['min_run']}"
        threshold = flag.get("threshold")
        if threshold is not None:
            text = (
                f"learned flag {flag.get('name')} v{flag.get('version')}, occluded at P >= {float(threshold):.3f} "
                f"(missing keypoints drawn at kpt_conf {occ['kpt_conf']})"
            )
        return _Curated(
            float(occ["kpt_conf"]), text, detectors, int(occ["min_run"]),
            None if threshold is None else float(threshold),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s missing or unreadable: marking keypoints below 0.5 as missing", path)
        return _Curated(0.5, "unknown (no curation.json); keypoints below 0.5 shown as missing", [])


def _no_person(row: dict) -> bool:
    return row["status"] == "no_person" or row["occlusion_source"] == NO_PERSON_SOURCE


def doubt_key(row: dict, threshold: float | None, min_run: int) -> tuple[int, float]:
    """Sort key of `--order doubt`: no person found, then nearest the threshold, reviewed crops last."""
    if _no_person(row):
        return 0, 0.0
    if row["occlusion_source"] == "review":
        return 3, 0.0
    score = row.get("occlusion_score")
    if score is not None and threshold is not None:
        return 1, abs(_logit(float(score)) - _logit(threshold))
    run = row["longest_missing_run"]
    return 2, float("inf") if run is None else abs(run + 0.5 - min_run)


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1.0 - 1e-9)
    return math.log(p / (1.0 - p))


def band_limits(threshold: float, band: float) -> tuple[float, float]:
    """The uncertain band as probabilities: log-odds within `band` of the threshold's."""
    t = _logit(threshold)
    return 1.0 / (1.0 + math.exp(band - t)), 1.0 / (1.0 + math.exp(-band - t))


def uncertain_count(rows: list[dict], threshold: float | None, band: float) -> int:
    """Crops (not reviewed, with a person) whose log-odds of occlusion lie within `band` of the threshold's."""
    if threshold is None:
        return 0
    return sum(
        1
        for r in rows
        if r.get("occlusion_score") is not None
        and r["occlusion_source"] != "review"
        and abs(_logit(float(r["occlusion_score"])) - _logit(threshold)) <= band
    )


def _mask(names, universe) -> int:
    return sum(1 << universe.index(n) for n in set(names or []) if n in universe)


def _draw_thumbnail(masked: Path, keypoints: list[float] | None, missing: np.ndarray | None) -> bytes:
    """The masked crop at THUMB_HEIGHT pixels high with its skeleton drawn in, as JPEG bytes."""
    from PIL import Image, ImageDraw

    with Image.open(masked) as im:
        im = im.convert("RGB")
        scale = THUMB_HEIGHT / im.height
        im = im.resize((max(1, round(im.width * scale)), THUMB_HEIGHT), Image.BILINEAR)
    if keypoints is not None and missing is not None:
        draw = ImageDraw.Draw(im)
        kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)[:, :2] * scale
        kp = np.nan_to_num(kp)
        for a, b in SKELETON:
            if not missing[a] and not missing[b]:
                draw.line([tuple(kp[a]), tuple(kp[b])], fill=_SEEN, width=1)
        r = 2.0
        for k, (x, y) in enumerate(kp):
            if missing[k]:
                x, y = min(max(x, r), im.width - r), min(max(y, r), im.height - r)
                draw.line([(x - r, y - r), (x + r, y + r)], fill=_MISSING, width=1)
                draw.line([(x - r, y + r), (x + r, y - r)], fill=_MISSING, width=1)
            else:
                draw.ellipse([x - 1.2, y - 1.2, x + 1.2, y + 1.2], fill=_SEEN)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _select(
    rows: list[dict], detectors: list[str], only: str | None, sample: int | None, seed: int
) -> list[dict]:
    if only is not None and only not in ONLY_CHOICES:
        raise CurationError(f"unknown --only {only!r} (choose one of {', '.join(ONLY_CHOICES)})")
    if only == "flagged":
        rows = [r for r in rows if r["occluded"] is True]
    elif only == "holistic":
        rows = [r for r in rows if r["occluded"] is False]
    elif only == "unflagged":
        rows = [r for r in rows if r["occluded"] is None]
    elif only == "disagreement":
        rows = [r for r in rows if _disagree(r, detectors)]
    if sample is not None:
        if sample < 1:
            raise CurationError(f"--sample must be >= 1, got {sample}")
        if sample < len(rows):
            keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=sample, replace=False))
            rows = [rows[i] for i in keep]
    return rows


def _found(row: dict) -> set[str]:
    return {b["detector"] for b in row["face_boxes"] or []}


def _disagree(row: dict, detectors: list[str]) -> bool:
    """Some detector found a face or head that another one that ran did not."""
    found = _found(row)
    return bool(found) and found != set(detectors)


def write_review(
    out: str | Path,
    page_size: int = 200,
    *,
    sample: int | None = None,
    only: str | None = None,
    seed: int = 0,
    workers: int = 2,
    progress: bool = False,
    order: str = "file",
    band: float = DEFAULT_BAND,
) -> ReviewResult:
    """Write the review site (`OUT/review/`) and the corrections template from private/images.parquet."""
    import jinja2

    layout = DatasetLayout(out)
    if page_size < 1:
        raise CurationError(f"--page-size must be >= 1, got {page_size}")
    if order not in ORDER_CHOICES:
        raise CurationError(f"unknown --order {order!r} (choose one of {', '.join(ORDER_CHOICES)})")
    if not 0.0 <= band <= 10.0:
        raise CurationError(f"--band must be in [0, 10] (log-odds), got {band}")
    table = read_manifest(layout.images_table, IMAGES)
    curated = _rule(layout)
    kpt_conf, rule, detectors = curated.kpt_conf, curated.rule, curated.detectors
    rows = [r for r in table.to_pylist() if r["status"] in REVIEWABLE]
    rows = _select(rows, detectors, only, sample, seed)
    if order == "doubt":
        rows.sort(key=lambda r: doubt_key(r, curated.threshold, curated.min_run))  # stable: ties by path
    uncertain = uncertain_count(rows, curated.threshold, band)
    no_person = sum(1 for r in rows if _no_person(r))
    site = layout.review
    thumbs = site / THUMBS
    thumbs.mkdir(parents=True, exist_ok=True)
    sources = sorted({r["occlusion_source"] for r in rows if r["occlusion_source"]} | {"review"})
    cameras = sorted({r["camid"] for r in rows})

    def thumb_name(r: dict) -> str | None:
        if not r["masked_path"] or not (layout.root / r["masked_path"]).is_file():
            return None
        st = (layout.root / r["masked_path"]).stat()
        spec = [st.st_size, st.st_mtime_ns, r["keypoints"], kpt_conf, _THUMB_VERSION]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:8]

    names = [thumb_name(r) for r in rows]
    wanted = {f"{r['image_id']}-{h}.jpg" for r, h in zip(rows, names, strict=True) if h}
    todo = [
        (r, f"{r['image_id']}-{h}.jpg")
        for r, h in zip(rows, names, strict=True)
        if h and not (thumbs / f"{r['image_id']}-{h}.jpg").is_file()
    ]

    def make(task: tuple[dict, str]) -> None:
        r, name = task
        kp = r["keypoints"]
        missing = None if kp is None else missing_keypoints(np.asarray(kp), r["width"], r["height"], kpt_conf)
        atomic_write_bytes(thumbs / name, _draw_thumbnail(layout.root / r["masked_path"], kp, missing))

    for _ in progress_bar(
        prefetch(todo, make, workers), total=len(todo), desc="thumbnails", enabled=progress
    ):
        pass
    for f in thumbs.iterdir():
        if f.name not in wanted:
            f.unlink(missing_ok=True)  # a crop no longer in the site, an old thumbnail, a killed write

    columns: dict[str, list] = {name: [] for name in FIELDS}
    for r in rows:
        values = (
            r["pid"], r["camid"], REVIEWABLE.index(r["status"]), -1 if r["occluded"] is None else int(bool(r["occluded"])),
            sources.index(r["occlusion_source"]) if r["occlusion_source"] else -1,
            -1 if r["longest_missing_run"] is None else r["longest_missing_run"],
            _mask(r["missing_parts"], BODY_PARTS), _mask(_found(r), DETECTORS), int(_disagree(r, detectors)),
            -1 if r.get("occlusion_score") is None else round(1000 * float(r["occlusion_score"])),
        )  # fmt: skip
        for name, value in zip(FIELDS, values, strict=True):
            columns[name].append(value)
    digest = hashlib.sha256(layout.images_table.read_bytes()).hexdigest()[:12]
    data = {
        "site": f"{digest}-{len(rows)}", "n": len(rows), "page_size": page_size,
        "ids": "".join(r["image_id"] for r in rows), "thumbs": "".join(h or _NO_THUMB for h in names),
        "columns": columns, "reviewers": {str(i): r["reviewer"] for i, r in enumerate(rows) if r["reviewer"]},
        "statuses": list(REVIEWABLE), "sources": sources, "parts": list(BODY_PARTS), "detectors": list(DETECTORS),
        "download": list(DOWNLOAD_COLUMNS), "order": order,
        "threshold": None if curated.threshold is None else round(1000 * curated.threshold),
    }  # fmt: skip
    if any(len(r["image_id"]) != ID_WIDTH for r in rows):
        raise CurationError(f"{layout.images_table}: image ids must be {ID_WIDTH} hex digits")
    # JSON.parse of one string literal: V8 parses it faster than the same data as a script literal
    script = (
        "window.OPREID_REVIEW = JSON.parse(" + json.dumps(json.dumps(data, separators=(",", ":"))) + ");\n"
    )
    template_text = (
        resources.files("opreid_builder.curation")
        .joinpath("review_template.html")
        .read_text(encoding="utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(template_text).render(
        title=Path(out).resolve().name, parts=BODY_PARTS, cameras=cameras,
        statuses=REVIEWABLE, detectors=", ".join(detectors) or "none recorded", data_file=REVIEW_DATA,
        csv_name=REVIEW_CSV, rule=rule, selection=_selection_note(only, sample, len(rows)),
        summary=_doubt_note(order, uncertain, no_person, band, curated.threshold),
        formula_prefixes=list(FORMULA_PREFIXES),
    )  # fmt: skip
    atomic_write_text(site / REVIEW_DATA, script)
    atomic_write_text(site / REVIEW_HTML, html)
    csv_path = site / REVIEW_CSV
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180: a CR or LF inside a cell is then quoted
    writer.writerow(["image_id", "occluded", "machine_flag", "flag_source", "p_occluded", "longest_missing_run",
                     "missing_parts", "status", "camid", "source_path"])  # fmt: skip
    for r in rows:
        flag = None if r["occluded"] is None else str(bool(r["occluded"])).lower()
        prob = None if r.get("occlusion_score") is None else f"{float(r['occlusion_score']):.4f}"
        cells = [r["image_id"], None, flag, r["occlusion_source"], prob, r["longest_missing_run"],
                 "|".join(r["missing_parts"] or []), r["status"], r["camid"], r["source_path"]]  # fmt: skip
        writer.writerow([csv_cell(v) for v in cells])  # a file name may be a formula to a spreadsheet
    atomic_write_text(csv_path, buf.getvalue())
    pages = max(1, -(-len(rows) // page_size))
    size = len(html.encode()) + len(script.encode())
    return ReviewResult(
        site / REVIEW_HTML, csv_path, len(rows), pages, len(todo), size, order, uncertain, no_person, band,
        curated.threshold,
    )  # fmt: skip


def _doubt_note(order: str, uncertain: int, no_person: int, band: float, threshold: float | None) -> str:
    """The site's one-line summary of where the doubtful crops are."""
    first = (
        "Most doubtful first: "
        if order == "doubt"
        else "In file order (--order doubt puts the doubtful first): "
    )
    if threshold is None:
        band_text = (
            "the paper's rule gives no probability, so doubt is the run length's distance from min_run"
        )
    else:
        lo, hi = band_limits(threshold, band)
        band_text = (
            f"{uncertain} crops lie in the uncertain band (P(occluded) from {lo:.2f} to {hi:.2f} around the "
            f"threshold {threshold:.3f})"
        )
    return f"{first}{no_person} crops where pose found nobody; {band_text}."


def _selection_note(only: str | None, sample: int | None, n: int) -> str:
    parts = []
    if only:
        parts.append(f"only {only} crops")
    if sample:
        parts.append(f"a random sample of {sample}")
    return f"{n} crops" + (f" ({', '.join(parts)})" if parts else "")
