"""The served app under hostile clients, on a real uvicorn (the `leaderboard serve` configuration):
sign-in forms from other sites, bodies that are too large, malformed or of the wrong shape, slow
headers, concurrent selections, host-side faults, and a submission racing the reveal."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
import support.leaderboard as lf

from benchmarks.leaderboard import store as store_module
from benchmarks.leaderboard import submissions as submissions_module
from benchmarks.leaderboard.board import BoardSettings, create_board
from benchmarks.leaderboard.errors import SubmissionAbandonedError
from benchmarks.leaderboard.phases import close_phase, reveal
from benchmarks.leaderboard.standings import compute_standings
from benchmarks.leaderboard.store import Store, utcnow
from benchmarks.leaderboard.submissions import submit
from benchmarks.leaderboard.teams import add_team
from benchmarks.leaderboard.web import SESSION_COOKIE, WebSettings, create_app

HEADER_DEADLINE_S = 0.5
FOREIGN = [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},  # a sandboxed frame on another site
    {"Referer": "https://evil.example/page"},
    {"Sec-Fetch-Site": "cross-site"},
]


@pytest.fixture
def live(dataset, tmp_path):
    """A board whose final phase is open (development closed), two teams with a submission each, served."""
    out, data = dataset
    db = tmp_path / "lb.db"
    store = Store(db)
    now = utcnow()
    settings = BoardSettings(daily_quota=None, total_quota=None, dev_start=now - timedelta(days=2),
                             final_start=now - timedelta(days=1))  # fmt: skip
    host = create_board(store, out, settings)
    teams = {t: add_team(store, host, t) for t in ("alpha", "beta")}
    ids = {}
    for i, team in enumerate(teams):
        path = lf.write_submission(tmp_path / f"{team}.npy", lf.distance_matrix(data, 0.5, i))
        ids[team] = submit(store, path, teams[team], method=f"{team}-1").submission_id
    web = WebSettings(request_timeout_s=30, header_timeout_s=HEADER_DEADLINE_S)
    with lf.LiveServer(create_app(store, web), web) as server:
        yield {"server": server, "url": server.url, "store": store, "host": host, "teams": teams, "ids": ids,
               "data": data, "tmp": tmp_path, "db": db, "port": server.port}  # fmt: skip
    store.dispose()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def selected(store: Store, token: str) -> list[int]:
    from benchmarks.leaderboard.selection import selection_status

    return selection_status(store, token)["selected"]


def raw_request(port: int, head: bytes, body: bytes = b"", wait_s: float = 10.0) -> tuple[bytes, float]:
    """Send `head` (and `body`) on a raw socket, then read until the server closes or `wait_s` passes;
    returns what came back and the seconds it took."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(head + body)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return received, time.monotonic() - start


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


# ---- sign-in forms from another site (login CSRF) ---------------------------------------------------
@pytest.mark.slow
def test_sign_in_and_out_forms_from_another_site_are_refused(live):
    url, host, alpha = live["url"], live["host"], live["teams"]["alpha"]
    for path, token in (("/team", alpha), ("/host", host)):
        for headers in FOREIGN:
            r = httpx.post(url + path, data={"token": token}, headers=headers, follow_redirects=False)
            assert r.status_code == 401, (path, headers, r.status_code)
            assert SESSION_COOKIE not in r.headers.get("set-cookie", ""), (path, headers)
        own = {"Origin": url, "Sec-Fetch-Site": "same-origin"}
        r = httpx.post(url + path, data={"token": token}, headers=own, follow_redirects=False)
        assert r.status_code in (200, 303) and SESSION_COOKIE in r.headers["set-cookie"]
        r = httpx.post(url + path, data={"token": token}, follow_redirects=False)  # curl: no browser headers
        assert SESSION_COOKIE in r.headers["set-cookie"]
    with httpx.Client(base_url=url) as client:
        client.post("/team", data={"token": alpha})
        assert client.post("/signout", headers=FOREIGN[0], follow_redirects=False).status_code == 401
        assert "Team alpha" in client.get("/team").text  # still signed in
        assert client.post("/signout", follow_redirects=False).status_code == 303


