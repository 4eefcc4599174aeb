"""Running a challenge: phases and their dates, selection for the private board, the reveal, ranked lists
ranked apart, features with a metric, histories kept private, the database outside the release, and the
upgrade of an older database."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import numpy as np
import pytest
import support.leaderboard as lf
from sqlalchemy import text

from benchmarks.leaderboard import submissions as submissions_module
from benchmarks.leaderboard.board import BoardSettings, create_board, init_board, open_store, private_mask
from benchmarks.leaderboard.errors import (
    AuthError,
    LeaderboardError,
    NotRevealedError,
    OutdatedSchemaError,
    PhaseClosedError,
    ScoringPendingError,
    SelectionError,
)
from benchmarks.leaderboard.migrate import migrate
from benchmarks.leaderboard.phases import close_phase, reveal, set_phase
from benchmarks.leaderboard.selection import select_submissions, selection_status
from benchmarks.leaderboard.standings import compute_standings
from benchmarks.leaderboard.store import Store
from benchmarks.leaderboard.submissions import submit, team_history
from benchmarks.leaderboard.teams import add_team
from manifests import DatasetLayout, ExitCode

T0 = datetime(2025, 3, 1, 12, 0, 0)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def challenge(db_url, dataset, tmp_path):
    """Development from T0 for a day, then final for a day; two teams; selection limit 2."""
    out, data = dataset
    store = Store(db_url)
    settings = BoardSettings(daily_quota=None, total_quota=None, seed=5, selection_limit=2, dev_start=T0,
                             final_start=T0 + timedelta(days=1), final_end=T0 + timedelta(days=2))  # fmt: skip
    host = create_board(store, out, settings)
    teams = {name: add_team(store, host, name) for name in ("alpha", "beta")}
    clock = Clock(T0 + timedelta(hours=1))

    def send(team: str, matrix: np.ndarray, name: str, **kw):
        path = lf.write_submission(tmp_path / f"{name}.npy", matrix)
        return submit(store, path, teams[team], method=name, clock=clock, **kw)

    yield {"store": store, "host": host, "teams": teams, "data": data, "clock": clock, "send": send,
           "tmp": tmp_path, "out": out}  # fmt: skip
    store.dispose()


def test_submissions_outside_a_phase_are_refused_with_the_dates(challenge):
    c = challenge
    c["clock"].now = T0 - timedelta(minutes=1)
    with pytest.raises(PhaseClosedError) as info:
        c["send"]("alpha", lf.distance_matrix(c["data"], 0.5, 1), "early")
    message = str(info.value)
    assert "no phase is open" in message and info.value.exit_code == ExitCode.REFUSED
    assert "development: 2025-03-01 12:00 UTC - 2025-03-02 12:00 UTC" in message
    assert "final: 2025-03-02 12:00 UTC - 2025-03-03 12:00 UTC" in message
    c["clock"].now = T0 + timedelta(hours=1)
    assert c["send"]("alpha", lf.distance_matrix(c["data"], 0.5, 1), "dev").phase == "development"
    c["clock"].now = T0 + timedelta(days=1, hours=1)
    assert c["send"]("alpha", lf.distance_matrix(c["data"], 0.5, 2), "fin").phase == "final"
    c["clock"].now = T0 + timedelta(days=3)
    with pytest.raises(PhaseClosedError, match="submissions are closed"):
        c["send"]("alpha", lf.distance_matrix(c["data"], 0.5, 3), "late")
    # each phase has its own standings
    dev = compute_standings(c["store"], phase="development", clock=c["clock"])
    fin = compute_standings(c["store"], phase="final", clock=c["clock"])
    assert [r.method for r in dev.rows] == ["dev"] and [r.method for r in fin.rows] == ["fin"]
    assert compute_standings(c["store"], clock=c["clock"]).phase == "final"  # the latest that has begun


def test_host_schedules_and_closes_phases(challenge):
    c = challenge
    store, host, clock = c["store"], c["host"], c["clock"]
    with pytest.raises(AuthError):
        close_phase(store, c["teams"]["alpha"], "development", clock)
    rows = close_phase(store, host, "development", clock)
    assert rows[0]["state"] == "closed" and rows[0]["ends_at"] == clock.now.isoformat() + "Z"
    with pytest.raises(PhaseClosedError):
        c["send"]("alpha", lf.distance_matrix(c["data"], 0.5, 1), "x")
    with pytest.raises(LeaderboardError, match="is closed, not open"):
        close_phase(store, host, "development", clock)
    with pytest.raises(LeaderboardError, match="must end by the time the final phase starts"):
        set_phase(store, host, "final", starts_at=T0 - timedelta(days=1), clock=clock)
    rows = set_phase(store, host, "final", starts_at=clock.now, clock=clock)  # move final forward: open now
    assert [r["state"] for r in rows] == ["closed", "open"]
    assert c["send"]("alpha", lf.distance_matrix(c["data"], 0.5, 1), "x").phase == "final"


def test_private_board_revealed_only_by_the_host_after_the_final_phase(challenge):
    c = challenge
    store, host, clock, data = c["store"], c["host"], c["clock"], c["data"]
    clock.now = T0 + timedelta(days=1, hours=1)
    c["send"]("alpha", lf.distance_matrix(data, 0.6, 1), "a")
    for token in (None, c["teams"]["alpha"]):
        with pytest.raises(AuthError, match="until the final phase closes and the host reveals them"):
            compute_standings(store, private=True, host_token=token, phase="final", clock=clock)
    assert compute_standings(store, private=True, host_token=host, phase="final", clock=clock).rows
    with pytest.raises(NotRevealedError, match="final phase is open"):
        reveal(store, host, clock)
    close_phase(store, host, "final", clock)
    with pytest.raises(AuthError):
        reveal(store, c["teams"]["alpha"], clock)
    when = reveal(store, host, clock)
    assert when == clock.now
    final = compute_standings(store, private=True, phase="final", clock=clock)  # anyone, no token
    assert final.revealed and final.rows[0].private_metrics["mAP"] is not None
    with pytest.raises(AuthError, match="only the final phase's private standings are public"):
        compute_standings(store, private=True, phase="development", clock=clock)
    with pytest.raises(LeaderboardError, match="revealed"):
        set_phase(store, host, "final", ends_at=clock.now + timedelta(days=1), clock=clock)


@pytest.mark.slow
def test_a_final_submission_scored_after_the_end_is_waited_for_by_the_reveal(challenge, monkeypatch):
    """Received before the final phase ends, scored after: it counts in the final phase, and the reveal
    refuses (or waits) until it is recorded, so the revealed board never gains a row."""
    c = challenge
    store, host, clock, data = c["store"], c["host"], c["clock"], c["data"]
    clock.now = T0 + timedelta(days=2) - timedelta(seconds=1)  # the last second of the final phase
    real, scoring, release = submissions_module.score_file, threading.Event(), threading.Event()

    def slow_score(*args, **kwargs):
        scoring.set()
        assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(submissions_module, "score_file", slow_score)
    with ThreadPoolExecutor(2) as pool:
        job = pool.submit(c["send"], "alpha", lf.distance_matrix(data, 0.9, 1), "in-time")
        assert scoring.wait(60)
        clock.now = T0 + timedelta(days=2, minutes=5)  # the phase has ended while it is scored
        with pytest.raises(ScoringPendingError, match="1 submission\\(s\\) .* still being scored") as info:
            reveal(store, host, clock)
        assert info.value.exit_code == ExitCode.REFUSED
        waiting = pool.submit(reveal, store, host, clock, wait_s=60, poll_s=0.05)
        time.sleep(0.3)
        assert not waiting.done()
        release.set()
        result = job.result()
        when = waiting.result()
    assert result.phase == "final" and when == clock.now
    final = compute_standings(store, private=True, phase="final", clock=clock)
    assert final.revealed and [r.method for r in final.rows] == ["in-time"]
    with pytest.raises(PhaseClosedError):  # received after the end: refused as before
        c["send"]("beta", lf.distance_matrix(data, 0.9, 2), "late")


def test_selection_decides_the_private_board(challenge):
    """alpha's best public submission is bad on the private queries; alpha selects its other one."""
    c = challenge
    store, clock, data, alpha = c["store"], c["clock"], c["data"], c["teams"]["alpha"]
    _, mask = private_mask(store)
    public_only = c["send"]("alpha", lf.distance_matrix(data, 1.0, 1, good_rows=~mask), "public-only")
    private_good = c["send"]("alpha", lf.distance_matrix(data, 1.0, 2, good_rows=mask), "private-good")
    other = c["send"]("beta", lf.distance_matrix(data, 0.5, 3), "beta")
    status = selection_status(store, alpha, clock)
    assert status["selected"] == [] and [x["submission_id"] for x in status["counts"]] == [
        public_only.submission_id
    ]
    assert status["counts"][0]["reason"] == "best public (default)"
    host_view = lambda: compute_standings(store, private=True, host_token=c["host"], clock=clock)  # noqa: E731
    alpha_row = next(r for r in host_view().rows if r.team == "alpha")
    assert alpha_row.submission_id == public_only.submission_id and not alpha_row.selected
    status = select_submissions(store, alpha, [private_good.submission_id], clock)
    assert status["selected"] == [private_good.submission_id] and status["counts"][0]["reason"] == "selected"
    alpha_row = next(r for r in host_view().rows if r.team == "alpha")
    assert alpha_row.submission_id == private_good.submission_id and alpha_row.selected
    assert alpha_row.private_metrics["mAP"] == pytest.approx(1.0)
    # up to the limit: both count, and the team's private score is the best of them
    select_submissions(store, alpha, [public_only.submission_id, private_good.submission_id], clock)
    assert next(r for r in host_view().rows if r.team == "alpha").submission_id == private_good.submission_id
    history = team_history(store, alpha)
    assert {h["id"]: h["counts"] for h in history} == {
        private_good.submission_id: True,
        public_only.submission_id: True,
    }
    with pytest.raises(SelectionError, match="at most 2"):
        select_submissions(store, alpha, [1, 2, 3], clock)
    with pytest.raises(SelectionError, match="not one of team 'alpha'"):
        select_submissions(store, alpha, [other.submission_id], clock)
    select_submissions(store, alpha, [], clock)  # back to the default
    assert selection_status(store, alpha, clock)["counts"][0]["submission_id"] == public_only.submission_id
    # a submission of a past phase cannot be selected for the open one; closed phases freeze
    clock.now = T0 + timedelta(days=1, hours=1)
    with pytest.raises(SelectionError, match="made in the development phase"):
        select_submissions(store, alpha, [private_good.submission_id], clock)
    clock.now = T0 + timedelta(days=3)
    with pytest.raises(PhaseClosedError, match="frozen"):
        select_submissions(store, alpha, [], clock)
    assert selection_status(store, alpha, clock)["frozen"]


