"""`opreid score --visualize`: rank-list pictures whose borders follow the ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import support.leaderboard as lf
from PIL import Image

from benchmarks.ground_truth import load_ground_truth
from benchmarks.rank_pictures import COLOURS, QuerySelection, parse_queries, write_rank_pictures
from benchmarks.scoring import score_submission
from manifests import GALLERY, GROUND_TRUTH, QUERY, write_manifest


def _features(release, noise=1.0, seed=1):
    gt = load_ground_truth(release)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(int(max(gt.q_pids.max(), gt.g_pids.max())) + 1, 8))
    q = centres[gt.q_pids] + noise * rng.normal(size=(gt.num_query, 8))
    g = centres[gt.g_pids] + noise * rng.normal(size=(gt.num_gallery, 8))
    return gt, q.astype(np.float32), g.astype(np.float32)


def _expected_kind(gt, q, g):
    if gt.g_pids[g] != gt.q_pids[q]:
        return "negative"
    return "junk" if gt.g_camids[g] == gt.q_camids[q] else "positive"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("worst", QuerySelection("worst", 50)),
        ("12", QuerySelection("worst", 12)),
        ("best:3", QuerySelection("best", 3)),
        ("Random", QuerySelection("random", 50)),
    ],
)
def test_parse_queries(text, expected):
    assert parse_queries(text) == expected


@pytest.mark.parametrize("text", ["0", "worst:0", "middle", "best:x", "-3"])
def test_parse_queries_refuses(text):
    with pytest.raises(ValueError):
        parse_queries(text)


def test_junk_is_greyed_and_not_counted(tmp_path):
    """Same pid, same camera: shown where it falls, not numbered, not counted in the K; missing crops
    become grey tiles with a warning instead of an error."""
    root = tmp_path / "OUT"
    write_manifest(
        {"image_id": ["q0"], "path": ["images/query/q0.jpg"], "camid": [1]}, root / "query.parquet", QUERY
    )
    g_ids = [f"g{i}" for i in range(6)]
    cams, pids = [1, 2, 1, 3, 2, 1], [7, 8, 7, 7, 9, 9]  # g0, g2 junk; g3 positive
    write_manifest({"image_id": g_ids, "path": [f"images/gallery/{i}.jpg" for i in g_ids], "camid": cams},
                   root / "gallery.parquet", GALLERY)  # fmt: skip
    write_manifest({"image_id": ["q0", *g_ids], "split": ["query"] + ["gallery"] * 6, "pid": [7, *pids],
                    "camid": [1, *cams], "occluded": [True, False, True, False, True, False, True]},
                   root / "private" / "ground_truth.parquet", GROUND_TRUTH)  # fmt: skip
    (root / "images" / "gallery").mkdir(parents=True)
    Image.new("RGB", (32, 64), (10, 200, 10)).save(root / "images" / "gallery" / "g3.jpg")
    np.save(tmp_path / "d.npy", np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], np.float32))
    report = score_submission(tmp_path / "d.npy", root)
    summary = write_rank_pictures(report, root, tmp_path / "pics", top=2, queries="worst")
    page = (tmp_path / "pics" / "index.html").read_text()
    assert summary.queries == 1 and "Host only" in page
    kinds = [
        (part.split('"')[0], part.split('data-rank="')[1].split('"')[0])
        for part in page.split('<figure class="')[2:]
    ]
    assert kinds == [("junk", ""), ("negative", "1"), ("junk", ""), ("positive", "2")]
    assert len(summary.missing_images) == 4  # the query and three gallery crops have no file
    strip = Image.open(next((tmp_path / "pics" / "queries").iterdir())).convert("RGB")
    assert strip.getpixel((7, 7)) == COLOURS["query"]


@pytest.mark.slow
def test_page_borders_match_the_ground_truth_in_chromium(chromium_path, built_release, tmp_path, run_opreid):
    gt, q, g = _features(built_release)
    np.savez(tmp_path / "f.npz", query=q, gallery=g)
    dest = tmp_path / "pictures"
    result = run_opreid("score", tmp_path / "f.npz", "--data", built_release, "--visualize", dest, "--top", 5,
                        "--queries", "worst:6", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # the JSON alone on stdout; the note about the pictures on stderr
    assert "rank-list pictures of 6 queries" in result.stderr and "Host only" in result.stderr
    assert len(list((dest / "queries").glob("*.png"))) == 6
    per_query_ap = score_submission(tmp_path / "f.npz", built_release).metrics.ap
    assert report["mAP"] < 1.0

    with lf.chromium_page(chromium_path) as page:
        page.goto((dest / "index.html").as_uri())
        assert "Host only" in page.locator("#host-only").inner_text()
        sections = page.locator("section.query")
        assert sections.count() == 6
        shown = [int(sections.nth(i).get_attribute("data-query-index")) for i in range(6)]
        aps = [per_query_ap[i] for i in shown]
        assert aps == sorted(aps) and max(aps) < 1.0  # worst first
        colours = {k: f"rgb({r}, {g_}, {b})" for k, (r, g_, b) in COLOURS.items()}
        checked = {"positive": 0, "negative": 0}
        for i, qi in enumerate(shown):
            figures = sections.nth(i).locator("figure")
            query_fig = figures.nth(0)
            assert query_fig.get_attribute("class") == "query"
            assert (
                query_fig.locator("img").evaluate("e => getComputedStyle(e).borderTopColor")
                == colours["query"]
            )
            assert query_fig.locator(".flag").inner_text() == (
                "occluded" if gt.q_occluded[qi] else "holistic"
            )
            assert sections.nth(i).locator("figure[data-group=top]").count() == 5
            shown_gallery = sections.nth(i).locator(
                "figure[data-gallery-index]"
            )  # top 5, then missed positives
            for j in range(shown_gallery.count()):
                fig = shown_gallery.nth(j)
                gi = int(fig.get_attribute("data-gallery-index"))
                kind = _expected_kind(gt, qi, gi)
                assert fig.get_attribute("class") == kind
                assert fig.get_attribute("data-image-id") == gt.gallery_ids[gi]
                colour = fig.locator("img").evaluate("e => getComputedStyle(e).borderTopColor")
                assert colour == colours[kind], (qi, gi, kind, colour)
                assert fig.locator(".flag").inner_text() == ("occluded" if gt.g_occluded[gi] else "holistic")
                assert fig.locator("img").evaluate("e => e.complete && e.naturalHeight") == 128
                checked[kind] += 1
        assert checked["positive"] and checked["negative"]  # both kinds were seen and checked
