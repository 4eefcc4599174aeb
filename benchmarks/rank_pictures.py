"""Rank-list pictures of a scored submission: each query followed by its top-K gallery crops.

What a researcher debugs after the first score: which queries fail, and what the model put ahead of
the true match. The page (`index.html`) and one PNG strip per query show every crop bordered green
(a positive: same identity, other camera) or red (a negative); same-camera entries of the query's
identity, which the Market protocol removes, are shown greyed where they fall and are not counted
in the K. Each crop carries its occlusion flag; positives ranked beyond K follow, with their rank.

The borders come from the private ground truth: the pictures are for the benchmark host and say so.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.errors import BenchmarkError
from benchmarks.scoring import ScoreReport
from manifests import (
    GALLERY,
    QUERY,
    DatasetLayout,
    ManifestError,
    atomic_folder,
    atomic_write_text,
    read_manifest,
)

log = logging.getLogger(__name__)

QUERY_ORDERS = ("worst", "best", "random")
DEFAULT_TOP = 10
DEFAULT_QUERY_COUNT = 50
#: Seed of `--queries random`, so that two runs show the same queries.
RANDOM_SEED = 0
#: Positives ranked beyond K listed after the top K, at most.
MISSED_SHOWN = 5
THUMB_HEIGHT = 128
#: Border colours (RGB) of the PNG strips; the page uses the same through its CSS classes.
COLOURS = {
    "query": (40, 90, 200),
    "positive": (0, 160, 60),
    "negative": (215, 30, 30),
    "junk": (150, 150, 150),
}
HOST_ONLY = (
    "Host only: these pictures show the private ground truth (which gallery images match each query, "
    "and every crop's occlusion flag). Never publish them or give them to participants."
)
_MARKER = ".opreid-rank-pictures"


@dataclass(frozen=True)
class QuerySelection:
    """Which queries to show, in which order: `order` is one of QUERY_ORDERS."""

    order: str = QUERY_ORDERS[0]
    count: int = DEFAULT_QUERY_COUNT


def parse_queries(value: str) -> QuerySelection:
    """`worst`, `best`, `random`, `N` (the N worst) or `ORDER:N`; a ValueError says what is wrong."""
    text = value.strip().lower()
    order, _, count = text.partition(":")
    if order.isdigit() and not count:
        order, count = QUERY_ORDERS[0], order
    if order not in QUERY_ORDERS:
        raise ValueError(f"{value!r}: expected N, one of {', '.join(QUERY_ORDERS)}, or ORDER:N")
    if count and (not count.isdigit() or int(count) < 1):
        raise ValueError(f"{value!r}: the number of queries must be a positive integer")
    return QuerySelection(order, int(count) if count else DEFAULT_QUERY_COUNT)


@dataclass(frozen=True)
class Entry:
    """One gallery crop shown after a query."""

    gallery_index: int
    kind: str  # positive, negative or junk
    rank: int | None  # rank in the evaluated list (junk removed); None for junk
    distance: float | None


@dataclass
class QueryRow:
    query_index: int
    ap: float
    first_hit_rank: int
    entries: list[Entry]
    missed: list[Entry] = field(default_factory=list)


@dataclass
class RankPicturesSummary:
    dest: Path
    page: Path
    queries: int
    pngs: int
    missing_images: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "dest": str(self.dest), "page": str(self.page), "queries": self.queries, "pngs": self.pngs,
            "missing_images": self.missing_images,
        }  # fmt: skip


def select_queries(report: ScoreReport, selection: QuerySelection) -> list[int]:
    """Queries with a positive, worst (lowest AP, then latest first hit) or best first, or a seeded sample."""
    m = report.metrics
    valid = np.flatnonzero(m.valid)
    if selection.order == "random":
        rng = np.random.default_rng(RANDOM_SEED)
        return sorted(rng.permutation(valid)[: selection.count].tolist())
    hit = m.first_hit_rank[valid]
    hit_key = np.where(hit > 0, hit, np.iinfo(np.int64).max)  # a truncated list without a positive is last
    if selection.order == "worst":
        order = np.lexsort((valid, -hit_key, m.ap[valid]))
    else:
        order = np.lexsort((valid, hit_key, -m.ap[valid]))
    return valid[order][: selection.count].tolist()


def _ranking(report: ScoreReport, q: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Gallery indices of query q, closest first (ties by gallery order, as scored), with distances."""
    if report.distance_rows is None:
        return np.asarray(report.submission.ranked[q], dtype=np.int64), None
    row = np.asarray(report.distance_rows(q, q + 1)[0], dtype=np.float64)
    order = np.argsort(row, kind="stable")
    return order, row[order]