def test_ranked_lists_are_truncated_and_ranked_apart(challenge):
    c = challenge
    data, store = c["data"], c["store"]
    full = c["send"]("alpha", lf.distance_matrix(data, 0.3, 1), "full-matrix")
    perfect = lf.distance_matrix(data, 1.0, 2)
    ranked = np.argsort(perfect, axis=1, kind="stable")[:, :10].astype(np.int32)
    top10 = c["send"]("beta", ranked, "top10")
    assert top10.truncated_at == 10 and top10.track == "top-10" and full.track == "full"
    standings = compute_standings(store, clock=c["clock"])
    assert [r.method for r in standings.rows] == ["full-matrix"]  # never mixed with the ranked list
    assert list(standings.tracks) == ["full", "top-10"]
    assert [(r.method, r.rank, r.truncated_at) for r in standings.tracks["top-10"]] == [("top10", 1, 10)]
    payload = standings.to_json()
    assert [t["track"] for t in payload["tracks"]] == ["full", "top-10"] and payload["tracks"][1][
        "truncated_at"
    ] == 10


def test_features_are_scored_with_the_submitted_metric(challenge):
    c = challenge
    rng = np.random.default_rng(0)
    q, g = len(c["data"]["q_pids"]), len(c["data"]["g_pids"])
    path = c["tmp"] / "feats.npz"
    np.savez(path, query=rng.normal(size=(q, 16)).astype(np.float32) * 3,
             gallery=rng.normal(size=(g, 16)).astype(np.float32))  # fmt: skip
    results = {m: submit(c["store"], path, c["teams"]["alpha"], method=m, metric=m, clock=c["clock"])
               for m in ("cosine", "euclidean")}  # fmt: skip
    history = {h["method"]: h for h in team_history(c["store"], c["teams"]["alpha"])}
    assert history["cosine"]["metric"] == "cosine" and history["euclidean"]["metric"] == "euclidean"
    assert history["cosine"]["kind"] == "features"
    assert results["cosine"].public_metrics != results["euclidean"].public_metrics
    with pytest.raises(LeaderboardError, match="metric must be one of"):
        submit(c["store"], path, c["teams"]["alpha"], method="m", metric="manhattan", clock=c["clock"])


