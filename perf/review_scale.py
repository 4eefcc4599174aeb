"""The review site at scale: its size and how fast each page opens in headless Chromium.

    .venv/bin/python perf/review_scale.py                 # 20,000 synth crops, every page
    .venv/bin/python perf/review_scale.py --images 2000   # a quicker look

Synthesises the crops, curates them (keypoints from the synth file; `--face-model none` by default,
because face detection does not change the site and would dominate the time), writes the site with
`opreid review`'s library call, then opens every page (`index.html#page=N`) in a fresh headless
Chromium tab and times it until the page's cards are in the DOM and every thumbnail in view has
loaded. Goals: under 5 MB of HTML and script for 20,000 crops, and every page open in under a second.
The baseline is the page before this site: all crops embedded in one HTML file, extrapolated from
its bytes per crop.

Chromium is Debian's /usr/bin/chromium (or $OPREID_TEST_CHROMIUM), driven by Playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from opreid_builder.curate import CurateConfig, curate
from opreid_builder.review import write_review
from opreid_builder.synth import SynthConfig, generate

#: Bytes per crop of the previous single-file page (every crop's row, 51 keypoints included, embedded in
#: index.html): 100,164 bytes for 221 synth crops with review.py of commit db5c25a, about 10 KB of it the page.
OLD_BYTES_PER_CROP = 408
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--page-size", type=int, default=200)
    ap.add_argument("--face-model", default="none", help="'none' (default here), or a face model file")
    ap.add_argument("--pages", type=int, default=None, help="time only this many pages (default: all)")
    args = ap.parse_args()
    chromium = os.environ.get("OPREID_TEST_CHROMIUM", "/usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "out"
        t = time.perf_counter()
        per_id = 10
        generate(raw, SynthConfig(identities=-(-args.images // per_id), cameras=6,
                                  images_per_identity=(per_id, per_id), seed=9, workers=2))  # fmt: skip
        synth_s = time.perf_counter() - t
        t = time.perf_counter()
        config = CurateConfig(keypoints=str(raw / "keypoints.parquet"), face_models=(args.face_model,))
        curate(raw, out, config, progress=False)
        curate_s = time.perf_counter() - t
        t = time.perf_counter()
        site = write_review(out, args.page_size, workers=2)
        review_s = time.perf_counter() - t
        html_bytes = sum(p.stat().st_size for p in site.html.parent.glob("*") if p.suffix in (".html", ".js"))
        thumbs = list((site.html.parent / "thumbs").iterdir())
        thumb_bytes = sum(p.stat().st_size for p in thumbs)
        pages = range(1, (args.pages or site.pages) + 1)
        times = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                for n in pages:
                    page = context.new_page()
                    t = time.perf_counter()
                    page.goto(f"{site.html.as_uri()}#page={n}")
                    page.wait_for_function(
                        f"document.body.dataset.page === '{n}' && document.querySelectorAll('.card').length > 0 && "
                        "Array.from(document.images).filter(i => i.getBoundingClientRect().top < innerHeight)"
                        ".every(i => i.complete)"
                    )
                    times.append(time.perf_counter() - t)
                    page.close()
            finally:
                browser.close()
    report = {
        "crops": site.items, "pages": site.pages, "page_size": args.page_size,
        "html_and_script_bytes": html_bytes, "thumbnail_files": len(thumbs),
        "thumbnail_bytes": thumb_bytes, "old_single_page_bytes": OLD_BYTES_PER_CROP * site.items,
        "ratio_old_over_new": round(OLD_BYTES_PER_CROP * site.items / html_bytes, 1),
        "page_open_s": {"max": round(max(times), 3), "median": round(statistics.median(times), 3),
                        "timed": len(times)},
        "synth_s": round(synth_s, 1), "curate_s": round(curate_s, 1), "review_s": round(review_s, 1),
    }  # fmt: skip
    print(
        f"review site for {site.items} crops: {html_bytes / 1e6:.2f} MB of HTML and script (goal < 5 MB; the "
        f"single-file page would be about {report['old_single_page_bytes'] / 1e6:.1f} MB, "
        f"{report['ratio_old_over_new']}x), {len(thumbs)} thumbnail files; {len(times)} pages opened in "
        f"headless Chromium: median {report['page_open_s']['median']} s, slowest {report['page_open_s']['max']} s "
        "(goal < 1 s each)"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
