"""Leaderboard library: init, teams/tokens, submit, quotas, standings, host views, export.

Every test runs on SQLite; the same tests run on a throwaway PostgreSQL server (marked slow).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import numpy as np
import pytest
import support.leaderboard as lf
from sqlalchemy import select, text

from benchmarks.leaderboard.board import BoardSettings, board_info, create_board, private_mask
from benchmarks.leaderboard.errors import (
    AlreadyInitialisedError,
    AuthError,
    DatasetChangedError,
    LeaderboardError,
    QuotaExceededError,
    RejectedSubmissionError,
    SubmissionAbandonedError,
    TeamExistsError,
)
from benchmarks.leaderboard.export import render
from benchmarks.leaderboard.partition import draw_private
from benchmarks.leaderboard.standings import compute_standings
from benchmarks.leaderboard.store import Store, Submission
from benchmarks.leaderboard.submissions import Ticket, set_baseline, submit, team_history, team_quota
from benchmarks.leaderboard.teams import add_team, list_teams, revoke_team


class Clock:
    """A settable UTC clock, so that quota days can be crossed in a test."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def board(db_url, dataset, tmp_path):
    out, data = dataset
    store = Store(db_url)
    host = create_board(store, out, BoardSettings(daily_quota=3, total_quota=5, seed=1234))
    teams = {name: add_team(store, host, name) for name in ("alpha", "beta", "gamma")}
    clock = Clock(datetime(2024, 5, 1, 12, 0, 0))

    def send(team: str, quality: float, seed: int, **kw):
        path = lf.write_submission(
            tmp_path / f"sub_{team}_{seed}.npy", lf.distance_matrix(data, quality, seed)
        )
        return submit(store, path, teams[team], method=kw.pop("method", f"m{seed}"), clock=clock, **kw)

    yield {"store": store, "host": host, "teams": teams, "data": data, "out": out, "clock": clock,
           "send": send, "tmp": tmp_path}  # fmt: skip
    store.dispose()


def test_init_draws_hidden_seeded_split(board):
    store = board["store"]
    _, mask = private_mask(store)
    assert mask.sum() == 10 and len(mask) == 20
    assert np.array_equal(mask, draw_private(20, 1234, 0.5))
    assert not np.array_equal(mask, draw_private(20, 1235, 0.5))
    info = board_info(store)
    assert info["num_queries"] == 20 and "seed" not in json.dumps(info)
    with pytest.raises(AlreadyInitialisedError):
        create_board(store, board["out"])


def test_default_seed_is_random(tmp_path, dataset):
    out, _ = dataset
    masks = []
    for i in range(3):
        store = Store(tmp_path / f"lb{i}.db")
        create_board(store, out)
        masks.append(private_mask(store)[1])
        store.dispose()
    assert not (np.array_equal(masks[0], masks[1]) and np.array_equal(masks[1], masks[2]))


def test_tokens_are_stored_hashed_and_checked(board):
    store, host, teams = board["store"], board["host"], board["teams"]
    with store.engine.connect() as conn:
        dump = " ".join(
            str(row) for table in ("board", "team") for row in conn.execute(text(f"SELECT * FROM {table}"))
        )
    assert all(tok not in dump for tok in [host, *teams.values()])
    with pytest.raises(AuthError):
        add_team(store, teams["alpha"], "delta")  # a team token is not the host token
    with pytest.raises(AuthError):
        add_team(store, None, "delta")
    with pytest.raises(TeamExistsError):
        add_team(store, host, "alpha")
    with pytest.raises(LeaderboardError):
        add_team(store, host, "../bad name")
    assert [t["name"] for t in list_teams(store, host)] == ["alpha", "beta", "gamma"]