def test_histories_are_for_the_team_and_the_host(challenge):
    c = challenge
    c["send"]("alpha", lf.distance_matrix(c["data"], 0.5, 1), "a")
    assert [h["method"] for h in team_history(c["store"], c["teams"]["alpha"])] == ["a"]
    assert [h["method"] for h in team_history(c["store"], c["host"], "alpha")] == ["a"]
    for token, name in ((None, "alpha"), (c["teams"]["beta"], "alpha"), ("olb_nope", "alpha")):
        with pytest.raises(AuthError):
            team_history(c["store"], token, name)


# ---- the database lives outside the release ---------------------------------------------------------
def test_init_puts_the_database_in_the_host_folder(dataset, run_opreid, expect_error, tmp_path):
    out, data = dataset
    result = run_opreid("leaderboard", "init", "--data", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    db = DatasetLayout(out).host_dir / "leaderboard.db"
    assert db.parent == out.parent / "OUT.host" and db.is_file() and str(db) in payload["db"]
    assert not (out / "leaderboard.db").exists()
    assert db.stat().st_mode & 0o777 == 0o600 and db.parent.stat().st_mode & 0o777 == 0o700
    marker = json.loads(DatasetLayout(out).leaderboard_marker.read_text())
    assert marker["database"] == str(db)
    host = payload["host_token"]
    team = json.loads(
        run_opreid("leaderboard", "team", "add", "a", "--data", out, "--token", host, "--json").stdout
    )
    path = lf.write_submission(tmp_path / "s.npy", lf.distance_matrix(data, 0.5, 1))
    result = run_opreid(
        "leaderboard", "submit", path, "--method", "m", "--data", out, "--token", team["token"]
    )
    assert result.exit_code == 0, result.output
    for sidecar in db.parent.iterdir():  # -wal and -shm follow the database's mode
        assert sidecar.stat().st_mode & 0o777 == 0o600, sidecar
    text = run_opreid("leaderboard", "init", "--data", out, "--db", out / "lb.db")
    expect_error(text, "opreid leaderboard init", ExitCode.USER, "inside the release")
    text = run_opreid("leaderboard", "init", "--data", out, "--host-dir", out / "host")
    expect_error(text, "opreid leaderboard init", ExitCode.USER, "inside the release")


def test_a_database_left_in_the_release_still_opens_with_a_warning(dataset, caplog):
    out, _ = dataset
    legacy = out / "leaderboard.db"
    store = Store(legacy)
    store.create_schema()
    store.dispose()
    with caplog.at_level(logging.WARNING):
        opened = open_store(None, out)
    assert opened.url.database == str(legacy.resolve())
    assert "sits inside the release" in caplog.text and f"mv {legacy}*" in caplog.text


def test_build_split_refuses_to_overwrite_a_leaderboard_release(dataset, run_opreid, expect_error):
    out, _ = dataset
    init_board(out, BoardSettings())
    result = run_opreid("build-split", "-o", out, "--curated")
    expect_error(result, "opreid build-split", ExitCode.USER, "is the release of the leaderboard in",
                 "OUT.host/leaderboard.db", "--force")  # fmt: skip
    forced = run_opreid("build-split", "-o", out, "--curated", "--force")
    expect_error(
        forced, "opreid build-split", ExitCode.INVALID_INPUT, "images.parquet"
    )  # went past the guard
    assert "rebuilding" in forced.stderr


def test_validate_warns_about_a_database_in_a_release(built_release, tmp_path, run_opreid):
    import shutil

    from opreid_builder.release.validate import validate

    copy = tmp_path / "release"
    shutil.copytree(built_release, copy, ignore=shutil.ignore_patterns("masked", "cache"))
    (copy / "leaderboard.db").write_bytes(b"SQLite format 3\0")
    report = validate(copy)
    assert report.ok and len(report.warnings) == 1
    assert report.warnings[0].startswith("leaderboard.db is a database inside the release")
    result = run_opreid("validate", copy, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["warnings"] == report.warnings
    assert "opreid validate: warning: leaderboard.db is a database inside the release" in result.stderr


# ---- CLI: phases, selection, reveal --------------------------------------------------------------
def test_cli_phase_select_reveal_flow(dataset, run_opreid, expect_error, tmp_path):
    out, data = dataset
    now = datetime.utcnow().replace(microsecond=0)
    past = (now - timedelta(days=2)).isoformat()
    host = json.loads(run_opreid("leaderboard", "init", "--data", out, "--dev-start", past, "--json").stdout)[
        "host_token"
    ]
    team = json.loads(
        run_opreid("leaderboard", "team", "add", "t", "--data", out, "--token", host, "--json").stdout
    )["token"]
    env = {"OPREID_LEADERBOARD_TOKEN": team}
    phases = json.loads(run_opreid("leaderboard", "phase", "list", "--data", out, "--json").stdout)
    assert [(p["name"], p["state"]) for p in phases] == [("development", "open"), ("final", "unscheduled")]
    sub = lf.write_submission(tmp_path / "s.npy", lf.distance_matrix(data, 0.5, 1))
    assert run_opreid("leaderboard", "submit", sub, "--method", "dev", "--data", out, env=env).exit_code == 0
    start = (now - timedelta(hours=1)).isoformat() + "Z"
    result = run_opreid(
        "leaderboard", "phase", "set", "final", "--start", start, "--data", out, "--token", host
    )
    assert result.exit_code == 0 and "final        open" in result.stdout
    result = run_opreid("leaderboard", "submit", sub, "--method", "fin", "--data", out, "--json", env=env)
    fin = json.loads(result.stdout)
    assert fin["phase"] == "final" and fin["track"] == "full"
    result = run_opreid("leaderboard", "select", str(fin["submission_id"]), "--data", out, "--json", env=env)
    assert json.loads(result.stdout)["selected"] == [fin["submission_id"]]
    shown = run_opreid("leaderboard", "select", "--data", out, env=env).stdout
    assert "final phase: 1 of at most 2 selected" in shown and "selected" in shown
    expect_error(run_opreid("leaderboard", "reveal", "--data", out, "--token", host), "opreid leaderboard reveal",
                 ExitCode.REFUSED, "only after the final phase closes")  # fmt: skip
    expect_error(run_opreid("leaderboard", "show", "--private", "--data", out), "opreid leaderboard show",
                 ExitCode.REFUSED, "host token")  # fmt: skip
    assert run_opreid("leaderboard", "phase", "close", "final", "--data", out, "--token", host).exit_code == 0
    expect_error(run_opreid("leaderboard", "submit", sub, "--method", "late", "--data", out, env=env),
                 "opreid leaderboard submit", ExitCode.REFUSED, "submissions are closed", "final:")  # fmt: skip
    assert run_opreid("leaderboard", "reveal", "--data", out, "--token", host).exit_code == 0
    final = json.loads(
        run_opreid("leaderboard", "show", "--private", "--phase", "final", "--data", out, "--json").stdout
    )
    assert final["revealed"] and final["rows"][0]["submission_id"] == fin["submission_id"]
    assert final["rows"][0]["selected"] is True


# ---- an older database: a clear error, then an upgrade in place -------------------------------------
def _downgrade_to_v1(store: Store) -> None:
    """The schema-1 layout: today's tables without the phase table and the columns schema 2 added."""
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE phase"))
        conn.execute(text("DROP INDEX IF EXISTS ix_submission_phase"))
        for table, columns in (("board", ("schema_version", "selection_limit", "revealed_at")),
                               ("submission", ("phase", "kind", "truncated_at", "metric", "selected"))):  # fmt: skip
            for column in columns:
                conn.execute(text(f'ALTER TABLE "{table}" DROP COLUMN "{column}"'))
    store.forget_schema()


def test_a_schema_1_database_is_refused_then_migrated(db_url, dataset, tmp_path):
    out, data = dataset
    store = Store(db_url)
    host = create_board(store, out, BoardSettings(seed=3))
    token = add_team(store, host, "alpha")
    path = lf.write_submission(tmp_path / "a.npy", lf.distance_matrix(data, 0.5, 1))
    first = submit(store, path, token, method="old")
    ranked = np.argsort(lf.distance_matrix(data, 1.0, 2), axis=1)[:, :5].astype(np.int64)
    submit(store, lf.write_submission(tmp_path / "r.npy", ranked), token, method="old-ranked")
    _downgrade_to_v1(store)
    with pytest.raises(OutdatedSchemaError, match="schema 1") as info:
        compute_standings(store)
    assert "opreid leaderboard migrate" in str(info.value) and "back the file up" in str(info.value)
    with pytest.raises(AuthError):
        migrate(store, token)
    assert migrate(store, host) == {"db": store.display_url, "from": 1, "to": 2, "migrated": True}
    standings = compute_standings(store)
    assert standings.phase == "development" and [r.submission_id for r in standings.rows] == [
        first.submission_id
    ]
    assert list(standings.tracks) == ["full", "top-5"]
    history = team_history(store, token)
    assert {h["method"]: (h["phase"], h["kind"]) for h in history} == {
        "old": ("development", "distances"), "old-ranked": ("development", "ranked")}  # fmt: skip
    assert submit(store, path, token, method="new").phase == "development"
    assert migrate(store, host)["migrated"] is False
    store.dispose()


def test_migrate_from_the_command_line(dataset, run_opreid, expect_error, tmp_path):
    out, _ = dataset
    db = tmp_path / "lb.db"
    store = Store(db)
    host = create_board(store, out)
    _downgrade_to_v1(store)
    store.dispose()
    expect_error(run_opreid("leaderboard", "show", "--db", db), "opreid leaderboard show", ExitCode.USER,
                 "schema 1", f"opreid leaderboard migrate --db {db.resolve()}")  # fmt: skip
    result = run_opreid("leaderboard", "migrate", "--db", db, "--token", host)
    assert result.exit_code == 0 and "upgraded from schema 1 to 2" in result.stdout
    assert run_opreid("leaderboard", "show", "--db", db).exit_code == 0
    assert oct(os.stat(db).st_mode & 0o777) == "0o600"
