"""Headless Chromium (Debian's, driven by Playwright): the page shows the seeded standings, sorts,
and an upload through the form appears in the table."""

from __future__ import annotations

import pytest
import support.leaderboard as lf

from benchmarks.leaderboard.board import BoardSettings, create_board
from benchmarks.leaderboard.standings import compute_standings
from benchmarks.leaderboard.store import Store
from benchmarks.leaderboard.submissions import set_baseline, submit
from benchmarks.leaderboard.teams import add_team
from benchmarks.leaderboard.web import WebSettings, create_app

pytestmark = pytest.mark.slow


def test_standings_page_and_upload_form(chromium_path, dataset, tmp_path):
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
        lf.chromium_page(chromium_path) as page,
    ):
        page.goto(server.url + "/")
        assert page.locator("h1").inner_text() == "BrowserBoard leaderboard"
        teams = page.locator("#standings tbody tr td:nth-child(2)").all_inner_texts()
        assert teams == expected and set(teams) == {"alpha", "beta", "reference"}
        assert page.locator("#standings tbody tr.baseline td:nth-child(2)").inner_text() == "reference"
        for order, rows in (("desc", by_map[::-1]), ("asc", by_map)):  # each click toggles
            page.locator('th a[data-sort="mAP"]').click()
            page.wait_for_url(f"**/?phase=development&sort=mAP&order={order}")
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
        assert first.locator("td:nth-child(3) a").get_attribute("href") == "https://example.org/browsernet"
        assert tokens["alpha"] not in page.content()
    store.dispose()


def test_team_selects_and_host_reveals(chromium_path, dataset, tmp_path):
    """A team signs in, uploads through the form and sees its quota drop, selects the upload for the
    private board; the host closes the final phase and reveals the private standings."""
    from datetime import timedelta

    from benchmarks.leaderboard.store import utcnow

    out, data = dataset
    store = Store(tmp_path / "lb.db")
    now = utcnow()
    settings = BoardSettings(name="FinalBoard", seed=7, daily_quota=5, dev_start=now - timedelta(days=2),
                             final_start=now - timedelta(days=1))  # fmt: skip
    host = create_board(store, out, settings)
    tokens = {t: add_team(store, host, t) for t in ("alpha", "beta")}
    for team, quality, seed in (("alpha", 0.1, 1), ("beta", 0.5, 2)):
        path = lf.write_submission(tmp_path / f"{team}.npy", lf.distance_matrix(data, quality, seed))
        submit(store, path, tokens[team], method=f"{team}-first")
    upload = lf.write_submission(tmp_path / "upload.npy", lf.distance_matrix(data, 1.0, 4))

    with (
        lf.LiveServer(
            create_app(store, WebSettings(max_upload_bytes=1 << 20, request_timeout_s=60))
        ) as server,
        lf.chromium_page(chromium_path) as page,
    ):
        page.goto(server.url + "/team")
        page.fill('#signin-form input[name="token"]', tokens["alpha"])
        page.locator('#signin-form button[type="submit"]').click()
        page.wait_for_selector("#history")
        assert "quota left: 4/5 today" in page.locator("#quota").inner_text()
        assert page.locator("#history tbody tr").count() == 1

        page.locator("nav a", has_text="Submit").click()
        page.fill('input[name="method"]', "BrowserNet")  # no token typed: the session's is used
        page.set_input_files('input[name="file"]', str(upload))
        page.locator('#submit-form button[type="submit"]').click()
        page.wait_for_selector("#result")
        assert "recorded for team alpha" in page.locator("#result").inner_text()
        assert "final phase" in page.locator("#result").inner_text()
        page.locator("#my-team").click()
        page.wait_for_selector("#history")
        assert "quota left: 3/5 today" in page.locator("#quota").inner_text()  # dropped by one
        rows = page.locator("#history tbody tr")
        assert rows.count() == 2
        new_row = page.locator("#history tbody tr", has_text="BrowserNet")
        assert "counts (best public)" in new_row.locator(".counts-cell").inner_text()
        new_id = new_row.get_attribute("data-submission")
        page.locator("#history tbody tr", has_text="alpha-first").locator('input[type="checkbox"]').check()
        new_row.locator('input[type="checkbox"]').uncheck()
        page.locator("#save-selection").click()
        page.wait_for_selector("#message")
        old_row = page.locator("#history tbody tr", has_text="alpha-first")
        assert "counts (selected)" in old_row.locator(".counts-cell").inner_text()
        assert (
            page.locator("#history tbody tr", has_text="BrowserNet").locator(".counts-cell").inner_text()
            == ""
        )
        page.locator("#history tbody tr", has_text="BrowserNet").locator('input[type="checkbox"]').check()
        page.locator("#history tbody tr", has_text="alpha-first").locator('input[type="checkbox"]').uncheck()
        page.locator("#save-selection").click()
        page.wait_for_selector("#message")
        assert f"selection saved: {new_id}" in page.locator("#message").inner_text()
        assert (
            "counts (selected)"
            in page.locator(f'#history tr[data-submission="{new_id}"] .counts-cell').inner_text()
        )
        assert tokens["alpha"] not in page.content()

        page.locator("#signout").click()
        page.wait_for_selector("#standings")
        assert page.locator("#final-standings").count() == 0  # nothing private before the reveal
        page.goto(server.url + "/host")
        page.fill('input[name="token"]', host)
        page.locator('button[type="submit"]', has_text="Show private standings").click()
        page.wait_for_selector("#private-standings")
        assert page.locator("#reveal").count() == 0  # the final phase is still open
        page.locator("#close-final").click()
        page.wait_for_selector('#phases tr[data-phase="final"] .phase-closed')
        page.locator("#reveal").click()
        page.wait_for_selector("#final-standings")
        first = page.locator("#final-standings tbody tr").first
        assert first.locator("td:nth-child(2)").inner_text() == "alpha"
        assert first.locator("td:nth-child(3)").inner_text() == "BrowserNet"
        assert "closed" in page.locator('#phases tr[data-phase="final"]').inner_text()
        assert host not in page.content()
    store.dispose()
