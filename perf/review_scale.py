"""The review site at scale: its size and how fast each page opens in headless Chromium.

    .venv/bin/python perf/review_scale.py                 # 20,000 synth crops, every page
    .venv/bin/python perf/review_scale.py --images 2000   # a quicker look

Synthesises the crops, curates them (keypoints from the synth file; `--face-model none` by default,
because face detection does not change the site and would dominate the time), writes the site with
`opreid review`'s library call, then opens every page (`index.html#page=N`) in a fresh headless
Chromium tab and times it until the page's cards are in the DOM and every thumbnail in view has
loaded; then pages through them all with the "next" button in one tab, as a reviewer does. Goals:
under 5 MB of HTML and script for 20,000 crops, and every page open in under a second.

Baselines measured in the same run: a blank page opened the same way (Chromium's own floor, which
a loaded machine raises for both alike), and for size the previous single-file page (every crop
embedded in index.html), from its measured bytes per crop. `--curated OUT` times the site of an
existing curated folder instead of synthesising one (a sample of --images of its crops).

Chromium is Debian's /usr/bin/chromium (or $OPREID_TEST_CHROMIUM), driven by Playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.pipeline import curate
from opreid_builder.curation.review import write_review
from opreid_builder.synth.generator import SynthConfig, generate

#: Bytes per crop of the previous single-file page (every crop's row, 51 keypoints included, embedded in
#: index.html): 100,164 bytes for 221 synth crops with review.py of commit db5c25a, about 10 KB of it the page.
OLD_BYTES_PER_CROP = 408
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


VISIBLE_LOADED = (
    "document.querySelectorAll('.card').length > 0 && Array.from(document.images)"
    ".filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete)"
)


def time_pages(html: Path, pages: int, chromium: str) -> dict[str, list[float]]:
    """Seconds to open each page in a fresh tab, to page through them with "next", and to open a blank page."""
    from playwright.sync_api import sync_playwright

    blank = html.parent / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title><p>blank</p>")
    out: dict[str, list[float]] = {"fresh": [], "next": [], "blank": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            for n in range(1, pages + 1):
                for kind, url in (("fresh", f"{html.as_uri()}#page={n}"), ("blank", blank.as_uri())):
                    tab = context.new_page()
                    t = time.perf_counter()
                    tab.goto(url)
                    if kind == "fresh":
                        tab.wait_for_function(f"document.body.dataset.page === '{n}' && {VISIBLE_LOADED}")
                    out[kind].append(time.perf_counter() - t)
                    tab.close()
            tab = context.new_page()
            tab.goto(html.as_uri())
            tab.wait_for_function(VISIBLE_LOADED)
            for n in range(2, pages + 1):
                t = time.perf_counter()
                tab.locator("#next").click()
                tab.wait_for_function(f"document.body.dataset.page === '{n}' && {VISIBLE_LOADED}")
                out["next"].append(time.perf_counter() - t)
        finally:
            browser.close()
    blank.unlink()
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3), "n": len(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--page-size", type=int, default=200)
    ap.add_argument("--face-model", default="none", help="'none' (default here), or a face model file")
    ap.add_argument("--pages", type=int, default=None, help="time only this many pages (default: all)")
    ap.add_argument("--curated", type=Path, default=None, help="time the site of this curated OUT instead")
    args = ap.parse_args()
    chromium = os.environ.get("OPREID_TEST_CHROMIUM", "/usr/bin/chromium")
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.curated
        if out is None:
            raw, out = Path(tmp) / "raw", Path(tmp) / "out"
            t = time.perf_counter()
            per_id = 10
            generate(raw, SynthConfig(identities=-(-args.images // per_id), cameras=6,
                                      images_per_identity=(per_id, per_id), seed=9, workers=2))  # fmt: skip
            report["synth_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            config = CurateConfig(keypoints=str(raw / "keypoints.parquet"), face_models=(args.face_model,))
            curate(raw, out, config, progress=False)
            report["curate_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        sample = args.images if args.curated is not None else None  # a larger curated pool: --images of it
        site = write_review(out, args.page_size, sample=sample, workers=2)
        report["review_s"] = round(time.perf_counter() - t, 1)
        html_bytes = sum(p.stat().st_size for p in site.html.parent.glob("*") if p.suffix in (".html", ".js"))
        thumbs = list((site.html.parent / "thumbs").iterdir())
        thumb_bytes = sum(p.stat().st_size for p in thumbs)
        times = time_pages(site.html, min(args.pages or site.pages, site.pages), chromium)
    fresh, blank = _stats(times["fresh"]), _stats(times["blank"])
    report.update(
        crops=site.items, pages=site.pages, page_size=args.page_size, html_and_script_bytes=html_bytes,
        thumbnail_files=len(thumbs), thumbnail_bytes=thumb_bytes,
        old_single_page_bytes=OLD_BYTES_PER_CROP * site.items,
        ratio_old_over_new=round(OLD_BYTES_PER_CROP * site.items / html_bytes, 1),
        open_in_fresh_tab_s=fresh, blank_page_s=blank, next_click_s=_stats(times["next"]) if times["next"] else None,
        ratio_fresh_over_blank=round(fresh["median"] / blank["median"], 2), uptime=uptime(),
    )  # fmt: skip
    print(
        f"review site for {site.items} crops: {html_bytes / 1e6:.2f} MB of HTML and script (goal < 5 MB; the "
        f"single-file page would be about {report['old_single_page_bytes'] / 1e6:.1f} MB, "
        f"{report['ratio_old_over_new']}x more), {len(thumbs)} thumbnail files ({thumb_bytes / 1e6:.0f} MB)"
    )
    print(
        f"{fresh['n']} pages, each opened in a fresh headless Chromium tab: median {fresh['median']} s, slowest "
        f"{fresh['max']} s (goal < 1 s); a blank page: median {blank['median']} s (ratio "
        f"{report['ratio_fresh_over_blank']}); paging with 'next': median "
        f"{(report['next_click_s'] or {}).get('median')} s, slowest {(report['next_click_s'] or {}).get('max')} s"
    )
    print(f"load: {report['uptime']}")
    print(json.dumps(report))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