def query_row(report: ScoreReport, q: int, top: int) -> QueryRow:
    gt, m = report.ground_truth, report.metrics
    order, dist = _ranking(report, q)
    same = gt.g_pids[order] == gt.q_pids[q]
    junk = same & (gt.g_camids[order] == gt.q_camids[q])
    rank = np.cumsum(~junk)
    counted = np.flatnonzero(~junk)
    cut = int(counted[top - 1]) + 1 if len(counted) >= top else len(order)  # junk before the K-th stays
    shown = np.arange(cut)

    def entry(i: int) -> Entry:
        kind = "junk" if junk[i] else ("positive" if same[i] else "negative")
        return Entry(int(order[i]), kind, None if junk[i] else int(rank[i]),
                     None if dist is None else float(dist[i]))  # fmt: skip

    missed = np.flatnonzero(same & ~junk & (rank > top))[:MISSED_SHOWN]
    return QueryRow(q, float(m.ap[q]), int(m.first_hit_rank[q]), [entry(i) for i in shown.tolist()],
                    [entry(i) for i in missed.tolist()])  # fmt: skip


def _paths(data_dir: Path, report: ScoreReport) -> tuple[list[str], list[str]]:
    layout = DatasetLayout(data_dir)
    out = []
    for manifest, schema, ids in ((layout.query, QUERY, report.ground_truth.query_ids),
                                  (layout.gallery, GALLERY, report.ground_truth.gallery_ids)):  # fmt: skip
        try:
            table = read_manifest(manifest, schema, columns=["image_id", "path"])
        except ManifestError as exc:
            raise BenchmarkError(str(exc)) from None
        if table.column("image_id").to_pylist() != list(ids):
            raise BenchmarkError(f"{manifest} changed since it was scored; score again")
        out.append(table.column("path").to_pylist())
    return out[0], out[1]


