"""`opreid review`: the static review site (items, thumbnails, filters, --sample/--only), its CSV, and the
whole loop in headless Chromium: toggle, download corrections.csv, build with it."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import support.leaderboard as lf
from click.testing import CliRunner
from PIL import Image
from support.curation import SMALL_SPLIT, make_synth, person_keypoints, write_keypoints

from manifests import BODY_PARTS, IMAGES, csv_cell, read_manifest
from opreid.cli import cli
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.corrections import load_corrections
from opreid_builder.curation.pipeline import curate
from opreid_builder.curation.review import FIELDS, write_review


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.selects: dict[str, list[str]] = {}
        self.scripts: list[str] = []
        self._select = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "select":
            self._select = a.get("id")
            self.selects[self._select] = []
        elif tag == "option" and self._select:
            self.selects[self._select].append(a.get("value"))
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def site_data(html: Path) -> dict:
    """The data items.js hands to the page (`window.OPREID_REVIEW = JSON.parse("...");`)."""
    text = (html.parent / "items.js").read_text()
    head, tail = "window.OPREID_REVIEW = JSON.parse(", ");\n"
    assert text.startswith(head) and text.endswith(tail)
    return json.loads(json.loads(text[len(head) : -len(tail)]))


def ids(data: dict) -> list[str]:
    return [data["ids"][16 * i : 16 * i + 16] for i in range(data["n"])]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth") / "raw", identities=8, cameras=3, seed=3)


@pytest.fixture(scope="module")
def curated(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    curate(raw, out, CurateConfig(keypoints=str(raw / "keypoints.parquet"), workers=0), progress=False)
    return out


def test_review_site_items_thumbnails_and_filters(curated):
    result = write_review(curated, page_size=25)
    page = Page()
    page.feed(result.html.read_text())
    assert page.scripts == ["items.js"]
    data = site_data(result.html)
    assert set(data["columns"]) == set(FIELDS) and data["page_size"] == 25
    assert data["n"] == result.items > 25 and result.pages == -(-result.items // 25)
    assert all(len(column) == data["n"] for column in data["columns"].values())
    assert set(page.selects) >= {"f-flag", "f-reviewed", "f-part", "f-cam", "f-status", "f-disagree"}
    assert set(page.selects["f-flag"]) == {"", "occluded", "holistic", "none"}
    assert set(BODY_PARTS) <= set(page.selects["f-part"])
    assert page.selects["f-cam"] == ["", "1", "2", "3"]
    flags, parts = data["columns"]["flag"], data["columns"]["parts"]
    occluded = [i for i in range(data["n"]) if flags[i] == 1]
    assert occluded and all(parts[i] for i in occluded)  # an occluded crop misses some part
    for i, image_id in enumerate(ids(data)):
        digest = data["thumbs"][8 * i : 8 * i + 8]
        with Image.open(result.html.parent / "thumbs" / f"{image_id}-{digest}.jpg") as im:
            assert im.height == 128  # a file, cut from the masked crop, with the skeleton drawn in
    assert len(list((result.html.parent / "thumbs").iterdir())) == result.items
    html = result.html.read_text()
    assert "http://" not in html and "https://" not in html  # no server, no network
    again = write_review(curated, page_size=25)
    assert again.thumbnails == 0  # thumbnails that are up to date are kept


def test_review_sample_and_only(curated):
    everything = write_review(curated)
    flagged = write_review(curated, only="flagged")
    data = site_data(flagged.html)
    assert 0 < flagged.items < everything.items and set(data["columns"]["flag"]) == {1}
    sample = write_review(curated, sample=10, seed=1)
    picked = ids(site_data(sample.html))
    assert sample.items == 10 and picked == ids(site_data(write_review(curated, sample=10, seed=1).html))
    assert len(list((sample.html.parent / "thumbs").iterdir())) == 10  # thumbnails of the crops shown only


def test_review_csv_template_round_trips_as_corrections(raw, curated, tmp_path):
    result = write_review(curated)
    with result.csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == result.items and all(r["occluded"] == "" for r in rows)
    rows[0]["occluded"] = "false" if rows[0]["machine_flag"] == "true" else "true"
    fix = tmp_path / "fix.csv"
    with fix.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = CurateConfig(keypoints=str(raw / "keypoints.parquet"), corrections=str(fix), workers=0)
    result = curate(raw, tmp_path / "out", cfg, progress=False)
    by_id = {r["image_id"]: r for r in result.images.to_pylist()}
    fixed = by_id[rows[0]["image_id"]]
    assert fixed["occlusion_source"] == "review" and fixed["occluded"] is (rows[0]["occluded"] == "true")
    assert sum(r["occlusion_source"] == "review" for r in by_id.values()) == 1


#: File names a spreadsheet would run as formulas (or whose leading tab / CR hides one).
FORMULA_NAMES = (
    '=HYPERLINK("x","y").jpg',
    "+1+2.jpg",
    "-3.jpg",
    "@SUM(A1).jpg",
    "\t=1.jpg",
    "\r=1.jpg",
)


def test_review_csv_template_keeps_every_file_name_a_text_cell(tmp_path):
    """A crop named like a formula is written as a text cell (a leading quote), not run by a spreadsheet."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for seed, name in enumerate(FORMULA_NAMES):
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (128, 64, 3), dtype=np.uint8)).save(
            raw / name, format="JPEG"
        )
    index = {"path": list(FORMULA_NAMES), "pid": [1] * len(FORMULA_NAMES), "camid": [1] * len(FORMULA_NAMES)}
    pq.write_table(pa.table(index), raw / "index.parquet")
    keypoints = write_keypoints(tmp_path, {name: person_keypoints(64, 128) for name in FORMULA_NAMES})
    out = tmp_path / "out"
    curate(raw, out, CurateConfig(keypoints=str(keypoints), workers=0), progress=False)
    result = write_review(out)
    with result.csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["source_path"] for r in rows) == sorted(f"'{name}" for name in FORMULA_NAMES)
    rows[0]["occluded"] = "true"  # the template, filled in, is still a corrections file
    fix = tmp_path / "fix.csv"
    with fix.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert load_corrections(fix).flags == {rows[0]["image_id"]: True}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_review_site_download_writes_formulas_as_text_cells_by_the_same_rule(curated):
    """The page's corrections.csv (a reviewer's name is free text) quotes formulas as the template does:
    the prefixes come from manifests.FORMULA_PREFIXES, so the two cannot drift apart."""
    html = write_review(curated).html.read_text()
    prefixes = re.search(r"const FORMULA_PREFIXES = (.*);", html).group(1)
    function = re.search(r"  function csvCell\(v\) \{.*?\n  \}\n", html, re.S).group(0)
    script = f"const FORMULA_PREFIXES = {prefixes};\n{function}\nconsole.log(JSON.stringify(process.argv.slice(1).map(csvCell)));"
    cells = ["=cmd|' /C calc'!A0", "+1", "-1", "@SUM(1)", "\t=1", "\r=1", "Ada Lovelace", 'a,"b"']
    res = subprocess.run(["node", "-e", script, *cells], capture_output=True, text=True, check=True)
    written = json.loads(res.stdout)
    assert [next(csv.reader([w])) for w in written] == [[csv_cell(c)] for c in cells]
    assert written[0] == "'=cmd|' /C calc'!A0" and written[6] == "Ada Lovelace"


