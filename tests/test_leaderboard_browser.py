"""Headless Chromium (Debian's, driven by Playwright): the page shows the seeded standings, sorts,
and an upload through the form appears in the table."""

from __future__ import annotations

import leaderboard_fixtures as lf
import pytest

from benchmarks.leaderboard.board import BoardSettings, create_board
from benchmarks.leaderboard.standings import compute_standings
from benchmarks.leaderboard.store import Store
from benchmarks.leaderboard.submissions import set_baseline, submit
from benchmarks.leaderboard.teams import add_team
from benchmarks.leaderboard.web import WebSettings, create_app

chromium_path, dataset = lf.chromium_path, lf.dataset
pytestmark = pytest.mark.slow


def test_standings_page_and_upload_form(chromium_path, dataset, tmp_path):
    from playwright.sync_api import sync_playwright

    out, data = dataset
    store = Store(tmp_path / "lb.db")
    host = create_board(store, out, BoardSettings(name="BrowserBoard", seed=7))  # a fixed public subset
    tokens = {t: add_team(store, host, t) for t in ("alpha", "beta", "reference")}
    for team, quality, seed in (("alpha", 0.2, 1), ("beta", 0.6, 2), ("reference", 0.4, 3)):
        path = lf.write_submission(tmp_path / f"{team}.npy", lf.distance_matrix(data, quality, seed))
        res = submit(store, path, tokens[team], method=f"{team}-net")
    set_baseline(store, host, res.submission_id)
    expected = [r.team for r in compute_standings(store).rows]
    by_map = sorted(compute_standings(store).rows, key=lambda r: (r.metrics["mAP"], r.submitted_at))
    assert len(set(r.metrics["mAP"] for r in by_map)) == 3
    # a perfect ranking: strictly ahead of every seeded row on any query subset (no tie to break by time)
    upload = lf.write_submission(tmp_path / "upload.npy", lf.distance_matrix(data, 1.0, 4))
    assert max(r.metrics["mAP"] for r in by_map) < 1.0

    with (
        lf.LiveServer(
            create_app(store, WebSettings(max_upload_bytes=1 << 20, request_timeout_s=60))
        ) as server,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=lf.CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(server.url + "/")
            assert page.locator("h1").inner_text() == "BrowserBoard leaderboard"
            teams = page.locator("#standings tbody tr td:nth-child(2)").all_inner_texts()
            assert teams == expected and set(teams) == {"alpha", "beta", "reference"}
            assert page.locator("#standings tbody tr.baseline td:nth-child(2)").inner_text() == "reference"
            for order, rows in (("desc", by_map[::-1]), ("asc", by_map)):  # each click toggles
                page.locator('th a[data-sort="mAP"]').click()
                page.wait_for_url(f"**/?sort=mAP&order={order}")
                assert page.locator("#standings tbody tr td:nth-child(2)").all_inner_texts() == [
                    r.team for r in rows
                ]

            page.locator("nav a", has_text="Submit").click()
            page.fill('input[name="token"]', tokens["alpha"])
            page.fill('input[name="method"]', "BrowserNet")
            page.fill('input[name="url"]', "https://example.org/browsernet")
            page.set_input_files('input[name="file"]', str(upload))
            page.locator('#submit-form button[type="submit"]').click()
            page.wait_for_selector("#result")
            assert "recorded for team alpha" in page.locator("#result").inner_text()
            assert "quota left" in page.locator("#quota").inner_text()
            page.locator("#back").click()
            page.wait_for_selector("#standings")
            first = page.locator("#standings tbody tr").first
            assert first.locator("td:nth-child(2)").inner_text() == "alpha"
            assert first.locator("td:nth-child(3)").inner_text() == "BrowserNet"
            assert (
                first.locator("td:nth-child(3) a").get_attribute("href") == "https://example.org/browsernet"
            )
            assert tokens["alpha"] not in page.content()
        finally:
            browser.close()
    store.dispose()