# ---- bodies: authenticated before read, capped, well-formed ---------------------------------------------
def test_a_token_checked_body_is_refused_before_it_is_read(live):
    port, alpha = live["port"], live["teams"]["alpha"]
    chunk = b"[" + b"1," * 32000
    body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"  # the first chunk of an endless JSON list
    head = (f"POST /api/selection HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()  # fmt: skip
    response, took = raw_request(port, head, body)
    assert response.startswith(b"HTTP/1.1 401"), response[:200]
    assert took < 5
    # an upload with a wrong Bearer token: refused before the upload is read
    head = (b"POST /api/submit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer olb_wrong\r\n"
            b"Content-Type: multipart/form-data; boundary=zz\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    response, took = raw_request(port, head, body)
    assert response.startswith(b"HTTP/1.1 401") and took < 5, response[:200]
    # a declared 80 MB body: refused from its length, token or not
    for auth in ("", f"Authorization: Bearer {alpha}\r\n"):
        head = (f"POST /api/selection HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
                "Content-Length: 80000000\r\n\r\n").encode()  # fmt: skip
        response, took = raw_request(port, head)
        assert response.startswith(b"HTTP/1.1 413") and took < 5, response[:200]
    # with a token, a body streamed past the JSON limit is cut off while streaming
    head = (f"POST /api/selection HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alpha}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()  # fmt: skip
    response, took = raw_request(port, head, body * 3)
    assert response.startswith(b"HTTP/1.1 413") and b"limit of 65536 bytes" in response, response[:300]
    assert selected(live["store"], alpha) == []


@pytest.mark.slow
def test_selection_bodies_of_the_wrong_shape_are_400_and_change_nothing(live):
    url, alpha, sid = live["url"], live["teams"]["alpha"], live["ids"]["alpha"]
    r = httpx.post(url + "/api/selection", headers=bearer(alpha), json={"submission_ids": [sid]})
    assert r.status_code == 200 and selected(live["store"], alpha) == [sid]
    bad = [
        ("application/json", b"[1, 2]"),  # a list, not an object: cleared the selection before
        ("application/json", b'"submission_ids"'),
        ("application/json", b"{}"),  # no submission_ids: not a request to clear
        ("application/json", b'{"submission_ids": 5}'),
        ("application/json", b'{"submission_ids": [true]}'),
        ("application/json", b'{"submission_ids": [1.5]}'),
        ("application/json", b'{"submission_ids": [1,'),  # malformed: was a 500 and a traceback
        ("application/json", b"\xff\xfe{"),
        ("application/json", b"[" * 50000 + b"]" * 50000),  # too deep for the parser
        ("application/json", b"9" * 5000),
        ("text/plain", b'{"submission_ids": []}'),
        ("", b""),
    ]
    for content_type, body in bad:
        r = httpx.post(url + "/api/selection", headers={**bearer(alpha), "Content-Type": content_type},
                       content=body)  # fmt: skip
        assert r.status_code in (400, 413), (content_type, body[:40], r.status_code, r.text)
        assert "error" in r.json() and "Traceback" not in r.text
        assert selected(live["store"], alpha) == [sid], (content_type, body[:40])
    r = httpx.post(url + "/api/selection", headers=bearer(alpha), json={"submission_ids": []})
    assert r.status_code == 200 and selected(live["store"], alpha) == []


# ---- slow headers ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_connection_that_sends_its_headers_slowly_is_closed(live):
    port, deadline = live["port"], HEADER_DEADLINE_S
    trickle = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200  # a byte per 0.1 s: ~25 s
    start, closed, received = time.monotonic(), False, b""
    with socket.create_connection(("127.0.0.1", port), timeout=0.1) as sock:
        for byte in trickle:
            try:
                sock.sendall(bytes([byte]))
                received = sock.recv(4096)  # waits 0.1 s: b"" or a 408 once the server gave up
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                pass
            closed = True
            break
    took = time.monotonic() - start
    assert closed and took < deadline + 2, f"the slow connection stayed open {took:.1f} s"
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received[:100]
    # a connection that sends nothing is closed too; one that sends its request in time is served
    response, took = raw_request(port, b"", wait_s=8)
    assert took < deadline + 2 and (response == b"" or response.startswith(b"HTTP/1.1 408"))
    response, _ = raw_request(port, b"GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200")


# ---- concurrency and host-side faults ----------------------------------------------------------------
@pytest.mark.slow
def test_concurrent_selections_all_succeed(live):
    url, teams, ids = live["url"], live["teams"], live["ids"]

    def select(i: int) -> httpx.Response:
        team = ("alpha", "beta")[i % 2]
        chosen = [ids[team]] if i % 3 else []
        return httpx.post(url + "/api/selection", headers=bearer(teams[team]),
                          json={"submission_ids": chosen}, timeout=60)  # fmt: skip

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(select, range(60)))
    failed = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert not failed, failed[:3]


@pytest.mark.slow
def test_host_side_faults_show_no_server_path(live, monkeypatch):
    url, alpha, db = live["url"], live["teams"]["alpha"], str(live["db"])
    # the database stays locked past the busy timeout
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    live["store"].dispose()  # new connections take the short busy timeout
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        r = httpx.post(url + "/api/selection", headers=bearer(alpha), json={"submission_ids": []}, timeout=30)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert r.status_code == 503 and "host's side" in r.json()["error"], r.text
    # the dataset went missing: the upload is answered without its path or the upload's temp path
    query = live["tmp"] / "OUT" / "query.parquet"
    query.rename(query.with_suffix(".moved"))
    payload = lf.write_submission(live["tmp"] / "s.npy", lf.distance_matrix(live["data"], 0.5, 3))
    r2 = httpx.post(url + "/api/submit", headers=bearer(alpha), data={"method": "m"},
                    files={"file": ("s.npy", payload.read_bytes())}, timeout=30)  # fmt: skip
    r3 = httpx.post(url + "/submit", data={"method": "m", "token": alpha},
                    files={"file": ("s.npy", payload.read_bytes())}, timeout=30)  # fmt: skip
    assert r2.status_code == 503 and r3.status_code == 503
    for text in (r.text, r2.text, r3.text):
        assert str(live["tmp"]) not in text and "/tmp" not in text and "sqlite" not in text, text


# ---- a submission received before the final phase ends, scored after ----------------------------------
@pytest.mark.slow
def test_the_reveal_waits_for_a_submission_received_before_the_end(live, monkeypatch):
    url, host, alpha, store = live["url"], live["host"], live["teams"]["alpha"], live["store"]
    real, scoring, release = submissions_module.score_file, threading.Event(), threading.Event()

    def slow_score(*args, **kwargs):
        scoring.set()  # received: the phase is decided, scoring has begun
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(submissions_module, "score_file", slow_score)
    payload = lf.write_submission(live["tmp"] / "late.npy", lf.distance_matrix(live["data"], 1.0, 9))
    with ThreadPoolExecutor(1) as pool:
        upload = pool.submit(
            httpx.post, url + "/api/submit", headers=bearer(alpha), data={"method": "late-but-in-time"},
            files={"file": ("late.npy", payload.read_bytes())}, timeout=60,
        )  # fmt: skip
        assert scoring.wait(30)
        assert httpx.post(url + "/api/phases/final/close", headers=bearer(host)).status_code == 200
        r = httpx.post(url + "/api/reveal", headers=bearer(host))
        assert r.status_code == 409 and "still being scored" in r.json()["error"], r.text
        assert not compute_standings(store, private=True, host_token=host, phase="final").revealed
        release.set()
        r = upload.result()
    assert r.status_code == 201 and r.json()["phase"] == "final", r.text
    late_id = r.json()["submission_id"]
    r = httpx.post(url + "/api/reveal", headers=bearer(host))
    assert r.status_code == 200, r.text
    board = httpx.get(url + "/api/standings", params={"view": "private", "phase": "final"}).json()
    assert board["revealed"] and late_id in {row["submission_id"] for row in board["rows"]}
    assert len(board["rows"]) == 2  # one per team
    time.sleep(0.5)
    assert httpx.get(url + "/api/standings", params={"view": "private", "phase": "final"}).json() == board


@pytest.mark.slow
def test_a_submission_still_scoring_past_its_deadline_is_not_recorded_after_the_reveal(live, monkeypatch):
    """The reveal stops waiting at the scoring deadline; that submission is then called off, not added."""
    store, host, alpha = live["store"], live["host"], live["teams"]["alpha"]
    real, scoring, release = submissions_module.score_file, threading.Event(), threading.Event()

    def slow_score(*args, **kwargs):
        scoring.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(submissions_module, "score_file", slow_score)
    path = lf.write_submission(live["tmp"] / "slow.npy", lf.distance_matrix(live["data"], 1.0, 8))
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(submit, store, path, alpha, method="too-slow", scoring_deadline_s=0.5)
        assert scoring.wait(30)
        close_phase(store, host, "final")
        time.sleep(0.6)  # past the deadline
        reveal(store, host)
        release.set()
        with pytest.raises(SubmissionAbandonedError, match="revealed"):
            job.result()
    rows = compute_standings(store, private=True, phase="final").all_rows
    assert "too-slow" not in {r.method for r in rows}
