"""The web page and JSON API (FastAPI TestClient), upload limit, request timeout, and privacy."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import numpy as np
import pytest
import support.leaderboard as lf
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from benchmarks.cli.leaderboard import leaderboard
from benchmarks.leaderboard import submissions as submissions_module
from benchmarks.leaderboard.board import BoardSettings, create_board, private_mask
from benchmarks.leaderboard.store import Board, Store, Submission
from benchmarks.leaderboard.submissions import submit
from benchmarks.leaderboard.teams import add_team
from benchmarks.leaderboard.web import WebSettings, create_app


@pytest.fixture
def site(dataset, tmp_path):
    out, data = dataset
    store = Store(tmp_path / "leaderboard.db")
    host = create_board(store, out, BoardSettings(name="TestBoard", daily_quota=3, total_quota=10))
    teams = {n: add_team(store, host, n) for n in ("alpha", "beta")}

    def npy(name: str, quality: float, seed: int, good_rows=None) -> bytes:
        path = lf.write_submission(tmp_path / name, lf.distance_matrix(data, quality, seed, good_rows))
        return path.read_bytes()

    def client(**settings) -> TestClient:
        return TestClient(create_app(store, WebSettings(**settings)))

    yield {
        "store": store,
        "host": host,
        "teams": teams,
        "npy": npy,
        "client": client,
        "out": out,
        "data": data,
        "db": str(tmp_path / "leaderboard.db"),
    }
    store.dispose()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def count(store: Store) -> int:
    with store.session() as s:
        return s.scalar(select(func.count(Submission.id)))


@pytest.mark.slow
def test_api_submit_standings_history_and_errors(site):
    c, teams = site["client"](), site["teams"]
    r = c.post("/api/submit", headers=auth(teams["alpha"]), data={"method": "A1", "url": "https://x.org/a"},
               files={"file": ("a.npy", site["npy"]("a.npy", 0.5, 1))})  # fmt: skip
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["quota"]["daily_left"] == 2 and body["quota"]["total_left"] == 9 and "mAP" in body["metrics"]
    r = c.post("/api/submit", data={"method": "B1", "token": teams["beta"]},
               files={"file": ("b.npy", site["npy"]("b.npy", 0.9, 2))})  # fmt: skip
    assert r.status_code == 201
    st = c.get("/api/standings").json()
    assert [row["team"] for row in st["rows"]] == ["beta", "alpha"] and st["view"] == "public"
    assert "private_metrics" not in json.dumps(st)
    # a team's history: that team's token or the host's, nobody else's
    assert c.get("/api/teams/alpha/submissions").status_code == 401
    assert c.get("/api/teams/alpha/submissions", headers=auth(teams["beta"])).status_code == 401
    for token in (teams["alpha"], site["host"]):
        hist = c.get("/api/teams/alpha/submissions", headers=auth(token)).json()
        assert [s["method"] for s in hist["submissions"]] == ["A1"]
        assert hist["submissions"][0]["url"] == "https://x.org/a" and hist["submissions"][0]["counts"]
    assert c.get("/api/teams/nobody/submissions", headers=auth(site["host"])).status_code == 404
    assert c.get("/api/info").json()["name"] == "TestBoard"
    assert c.get("/api/quota", headers=auth(teams["alpha"])).json()["daily_used"] == 1
    # errors: invalid file (no quota used), no token, wrong token, bad url, private view without host
    r = c.post("/api/submit", headers=auth(teams["alpha"]), data={"method": "bad"},
               files={"file": ("bad.npy", lf.write_submission(site["out"] / "bad.npy", np.zeros((2, 2))).read_bytes())})  # fmt: skip
    assert r.status_code == 422 and r.json()["problems"] and r.json()["quota"]["daily_used"] == 1
    r = c.post("/api/submit", data={"method": "x"}, files={"file": ("a.npy", b"x")})
    assert r.status_code == 401
    r = c.post("/api/submit", headers=auth("olb_nope"), data={"method": "x"}, files={"file": ("a.npy", b"x")})
    assert r.status_code == 401 and "olb_nope" not in r.text
    r = c.post("/api/submit", headers=auth(teams["alpha"]), data={"method": "x", "url": "javascript:alert(1)"},
               files={"file": ("a.npy", b"x")})  # fmt: skip
    assert r.status_code == 400
    assert c.get("/api/standings?view=private").status_code == 401
    assert c.get("/api/standings?view=private", headers=auth(teams["alpha"])).status_code == 401
    priv = c.get("/api/standings?view=private", headers=auth(site["host"])).json()
    assert priv["view"] == "private" and "private_metrics" in priv["rows"][0]
    assert count(site["store"]) == 2
    assert c.get("/api/quota", headers=auth(teams["alpha"])).json()["daily_used"] == 1


def test_quota_429(site):
    c, tok = site["client"](), site["teams"]["alpha"]
    payload = site["npy"]("a.npy", 0.5, 1)
    for i in range(3):
        assert c.post("/api/submit", headers=auth(tok), data={"method": f"m{i}"},
                      files={"file": ("a.npy", payload)}).status_code == 201  # fmt: skip
    r = c.post("/api/submit", headers=auth(tok), data={"method": "m4"}, files={"file": ("a.npy", payload)})
    assert r.status_code == 429 and r.json()["quota"]["daily_left"] == 0


@pytest.mark.slow
def test_pages_form_upload_sorting_and_host_view(site):
    c, teams = site["client"](), site["teams"]
    assert "No submissions yet" in c.get("/").text
    form = c.get("/submit").text
    assert 'name="token"' in form and 'type="file"' in form
    r = c.post("/submit", data={"token": teams["alpha"], "method": "<b>Alpha</b>", "url": "https://x.org/p"},
               files={"file": ("a.npy", site["npy"]("a.npy", 0.4, 1))})  # fmt: skip
    assert r.status_code == 200 and "recorded for team" in r.text and "quota left: 2/3 today" in r.text
    assert "&lt;b&gt;Alpha&lt;/b&gt;" in r.text and "<b>Alpha</b>" not in r.text  # escaped
    r = c.post("/submit", data={"token": teams["beta"], "method": "Beta"},
               files={"file": ("b.npy", site["npy"]("b.npy", 0.9, 2))})  # fmt: skip
    assert r.status_code == 200
    r = c.post(
        "/submit", data={"token": teams["beta"], "method": "Broken"}, files={"file": ("b.npy", b"not npy")}
    )
    assert r.status_code == 422 and "Not recorded" in r.text and 'id="submit-form"' in r.text
    assert "quota left: 2/3 today" in r.text
    page = c.get("/").text
    assert page.index(">beta<") < page.index(">alpha<")
    page = c.get("/?sort=mAP&order=asc").text
    assert page.index(">alpha<") < page.index(">beta<")
    page = c.get("/?sort=team&order=desc").text
    assert page.index(">beta<") < page.index(">alpha<")
    assert c.get("/?sort=DROP TABLE").status_code == 200  # unknown sort key falls back to rank
    assert c.get("/teams/alpha").status_code == 401  # not signed in: a team's history is not public
    assert c.post("/team", data={"token": teams["alpha"]}).status_code == 200  # signs in (a cookie)
    team = c.get("/teams/alpha").text
    assert "&lt;b&gt;Alpha&lt;/b&gt;" in team and 'href="https://x.org/p"' in team
    assert teams["alpha"] not in team
    assert c.get("/teams/beta").status_code == 401  # another team's history
    c.post("/signout")
    assert "Host token" in c.get("/host").text
    r = c.post("/host", data={"token": teams["alpha"]})
    assert r.status_code == 401 and "private-standings" not in r.text
    r = c.post("/host", data={"token": site["host"]})
    assert r.status_code == 200 and 'id="private-standings"' in r.text


def test_upload_size_limit_413(site):
    c = site["client"](max_upload_bytes=4096)
    big = site["npy"]("big.npy", 0.5, 1)
    assert len(big) > 4096
    r = c.post(
        "/api/submit",
        headers=auth(site["teams"]["alpha"]),
        data={"method": "m"},
        files={"file": ("a.npy", big)},
    )
    assert r.status_code == 413
    r = c.post(
        "/submit", data={"token": site["teams"]["alpha"], "method": "m"}, files={"file": ("a.npy", big)}
    )
    assert r.status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(10):
            yield b"x" * 1024

    r = c.post("/api/submit", headers={**auth(site["teams"]["alpha"]), "Content-Type": "multipart/form-data; boundary=zz"},
               content=chunks())  # fmt: skip
    assert r.status_code == 413
    assert count(site["store"]) == 0


@pytest.mark.slow
def test_request_timeout_calls_off_the_submission(site, monkeypatch):
    real = submissions_module.score_file

    def slow_score(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(submissions_module, "score_file", slow_score)
    c = site["client"](request_timeout_s=0.5)
    r = c.post("/api/submit", headers=auth(site["teams"]["alpha"]), data={"method": "m"},
               files={"file": ("a.npy", site["npy"]("a.npy", 0.5, 1))})  # fmt: skip
    assert r.status_code == 504 and "not recorded" in r.json()["error"]
    time.sleep(2.0)  # let the abandoned scoring thread finish: it must not record anything
    assert count(site["store"]) == 0
    assert c.get("/api/quota", headers=auth(site["teams"]["alpha"])).json()["total_used"] == 0


@pytest.mark.slow
def test_nothing_public_reveals_the_private_subset(site, tmp_path):
    """Public page, API and exports: no private query id, no private metric value, no seed."""
    store, data, teams = site["store"], site["data"], site["teams"]
    _, mask = private_mask(store)
    for i, (team, quality) in enumerate((("alpha", 1.0), ("beta", 0.8))):
        path = lf.write_submission(
            tmp_path / f"p{i}.npy", lf.distance_matrix(data, quality, 10 + i, good_rows=~mask)
        )
        submit(store, path, teams[team], method=f"M{i}")
    c = site["client"]()
    blobs = [c.get(u).content for u in ("/", "/?sort=mINP", "/teams/alpha", "/teams/beta", "/submit", "/api/info",
                                        "/api/standings", "/api/teams/alpha/submissions", "/api/teams/beta/submissions",
                                        "/openapi.json")]  # fmt: skip
    r = c.post("/submit", data={"token": teams["alpha"], "method": "M2"},
               files={"file": ("p.npy", (tmp_path / "p0.npy").read_bytes())})  # fmt: skip
    blobs.append(r.content)
    r = c.post("/api/submit", headers=auth(teams["beta"]), data={"method": "M3"},
               files={"file": ("p.npy", (tmp_path / "p1.npy").read_bytes())})  # fmt: skip
    blobs.append(r.content)
    for fmt in ("csv", "json", "md"):
        res = CliRunner().invoke(leaderboard, ["export", "--format", fmt, "--db", site["db"]])
        assert res.exit_code == 0
        blobs.append(res.stdout.encode())
    res = CliRunner().invoke(leaderboard, ["show", "--json", "--db", site["db"]])
    blobs.append(res.stdout.encode())
    public = b"\n".join(blobs)

    with store.session() as s:
        subs = s.scalars(select(Submission)).all()
        private_values = [
            v for sub in subs for k, v in sub.private_metrics.items() if k in ("mAP", "mINP", "rank1")
        ]
        all_values = [v for sub in subs for k, v in sub.all_metrics.items() if k in ("mAP", "mINP")]
        public_values = {
            round(v, 4) for sub in subs for v in sub.public_metrics.values() if isinstance(v, float)
        }
        seed = s.execute(select(Board.partition_seed)).scalar_one()
    # distinctive values only: a number like 0.0 or 0.1 would match any page by chance
    secret_numbers = [
        v
        for v in private_values + all_values
        if v is not None and round(v, 4) not in public_values and len(f"{v:.4f}".rstrip("0")) >= 5
    ]
    assert len(secret_numbers) >= 4  # the check below is not vacuous
    for v in secret_numbers:
        for text in {repr(v), f"{v:.4f}", f"{v:.6f}"}:
            assert text.encode() not in public, f"private value {text} leaked"
    q_ids = np.array(data["query_ids"])
    for image_id in q_ids[mask]:
        assert image_id.encode() not in public, "a private query id leaked"
    for image_id in q_ids[~mask]:
        assert image_id.encode() not in public, "a query id leaked (membership by elimination)"
    assert seed.encode() not in public
    for key in (b"private_metrics", b"all_metrics", b"query_partition", b"partition_seed", b"is_private"):
        assert key not in public
    assert public.count(b'"num_queries": 10') + public.count(b'"num_queries":10') >= 1


def test_timestamps_monotonic_for_ties(site):
    """Two identical files: the earlier one ranks first (ties by earliest submission)."""
    store, data, teams, tmp = site["store"], site["data"], site["teams"], site["out"]
    path = lf.write_submission(tmp / "same.npy", lf.distance_matrix(data, 0.6, 4))
    t0 = submissions_module.utcnow()
    submit(store, path, teams["beta"], method="first", clock=lambda: t0)
    submit(store, path, teams["alpha"], method="second", clock=lambda: t0 + timedelta(seconds=1))
    rows = site["client"]().get("/api/standings").json()["rows"]
    assert [r["method"] for r in rows] == ["first", "second"] and [r["rank"] for r in rows] == [1, 2]


def test_log_redaction_filter(caplog):
    """Defence in depth for `serve`: a token pasted into a URL is masked in uvicorn's access log."""
    import logging

    from benchmarks.leaderboard.tokens import new_token
    from benchmarks.leaderboard.web import install_log_redaction

    install_log_redaction()
    token = new_token()
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", f"/?t={token}", "1.1", 200
    )
    assert token not in caplog.text and "olb_***" in caplog.text


