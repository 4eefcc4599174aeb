"""`opreid review`: the static contact sheet (parsed, items counted, filters present) and its CSV."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from curate_fixtures import make_synth

from manifests import BODY_PARTS
from opreid_builder.cli import cli
from opreid_builder.curate import CurateConfig, curate
from opreid_builder.review import FIELDS, write_review


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.selects: dict[str, list[str]] = {}
        self.data_json = ""
        self._select = None
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "select":
            self._select = a.get("id")
            self.selects[self._select] = []
        elif tag == "option" and self._select:
            self.selects[self._select].append(a.get("value"))
        elif tag == "script" and a.get("id") == "review-data":
            self._in_data = True

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "script":
            self._in_data = False

    def handle_data(self, data):
        if self._in_data:
            self.data_json += data


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth") / "raw", identities=8, cameras=3, seed=3)


@pytest.fixture(scope="module")
def curated(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    curate(raw, out, CurateConfig(keypoints=str(raw / "keypoints.parquet"), workers=0), progress=False)
    return out


def test_review_page_items_and_filters(curated):
    result = write_review(curated, page_size=25)
    page = Page()
    page.feed(result.html.read_text())
    data = json.loads(page.data_json)
    assert data["fields"] == list(FIELDS) and data["page_size"] == 25
    assert len(data["items"]) == result.items > 25  # more than one page
    assert set(page.selects) >= {"f-flag", "f-part", "f-cam", "f-status", "f-source"}
    assert set(page.selects["f-flag"]) == {"", "occluded", "holistic", "none"}
    assert set(BODY_PARTS) <= set(page.selects["f-part"])
    assert page.selects["f-cam"] == ["", "1", "2", "3"]
    F = {n: i for i, n in enumerate(data["fields"])}
    occluded = [it for it in data["items"] if it[F["occluded"]]]
    assert occluded and all(any(it[F["missing"]]) for it in occluded)
    for it in data["items"]:
        assert it[F["image"]].startswith("../masked/") and (result.html.parent / it[F["image"]]).is_file()
        assert len(it[F["keypoints"]]) == 51 and len(it[F["missing"]]) == 17
    html = result.html.read_text()
    assert "http://" not in html and "https://" not in html  # no server, no network


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


def test_review_cli(curated):
    res = CliRunner().invoke(cli, ["review", str(curated), "--page-size", "50"])
    assert res.exit_code == 0, res.output
    assert "index.html" in res.output and (curated / "review" / "index.html").is_file()
    res = CliRunner().invoke(cli, ["review", str(curated.parent / "nope")])
    assert res.exit_code != 0


def test_review_without_curation_is_a_clear_error(tmp_path, run_opreid, expect_error):
    expect_error(run_opreid("review", tmp_path), "opreid review", 2, "images.parquet")