class _Thumbnails:
    """Each crop once, as crops/<split>_<image_id>.png at THUMB_HEIGHT; a grey tile for a missing file."""

    def __init__(self, root: Path, dest: Path):
        self.root, self.dest, self.missing = root, dest, []
        self._cache: dict[str, object] = {}

    def get(self, split: str, image_id: str, path: str):
        from PIL import Image, ImageDraw

        name = f"{split}_{image_id}.png"
        if name in self._cache:
            return name, self._cache[name]
        source = DatasetLayout(self.root).resolve(path)
        try:
            if not source.is_file():
                raise OSError("not a regular file")
            with Image.open(source) as im:
                im = im.convert("RGB")
                width = max(1, round(im.width * THUMB_HEIGHT / max(im.height, 1)))
                thumb = im.resize((width, THUMB_HEIGHT), Image.Resampling.BILINEAR)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            log.warning("%s: cannot be read (%s); shown as a grey tile", source, exc)
            self.missing.append(str(path))
            thumb = Image.new("RGB", (THUMB_HEIGHT // 2, THUMB_HEIGHT), (200, 200, 200))
            ImageDraw.Draw(thumb).text((4, THUMB_HEIGHT // 2), "missing", fill=(80, 80, 80))
        thumb.save(self.dest / "crops" / name, format="PNG")
        self._cache[name] = thumb
        return name, thumb


def _strip(query_thumb, items: list[tuple[object, str, str, bool]]):
    """One PNG per query: the query, then each crop with its border colour and a label below; a gap
    before the query's first positive ranked beyond K."""
    from PIL import Image, ImageDraw, ImageOps

    pad, border, label_h, gap = 6, 4, 26, 12
    tiles = [(query_thumb, "query", "query", False)] + items
    width = sum(t.width + 2 * border + pad + gap * g for t, _, _, g in tiles) + pad + gap
    canvas = Image.new("RGB", (width, THUMB_HEIGHT + 2 * border + label_h + 2 * pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = pad
    for i, (thumb, kind, label, gap_before) in enumerate(tiles):
        x += gap if gap_before else 0
        if kind == "junk":
            thumb = ImageOps.grayscale(thumb).convert("RGB")
        tile = ImageOps.expand(thumb, border=border, fill=COLOURS[kind])
        canvas.paste(tile, (x, pad))
        for n, line in enumerate(label.split("\n")):
            draw.text((x, pad + tile.height + 2 + 11 * n), line, fill=(0, 0, 0))
        x += tile.width + pad + (gap if i == 0 else 0)
    return canvas


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.host-only { background: #fff3cd; border: 1px solid #e0b400; padding: .6em 1em; font-weight: 600; }
.legend span { display: inline-block; margin-right: 1.2em; }
.legend i { display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin-right: .3em; }
section.query { border-top: 1px solid #ddd; padding: .6em 0; }
section.query h2 { font-size: 1em; margin: .2em 0 .4em; font-weight: 600; }
.row { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 6px; }
figure { margin: 0; text-align: center; font-size: 11px; }
figure img { display: block; height: 128px; border: 4px solid transparent; }
figure.query img { border-color: rgb(40, 90, 200); margin-right: 14px; }
figure.positive img { border-color: rgb(0, 160, 60); }
figure.negative img { border-color: rgb(215, 30, 30); }
figure.junk img { border-color: rgb(150, 150, 150); filter: grayscale(1); opacity: .45; }
figure.junk figcaption { color: #888; }
.missed { margin-left: 14px; padding-left: 10px; border-left: 2px dashed #bbb; }
.flag { display: block; font-weight: 600; }
.flag.occluded { color: #8a4b00; }
.flag.holistic { color: #225; }
"""


def _value_label(report: ScoreReport) -> tuple[str, float]:
    """How a crop's score is shown: the submission's own similarity (s=) or distance (d=)."""
    sub = report.submission
    similarity = (
        sub.similarity if sub.kind == "distances" else (sub.metric == "cosine" and report.rerank is None)
    )
    return ("s", -1.0) if similarity else ("d", 1.0)


def _figure(kind: str, thumb: str, caption: str, flag: bool | None, attrs: dict[str, object]) -> str:
    flag_text = "" if flag is None else ("occluded" if flag else "holistic")
    data = " ".join(f'data-{k}="{html.escape(str(v))}"' for k, v in attrs.items())
    return (
        f'<figure class="{kind}" {data}><img src="crops/{html.escape(thumb)}" alt="{kind}">'
        f'<figcaption>{html.escape(caption)}<span class="flag {flag_text}">{flag_text}</span></figcaption></figure>'
    )


def _occluded(flags: np.ndarray | None, i: int) -> bool | None:
    return None if flags is None else bool(flags[i])


def write_rank_pictures(
    report: ScoreReport,
    data_dir: str | Path,
    dest: str | Path,
    *,
    top: int = DEFAULT_TOP,
    queries: QuerySelection | str = QuerySelection(),
    title: str | None = None,
) -> RankPicturesSummary:
    """Write DEST/index.html, DEST/queries/*.png (one strip per query) and DEST/crops/*.png.

    DEST must be new, empty, or an earlier rank-pictures folder (which is replaced whole).
    """
    if top < 1:
        raise BenchmarkError(f"--top must be at least 1, got {top}")
    selection = parse_queries(queries) if isinstance(queries, str) else queries
    dest, data_dir = Path(dest), Path(data_dir)
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / _MARKER).is_file())):
        raise BenchmarkError(
            f"{dest} exists and is not an empty folder or earlier rank pictures; choose a new folder"
        )
    log.warning(HOST_ONLY)
    gt = report.ground_truth
    q_paths, g_paths = _paths(data_dir, report)
    chosen = select_queries(report, selection)
    with atomic_folder(dest) as staging:
        (staging / "crops").mkdir()
        (staging / "queries").mkdir()
        thumbs = _Thumbnails(data_dir, staging)
        value_name, value_sign = _value_label(report)
        sections = []
        for n, q in enumerate(chosen, start=1):
            row = query_row(report, q, top)
            q_id = str(gt.query_ids[q])
            q_name, q_thumb = thumbs.get("query", q_id, q_paths[q])
            figures = [_figure("query", q_name, f"query {q_id}", _occluded(gt.q_occluded, q),
                               {"query-index": q, "image-id": q_id})]  # fmt: skip
            strip_items, missed_figures = [], []
            for group, entries in (("top", row.entries), ("missed", row.missed)):
                for e in entries:
                    g_id = str(gt.gallery_ids[e.gallery_index])
                    name, thumb = thumbs.get("gallery", g_id, g_paths[e.gallery_index])
                    flag = _occluded(gt.g_occluded, e.gallery_index)
                    rank = "junk (same camera)" if e.rank is None else f"#{e.rank}"
                    caption = rank + (
                        "" if e.distance is None else f" {value_name}={value_sign * e.distance:.4g}"
                    )
                    fig = _figure(e.kind, name, caption, flag, {
                        "gallery-index": e.gallery_index, "image-id": g_id, "rank": e.rank or "", "group": group,
                    })  # fmt: skip
                    (figures if group == "top" else missed_figures).append(fig)
                    label = ("junk" if e.rank is None else f"#{e.rank}") + (
                        "" if flag is None else ("\nocc" if flag else "\nhol")
                    )
                    strip_items.append((thumb, e.kind, label, group == "missed" and e is entries[0]))
            strip_name = f"{n:04d}_{q_id}.png"
            _strip(q_thumb, strip_items).save(staging / "queries" / strip_name, format="PNG")
            first = f"first hit #{row.first_hit_rank}" if row.first_hit_rank else f"no hit in the top {top}"
            missed_html = f'<div class="row missed">{"".join(missed_figures)}</div>' if missed_figures else ""
            sections.append(
                f'<section class="query" id="q{q}" data-query-index="{q}"><h2>{n}. query {html.escape(q_id)}: '
                f"AP {100 * row.ap:.2f}%, {first} "
                f'<a href="queries/{html.escape(strip_name)}">PNG</a></h2>'
                f'<div class="row">{"".join(figures)}{missed_html}</div></section>'
            )
        page = _page(report, sections, selection, top, title)
        atomic_write_text(staging / "index.html", page)
        (staging / _MARKER).write_text("written by opreid score --visualize\n")
    return RankPicturesSummary(
        dest=dest, page=dest / "index.html", queries=len(chosen),
        pngs=len(list((dest / "queries").iterdir())) + len(list((dest / "crops").iterdir())),
        missing_images=thumbs.missing,
    )  # fmt: skip


def _page(report: ScoreReport, sections: list[str], selection: QuerySelection, top: int,
          title: str | None) -> str:  # fmt: skip
    m = report.metrics
    what = {"worst": "worst first (lowest AP)", "best": "best first (highest AP)",
            "random": f"a random sample (seed {RANDOM_SEED})"}[selection.order]  # fmt: skip
    legend = "".join(
        f'<span><i style="background: rgb{COLOURS[k]}"></i>{text}</span>'
        for k, text in (("query", "query"), ("positive", "positive: same identity, other camera"),
                        ("negative", "negative"), ("junk", "same camera, same identity: removed by the protocol")))  # fmt: skip
    heading = html.escape(title or f"Ranked lists: {report.submission.path.name}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title><style>{_CSS}</style></head>
<body>
<h1>{heading}</h1>
<p class="host-only" id="host-only">{html.escape(HOST_ONLY)}</p>
<p>{html.escape(report.submission.describe())}; mAP {100 * m.mAP:.2f}%, Rank-1 {100 * m.cmc_curve(1)[0]:.2f}%.
{len(sections)} of {m.num_valid_queries} queries, {what}; the top {top} of each (same-camera entries of the
query's identity are greyed and not counted), then up to {MISSED_SHOWN} positives ranked lower.</p>
<p class="legend">{legend}</p>
{"".join(sections)}
</body></html>
"""