def test_malformed_npy_header_is_422_and_uses_no_quota(site, caplog):
    from support.submissions import unbalanced_header_npy

    c, tok = site["client"](), site["teams"]["alpha"]
    bad = unbalanced_header_npy(site["out"] / "unbalanced.npy", np.zeros((3, 4), np.float32)).read_bytes()
    r = c.post("/api/submit", headers=auth(tok), data={"method": "m"}, files={"file": ("u.npy", bad)})
    assert r.status_code == 422, r.text
    assert "malformed header" in r.json()["problems"][0] and r.json()["quota"]["daily_used"] == 0
    r = c.post("/submit", data={"method": "m", "token": tok}, files={"file": ("u.npy", bad)})
    assert r.status_code == 422 and "malformed header" in r.text
    assert count(site["store"]) == 0
    assert c.get("/api/quota", headers=auth(tok)).json()["daily_used"] == 0
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"


def test_log_redaction_keeps_uvicorn_access_records_formattable():
    """uvicorn's AccessFormatter unpacks the record's five args: redaction must keep them."""
    import logging

    from uvicorn.logging import AccessFormatter

    from benchmarks.leaderboard.tokens import new_token
    from benchmarks.leaderboard.web import install_log_redaction

    install_log_redaction()
    token = new_token()
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/teams/x?token={token}&a=1", "1.1", 200), None,
    )  # fmt: skip
    assert logging.getLogger("uvicorn.access").filter(record)
    line = AccessFormatter(fmt="%(client_addr)s %(request_line)s %(status_code)s", use_colors=False).format(
        record
    )
    assert line == "127.0.0.1:5000 GET /teams/x?token=olb_***&a=1 HTTP/1.1 200 OK"
    assert record.args[4] == 200
    # a token split between the format string and an argument is still masked
    split = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "olb_%s", (token[4:],), None)
    assert logging.getLogger("uvicorn.error").filter(split)
    assert token[4:] not in split.getMessage()