def test_submit_records_both_subsets_and_metadata(board):
    res = board["send"]("alpha", 0.7, 1, method="ResNet", url="https://example.org/paper", description="d")
    assert res.quota.daily_left == 2 and res.quota.total_left == 4
    with board["store"].session() as s:
        sub = s.get(Submission, res.submission_id)
        assert sub.method == "ResNet" and sub.url == "https://example.org/paper" and sub.description == "d"
        assert len(sub.file_sha256) == 64 and len(sub.manifests_sha256) == 64 and sub.scorer_version
        assert sub.public_metrics["num_queries"] == 10 and sub.private_metrics["num_queries"] == 10
        assert sub.all_metrics["num_queries"] == 20
        assert 0 <= sub.public_metrics["mAP"] <= 1 and 0 <= sub.private_metrics["mAP"] <= 1
        assert sub.received_at <= sub.created_at
    public = res.to_json()
    assert "private" not in json.dumps(public)


def test_subset_scores_match_the_scorer_on_masked_queries(board):
    """The stored public/private numbers are the scorer's own, on exactly the hidden subsets."""
    from benchmarks.scoring import score_submission

    data, out = board["data"], board["out"]
    matrix = lf.distance_matrix(data, 0.5, 7)
    path = lf.write_submission(board["tmp"] / "check.npy", matrix)
    res = board["send"]("beta", 0.5, 7)
    _, mask = private_mask(board["store"])
    ref = score_submission(path, out, query_subsets={"private": mask, "public": ~mask}).to_json()
    with board["store"].session() as s:
        sub = s.get(Submission, res.submission_id)
        assert sub.public_metrics["mAP"] == pytest.approx(ref["subsets"]["public"]["mAP"], abs=1e-12)
        assert sub.private_metrics["mAP"] == pytest.approx(ref["subsets"]["private"]["mAP"], abs=1e-12)


def test_invalid_submission_costs_no_quota_and_says_why(board):
    store, tmp = board["store"], board["tmp"]
    bad = lf.write_submission(tmp / "bad.npy", np.zeros((19, 60), dtype=np.float32))
    with pytest.raises(RejectedSubmissionError) as info:
        submit(store, bad, board["teams"]["alpha"], method="x", clock=board["clock"])
    assert info.value.problems and any("19" in p or "20" in p for p in info.value.problems)
    nan = np.full((20, 60), np.nan, dtype=np.float32)
    with pytest.raises(RejectedSubmissionError):
        submit(store, lf.write_submission(tmp / "nan.npy", nan), board["teams"]["alpha"], method="x")
    status = team_quota(store, board["teams"]["alpha"], clock=board["clock"])
    assert status.daily_used == 0 and status.total_used == 0
    with store.session() as s:
        assert s.scalar(select(Submission.id)) is None


def test_daily_and_total_quotas(board):
    clock, send = board["clock"], board["send"]
    for i in range(3):
        assert send("alpha", 0.5, i).quota.daily_left == 2 - i
    with pytest.raises(QuotaExceededError) as info:
        send("alpha", 0.5, 9)
    assert info.value.quota["daily_left"] == 0 and "daily" in str(info.value)
    clock.now = datetime(2024, 5, 1, 23, 59, 59)
    with pytest.raises(QuotaExceededError):
        send("alpha", 0.5, 10)
    clock.now = datetime(2024, 5, 2, 0, 0, 0)  # a new UTC day
    assert send("alpha", 0.5, 11).quota.total_left == 1
    assert send("alpha", 0.5, 12).quota.total_left == 0
    with pytest.raises(QuotaExceededError) as info:
        send("alpha", 0.5, 13)
    assert "total" in str(info.value)
    assert send("beta", 0.5, 14).quota.total_used == 1  # quotas are per team


def test_revoked_and_unknown_tokens(board):
    store = board["store"]
    board["send"]("gamma", 0.5, 1)
    revoke_team(store, board["host"], "gamma")
    with pytest.raises(AuthError, match="revoked"):
        board["send"]("gamma", 0.5, 2)
    path = lf.write_submission(board["tmp"] / "x.npy", lf.distance_matrix(board["data"], 0.5, 3))
    with pytest.raises(AuthError) as info:
        submit(store, path, "olb_not-a-token", method="m")
    assert "olb_not-a-token" not in str(info.value)
    assert [r["team"] for r in compute_standings(store).to_json()["rows"]] == ["gamma"]  # rows stay