def test_review_cli(curated):
    res = CliRunner().invoke(cli, ["review", str(curated), "--page-size", "50", "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["html"].endswith("index.html") and (curated / "review" / "index.html").is_file()
    assert body["pages"] == -(-body["items"] // 50)
    res = CliRunner().invoke(cli, ["review", str(curated.parent / "nope")])
    assert res.exit_code != 0


def test_review_without_curation_is_a_clear_error(tmp_path, run_opreid, expect_error):
    expect_error(run_opreid("review", tmp_path), "opreid review", 2, "images.parquet")


@pytest.mark.slow
def test_review_in_chromium_toggle_download_and_apply(chromium_path, tmp_path, run_opreid):
    """Toggle two crops in the browser, download corrections.csv, build with it: the flags, the reviewer
    and the time of each edit land in images.parquet."""
    raw = make_synth(tmp_path / "raw", identities=60, cameras=4, seed=3)
    out = tmp_path / "rel"
    build = (
        "build-split",
        raw,
        "-o",
        out,
        "--keypoints",
        raw / "keypoints.parquet",
        *SMALL_SPLIT,
        "--no-progress",
    )
    assert run_opreid(*build).exit_code == 0
    assert run_opreid("review", out, "--page-size", "40").exit_code == 0
    before = {r["image_id"]: r for r in read_manifest(out / "private" / "images.parquet", IMAGES).to_pylist()}
    downloaded = tmp_path / "corrections.csv"
    with lf.chromium_page(chromium_path, accept_downloads=True) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "review" / "index.html").as_uri())
        assert page.locator(".card").count() == 40
        assert "page 1 /" in page.locator("#page").inner_text()
        page.fill("#reviewer", "Ada Lovelace")
        cards = page.locator(".card")
        picked = [cards.nth(i).get_attribute("data-id") for i in (0, 5)]
        for i in (0, 5):
            cards.nth(i).click()
        assert page.locator("#count").inner_text() == "2 corrections"
        page.select_option("#f-reviewed", "yes")  # the filter sees every page, not just this one
        assert sorted(page.locator(".card").evaluate_all("els => els.map(e => e.dataset.id)")) == sorted(
            picked
        )
        assert "reviewed=yes" in page.url
        page.select_option("#f-reviewed", "")
        page.locator("#next").click()
        page.wait_for_function("document.body.dataset.page === '2'")
        assert "page=2" in page.url and page.locator(".card").first.get_attribute("data-id") not in picked
        page.reload()  # edits survive a reload
        assert page.locator("#count").inner_text() == "2 corrections"
        with page.expect_download() as info:
            page.locator("#download").click()
        assert info.value.suggested_filename == "corrections.csv"
        info.value.save_as(downloaded)
        assert not errors, errors
    with downloaded.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image_id"] for r in rows] == sorted(picked)
    assert all(r["reviewer"] == "Ada Lovelace" and r["reviewed_at"] for r in rows)
    assert run_opreid(*build, "--corrections", downloaded).exit_code == 0
    after = {r["image_id"]: r for r in read_manifest(out / "private" / "images.parquet", IMAGES).to_pylist()}
    for image_id in picked:
        assert after[image_id]["occluded"] is (not before[image_id]["occluded"])
        assert (
            after[image_id]["occlusion_source"] == "review" and after[image_id]["reviewer"] == "Ada Lovelace"
        )
        assert datetime.fromisoformat(after[image_id]["reviewed_at"].replace("Z", "+00:00")).year >= 2024
    assert sum(r["occlusion_source"] == "review" for r in after.values()) == 2
    curation = json.loads((out / "dataset.json").read_text())["parameters"]["curation"]
    assert curation["corrections"]["applied"] == 2 and curation["corrections"]["reviewers"] == [
        "Ada Lovelace"
    ]


# --- doubt order --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def learned(raw, tmp_path_factory) -> Path:
    """The synth crops curated with the bundled learned flag (a stand-in pose model gives boxes), two of
    them with nobody found."""
    from support.curation import FakePose

    from opreid_builder.curation import pose as pose_mod

    out = tmp_path_factory.mktemp("learned")
    table = read_manifest(raw / "keypoints.parquet", "keypoints").to_pylist()
    kfile = out.parent / f"{out.name}-keypoints.parquet"
    from manifests import KEYPOINTS_FILE, write_manifest

    kept = table[2:]  # the first two crops: nobody found
    write_manifest({"file": [r["file"] for r in kept], "keypoints": [r["keypoints"] for r in kept]}, kfile,
                   KEYPOINTS_FILE)  # fmt: skip
    (raw / "fake-pose.parquet").write_bytes(kfile.read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pose_mod, "PoseEstimator", FakePose)
        curate(raw, out, CurateConfig(pose_model=str(raw / "fake-pose.parquet"), workers=0), progress=False)
    (raw / "fake-pose.parquet").unlink()
    return out


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expected_doubt_order(out: Path) -> tuple[list[str], float]:
    record = json.loads((out / "private" / "curation.json").read_text())
    threshold = record["occlusion"]["flag"]["threshold"]
    rows = [
        r
        for r in read_manifest(out / "private" / "images.parquet", IMAGES).to_pylist()
        if r["status"] == "ok"
    ]
    nobody = [r["image_id"] for r in rows if r["occlusion_source"] == "no-person"]
    scored = sorted(
        (r for r in rows if r["occlusion_score"] is not None),
        key=lambda r: abs(_logit(r["occlusion_score"]) - _logit(threshold)),
    )  # stable: ties stay in path order
    return nobody + [r["image_id"] for r in scored], threshold


def test_review_doubt_order_puts_nobody_found_then_nearest_the_threshold_first(learned):
    expected, threshold = _expected_doubt_order(learned)
    result = write_review(learned, order="doubt", band=0.5)
    data = site_data(result.html)
    assert ids(data) == expected and result.no_person == 2 and result.order == "doubt"
    assert data["threshold"] == round(1000 * threshold) and data["order"] == "doubt"
    probs = data["columns"]["prob"]
    assert probs[:2] == [-1, -1] and all(0 <= p <= 1000 for p in probs[2:])
    rows = {
        r["image_id"]: r for r in read_manifest(learned / "private" / "images.parquet", IMAGES).to_pylist()
    }
    band = sum(
        1
        for r in rows.values()
        if r["occlusion_score"] is not None and abs(_logit(r["occlusion_score"]) - _logit(threshold)) <= 0.5
    )
    assert result.uncertain == band
    assert f"{band} crops lie in the uncertain band" in result.html.read_text()
    in_file_order = write_review(learned)
    assert (
        sorted(ids(site_data(in_file_order.html))) == sorted(expected)
        and ids(site_data(in_file_order.html)) != expected
    )
    with result.csv.open() as fh:
        p_column = [r["p_occluded"] for r in csv.DictReader(fh)]
    assert p_column[:2] == ["", ""] and all(p for p in p_column[2:])


def test_review_doubt_order_with_the_paper_rule_uses_the_run_length(curated):
    result = write_review(curated, order="doubt")
    data = site_data(result.html)
    runs = data["columns"]["run"]
    distance = [abs(r + 0.5 - 3) for r in runs]
    assert distance == sorted(distance) and result.uncertain == 0 and result.threshold is None
    assert set(data["columns"]["prob"]) == {-1}


def test_review_doubt_cli(learned):
    res = CliRunner().invoke(cli, ["review", str(learned), "--order", "doubt", "--band", "0.1", "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert (
        body["order"] == "doubt" and body["band"] == 0.1 and body["no_person"] == 2 and body["threshold"] > 0
    )
    res = CliRunner().invoke(cli, ["review", str(learned), "--order", "doubt"])
    assert "uncertain band" in res.output and "doubt order" in res.output


def test_review_in_chromium_doubt_order_shows_the_tile_nearest_the_threshold_first(
    chromium_path, learned, tmp_path
):
    """In doubt order the page opens on the crops where pose found nobody, then the tile whose P(occluded)
    is nearest the threshold, with its probability on it."""
    import shutil

    out = tmp_path / "curated"
    shutil.copytree(learned, out)
    expected, threshold = _expected_doubt_order(out)
    write_review(out, order="doubt", page_size=10)
    rows = {r["image_id"]: r for r in read_manifest(out / "private" / "images.parquet", IMAGES).to_pylist()}
    nearest = expected[2]
    with lf.chromium_page(chromium_path) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "review" / "index.html").as_uri())
        shown = page.locator(".card").evaluate_all("els => els.map(e => e.dataset.id)")
        assert shown == expected[:10]
        assert shown[2] == nearest and "no person" not in page.locator(".card").nth(2).inner_text()
        text = page.locator(".card").nth(2).locator(".prob").inner_text()
        assert text.startswith(f"P(occluded) {round(1000 * rows[nearest]['occlusion_score']) / 1000:.3f}")
        assert f"threshold {threshold:.3f}" in text
        assert (
            page.locator(".card").nth(0).locator(".prob").inner_text() == ""
        )  # nobody found: no probability
        assert "uncertain band" in page.locator("#summary").inner_text()
        assert not errors, errors