def test_api_phases_selection_reveal_and_cookie_forms(dataset, tmp_path):
    """The API and the pages of a challenge's end: select, close, reveal; refusals carry the dates."""
    from datetime import datetime

    from benchmarks.leaderboard.store import utcnow

    out, data = dataset
    store = Store(tmp_path / "lb.db")
    now = utcnow()
    host = create_board(
        store, out, BoardSettings(dev_start=now - timedelta(days=2), final_start=now - timedelta(days=1))
    )
    alpha = add_team(store, host, "alpha")
    c = TestClient(create_app(store))
    payload = lf.write_submission(tmp_path / "a.npy", lf.distance_matrix(data, 0.7, 1)).read_bytes()
    r = c.post("/api/submit", headers=auth(alpha), data={"method": "A"}, files={"file": ("a.npy", payload)})
    assert r.status_code == 201 and r.json()["phase"] == "final"
    sid = r.json()["submission_id"]
    info = c.get("/api/info").json()
    assert [(p["name"], p["state"]) for p in info["phases"]] == [("development", "closed"), ("final", "open")]
    assert c.post("/api/selection", headers=auth(alpha), json={"submission_ids": [sid]}).json()[
        "selected"
    ] == [sid]
    assert c.get("/api/selection", headers=auth(alpha)).json()["counts"][0]["reason"] == "selected"
    assert c.post("/api/selection", headers=auth(alpha), json={"submission_ids": [999]}).status_code == 400
    assert c.get("/api/standings?view=private&phase=final").status_code == 401
    r = c.post("/api/reveal", headers=auth(host))
    assert r.status_code == 403 and "final phase is open" in r.json()["error"]
    assert c.post("/api/phases/final/close", headers=auth(alpha)).status_code == 401
    assert c.post("/api/phases/final/close", headers=auth(host)).json()["phases"][1]["state"] == "closed"
    r = c.post(
        "/api/submit", headers=auth(alpha), data={"method": "late"}, files={"file": ("a.npy", payload)}
    )
    assert (
        r.status_code == 403
        and "submissions are closed" in r.json()["error"]
        and "final:" in r.json()["error"]
    )
    assert c.post("/api/selection", headers=auth(alpha), json={"submission_ids": []}).status_code == 403
    assert 'id="final-standings"' not in c.get("/").text  # closed, not yet revealed
    # the host's page: signs in with a cookie; a cross-site form post is refused
    assert c.post("/host", data={"token": host}).status_code == 200
    r = c.post("/host/reveal", headers={"origin": "https://evil.example"}, follow_redirects=False)
    assert r.status_code == 401
    r = c.post("/host/reveal", follow_redirects=False)
    assert r.status_code == 303
    revealed = c.get("/api/standings?view=private&phase=final").json()  # public now, no token
    assert (
        revealed["revealed"]
        and revealed["rows"][0]["submission_id"] == sid
        and revealed["rows"][0]["selected"]
    )
    assert 'id="final-standings"' in c.get("/").text
    assert datetime.fromisoformat(c.get("/api/info").json()["revealed_at"].rstrip("Z")) >= now
    store.dispose()