def test_abandoned_submission_is_not_recorded(board):
    ticket = Ticket()
    assert ticket.cancel()
    with pytest.raises(SubmissionAbandonedError):
        board["send"]("alpha", 0.5, 1, ticket=ticket)
    assert team_quota(board["store"], board["teams"]["alpha"], clock=board["clock"]).total_used == 0
    late = Ticket()
    assert late.claim() and not late.cancel()


def test_public_standings_best_per_team_ties_and_baselines(board):
    store, send, clock = board["store"], board["send"], board["clock"]
    a1 = send("alpha", 0.3, 1)
    clock.now += timedelta(minutes=1)
    a2 = send("alpha", 0.6, 2)
    clock.now += timedelta(minutes=1)
    b1 = send("beta", 0.6, 2)  # the same file as alpha's best, later: ties go to the earliest
    clock.now += timedelta(minutes=1)
    g1 = send("gamma", 1.0, 3)
    set_baseline(store, board["host"], g1.submission_id)
    with pytest.raises(AuthError):
        set_baseline(store, board["teams"]["gamma"], a1.submission_id)
    st = compute_standings(store)
    rows = st.rows
    assert [(r.team, r.rank, r.baseline) for r in rows] == [
        ("gamma", None, True),
        ("alpha", 1, False),
        ("beta", 2, False),
    ]
    assert rows[1].submission_id == a2.submission_id and rows[1].submissions == 2
    assert rows[1].metrics["mAP"] == rows[2].metrics["mAP"]
    assert b1.submission_id == rows[2].submission_id
    assert st.columns[0] == "mAP" and "rank1" in st.columns
    assert all(r.private_metrics is None for r in rows)
    assert [h["id"] for h in team_history(store, board["host"], "alpha")] == [
        a2.submission_id,
        a1.submission_id,
    ]


def test_private_view_needs_host_and_ranks_by_private(board):
    store, data, tmp, teams = board["store"], board["data"], board["tmp"], board["teams"]
    _, mask = private_mask(store)
    # alpha: perfect on public queries only; beta: perfect on private queries only.
    for team, rows in (("alpha", ~mask), ("beta", mask)):
        path = lf.write_submission(tmp / f"{team}.npy", lf.distance_matrix(data, 1.0, 5, good_rows=rows))
        submit(store, path, teams[team], method=team, clock=board["clock"])
    public = compute_standings(store)
    assert [r.team for r in public.rows] == ["alpha", "beta"]
    with pytest.raises(AuthError):
        compute_standings(store, private=True, host_token=teams["alpha"])
    private = compute_standings(store, private=True, host_token=board["host"])
    assert [r.team for r in private.rows] == ["beta", "alpha"]
    assert private.rows[0].private_metrics["mAP"] == pytest.approx(1.0)
    assert private.rows[1].private_metrics["mAP"] < 0.9


def test_export_formats(board):
    store, send, clock = board["store"], board["send"], board["clock"]
    send("alpha", 0.8, 1, method="=cmd|' /C calc'!A0")
    clock.now += timedelta(seconds=5)
    send("beta", 0.4, 2, method="plain | pipe")
    st = compute_standings(store)
    rows = list(csv.DictReader(io.StringIO(render(st, "csv"))))
    assert [r["team"] for r in rows] == ["alpha", "beta"] and rows[0]["rank"] == "1"
    assert rows[0]["method"].startswith("'=")  # no formula injection
    assert float(rows[0]["mAP"]) == st.rows[0].metrics["mAP"]
    assert not any(k.startswith("private_") for k in rows[0])
    as_json = json.loads(render(st, "json"))
    assert as_json["view"] == "public" and as_json["rows"][1]["method"] == "plain | pipe"
    md = render(st, "md").splitlines()
    assert md[0].startswith("| rank | team") and "plain \\| pipe" in md[3]
    priv = compute_standings(store, private=True, host_token=board["host"])
    assert "private_mAP" in render(priv, "csv").splitlines()[0]


def test_dataset_changed_after_init_is_refused(board):
    out = board["out"]
    lf.make_dataset(out, seed=99)  # different query ids, same size
    with pytest.raises(DatasetChangedError):
        board["send"]("alpha", 0.5, 1)
