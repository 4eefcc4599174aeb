"""Parallel submitters in separate processes, on SQLite and PostgreSQL: no lost row, quotas exact."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import support.leaderboard as lf
from sqlalchemy import func, select

from benchmarks.leaderboard.board import BoardSettings, create_board
from benchmarks.leaderboard.errors import QuotaExceededError
from benchmarks.leaderboard.store import Store, Submission, Team
from benchmarks.leaderboard.submissions import submit, team_quota
from benchmarks.leaderboard.teams import add_team

pytestmark = pytest.mark.slow
WORKERS = 8


def _submit_one(args: tuple[str, str, str, str]) -> tuple[str, int | str]:
    """Runs in a worker process with its own engine; returns ('ok', id) or ('quota', message)."""
    db, path, token, method = args
    store = Store(db)
    try:
        return "ok", submit(store, path, token, method=method).submission_id
    except QuotaExceededError as exc:
        return "quota", str(exc)
    finally:
        store.dispose()


def _run_parallel(jobs: list[tuple[str, str, str, str]]) -> list[tuple[str, int | str]]:
    # fork: workers start fast; the parent disposed its engine, so no connection crosses the fork
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_submit_one, jobs))


@pytest.fixture(params=["sqlite", "postgresql"])
def stress_db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "stress.db")
    return request.getfixturevalue("postgres_server").new_database()


def _board(db: str, out: Path, quota: int, teams: list[str]) -> dict[str, str]:
    store = Store(db)
    host = create_board(store, out, BoardSettings(daily_quota=quota, total_quota=quota))
    tokens = {t: add_team(store, host, t) for t in teams}
    store.dispose()
    return tokens


def test_fifty_parallel_submissions(stress_db, dataset, tmp_path):
    out, data = dataset
    teams = [f"team{i}" for i in range(5)]
    tokens = _board(stress_db, out, 10, teams)
    jobs = []
    for i in range(50):  # interleaved: every team's submissions race each other and the others
        team = teams[i % 5]
        path = lf.write_submission(tmp_path / f"s{i}.npy", lf.distance_matrix(data, 0.3 + 0.01 * i, i))
        jobs.append((stress_db, str(path), tokens[team], f"run{i}"))
    results = _run_parallel(jobs)
    assert [kind for kind, _ in results] == ["ok"] * 50, results
    store = Store(stress_db)
    with store.session() as s:
        rows = s.execute(select(Submission.id, Submission.method, Team.name).join(Team)).all()
        assert len(rows) == 50 and len({r.id for r in rows}) == 50
        assert sorted(r.method for r in rows) == sorted(f"run{i}" for i in range(50))
        per_team = dict(
            s.execute(select(Team.name, func.count(Submission.id)).join(Submission).group_by(Team.name)).all()
        )
    assert per_team == dict.fromkeys(teams, 10)
    assert all(team_quota(store, tokens[t]).total_left == 0 for t in teams)
    store.dispose()


def test_parallel_submitters_never_exceed_a_quota(stress_db, dataset, tmp_path):
    out, data = dataset
    tokens = _board(stress_db, out, 7, ["racer"])
    jobs = [(stress_db, str(lf.write_submission(tmp_path / f"r{i}.npy", lf.distance_matrix(data, 0.5, i))),
             tokens["racer"], f"r{i}") for i in range(16)]  # fmt: skip
    results = _run_parallel(jobs)
    kinds = [kind for kind, _ in results]
    assert kinds.count("ok") == 7 and kinds.count("quota") == 9, results
    store = Store(stress_db)
    with store.session() as s:
        assert s.scalar(select(func.count(Submission.id))) == 7
    store.dispose()


def _select_by_cli(args: tuple[str, str, list[int]]) -> tuple[int, str]:
    """`opreid leaderboard select` in a worker process, as a team types it: (exit code, stderr)."""
    from click.testing import CliRunner

    from opreid.cli import cli

    db, token, ids = args
    result = CliRunner().invoke(cli, ["leaderboard", "select", *map(str, ids), "--db", db, "--token", token])
    return result.exit_code, result.stderr


def test_parallel_selections_never_fail(stress_db, dataset, tmp_path):
    """Selections read and then write: on SQLite they now take the write lock first, so none fails with
    "database is locked" (and no error would show the database's path)."""
    out, data = dataset
    tokens = _board(stress_db, out, 10, [f"team{i}" for i in range(4)])
    store = Store(stress_db)
    ids: dict[str, list[int]] = {}
    for i, token in enumerate(tokens.values()):
        path = lf.write_submission(tmp_path / f"t{i}.npy", lf.distance_matrix(data, 0.5, i))
        ids[token] = [submit(store, path, token, method=f"m{k}").submission_id for k in range(2)]
    store.dispose()
    jobs = [(stress_db, token, ids[token][: 1 + k % 2]) for k in range(8) for token in tokens.values()]
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_select_by_cli, jobs))
    failed = [r for r in results if r[0] != 0]
    assert not failed, f"{len(failed)} of {len(results)} failed: {failed[:2]}"
