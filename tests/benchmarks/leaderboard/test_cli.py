"""`opreid leaderboard ...`: the commands a host and a team type, exit codes, JSON output, no tokens in logs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import support.leaderboard as lf
from click.testing import CliRunner

from opreid.cli import cli


def run(*args: str, env: dict | None = None, code: int = 0):
    result = CliRunner().invoke(cli, ["leaderboard", *args], env=env, catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.output)
    if code:
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"opreid leaderboard {args[0]}") and ": error: " in last, last
    return result


@pytest.fixture
def cli_board(dataset, tmp_path):
    out, data = dataset
    host = json.loads(
        run("init", "--data", str(out), "--daily-quota", "2", "--total-quota", "3", "--json").stdout
    )
    token = host["host_token"]
    teams = {n: json.loads(run("team", "add", n, "--data", str(out), "--json", "--token", token).stdout)["token"]
             for n in ("alpha", "beta")}  # fmt: skip
    subs = {
        q: lf.write_submission(tmp_path / f"q{q}.npy", lf.distance_matrix(data, q, 3))
        for q in (0.2, 0.5, 0.8)
    }
    return {"out": str(out), "host": token, "teams": teams, "subs": subs, "tmp": tmp_path}


@pytest.mark.slow
def test_full_flow_text_and_json(cli_board, caplog):
    caplog.set_level(logging.DEBUG)
    b = cli_board
    out, env = b["out"], {"OPREID_LEADERBOARD_TOKEN": b["teams"]["alpha"]}
    r = run("submit", str(b["subs"][0.5]), "--method", "Mid", "--data", out, env=env)
    assert "submission 1 recorded" in r.stdout and "quota left: 1/2 today, 2/3 in total" in r.stdout
    r = run(
        "submit",
        str(b["subs"][0.8]),
        "--method",
        "Best",
        "--data",
        out,
        "--json",
        "--token",
        b["teams"]["beta"],
    )
    payload = json.loads(r.stdout)
    assert (
        payload["quota"]["daily_left"] == 1
        and "private" not in r.stdout
        and 0 < payload["metrics"]["mAP"] <= 1
    )
    shown = json.loads(run("show", "--data", out, "--json").stdout)
    assert [row["team"] for row in shown["rows"]] == ["beta", "alpha"] and shown["view"] == "public"
    text = run("show", "--data", out).stdout
    assert text.splitlines()[0] == "public standings, development phase, sorted by mAP" and "Best" in text
    r = run("show", "--private", "--data", out, code=3)
    assert "host token" in r.stderr
    priv = json.loads(run("show", "--private", "--data", out, "--json", "--token", b["host"]).stdout)
    assert priv["view"] == "private" and "private_metrics" in priv["rows"][0]
    for fmt in ("csv", "json", "md"):
        target = b["tmp"] / f"standings.{fmt}"
        run("export", "--format", fmt, "-o", str(target), "--data", out)
        assert "beta" in target.read_text()
    assert run("export", "--format", "md", "--data", out).stdout.startswith("| rank | team")
    run("baseline", "2", "--data", out, "--token", b["host"])
    rows = json.loads(run("show", "--data", out, "--json").stdout)["rows"]
    assert [(r["team"], r["rank"], r["baseline"]) for r in rows] == [
        ("beta", None, True),
        ("alpha", 1, False),
    ]
    run("history", "alpha", "--data", out, code=3)  # not public: the team's token or the host's
    hist = json.loads(run("history", "alpha", "--data", out, "--json", "--token", b["host"]).stdout)
    assert [h["method"] for h in hist] == ["Mid"]
    own = json.loads(run("history", "--data", out, "--json", "--token", b["teams"]["alpha"]).stdout)
    assert own == hist
    run("history", "alpha", "--data", out, "--token", b["teams"]["beta"], code=3)
    teams = json.loads(run("team", "list", "--data", out, "--json", "--token", b["host"]).stdout)
    assert {t["name"]: t["submissions"] for t in teams} == {"alpha": 1, "beta": 1}
    run("team", "revoke", "alpha", "--data", out, "--token", b["host"])
    r = run("submit", str(b["subs"][0.2]), "--method", "x", "--data", out, env=env, code=3)
    assert "revoked" in r.stderr
    secrets_ = [b["host"], *b["teams"].values()]
    assert not any(s in caplog.text for s in secrets_), "a token reached the logs"
    assert caplog.records, "expected log records to check"


def test_invalid_submission_exit_2_and_no_quota(cli_board):
    b = cli_board
    bad = lf.write_submission(b["tmp"] / "bad.npy", np.zeros((3, 4), dtype=np.float32))
    r = run("submit", str(bad), "--method", "x", "--data", b["out"], "--token", b["teams"]["alpha"], code=2)
    assert "invalid submission (no quota used)" in r.stderr
    assert "quota left: 2/2 today" in r.stderr
    q = json.loads(run("quota", "--data", b["out"], "--json", "--token", b["teams"]["alpha"]).stdout)
    assert q["daily_used"] == 0 and q["daily_left"] == 2


def test_quota_exhausted_exit_3(cli_board):
    b = cli_board
    for _ in range(2):
        run(
            "submit", str(b["subs"][0.5]), "--method", "x", "--data", b["out"], "--token", b["teams"]["alpha"]
        )
    r = run(
        "submit",
        str(b["subs"][0.5]),
        "--method",
        "x",
        "--data",
        b["out"],
        "--token",
        b["teams"]["alpha"],
        code=3,
    )
    assert "daily quota" in r.stderr and "0/2 today" in r.stderr


def test_database_resolution_and_errors(cli_board, tmp_path):
    b = cli_board
    db = f"{b['out']}.host/leaderboard.db"  # beside the release, never in it
    assert json.loads(run("show", "--json", env={"OPREID_LEADERBOARD_DB": db}).stdout)["rows"] == []
    assert json.loads(run("show", "--json", "--db", db).stdout)["rows"] == []
    r = run("show", code=1, env={"OPREID_LEADERBOARD_DB": ""})
    assert "pass --db PATH|URL or --data OUT" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("show", "--data", str(tmp_path / "nowhere"), code=1)
    assert "no leaderboard at" in r.stderr and "leaderboard init" in r.stderr
    r = run("init", "--data", b["out"], code=1)
    assert "already holds a leaderboard" in r.stderr
    r = run("team", "add", "x", "--data", b["out"], "--token", "olb_wrong", code=3)
    assert "olb_wrong" not in r.output
    r = run("show", "--db", "postgresql://nobody@127.0.0.1:1/none", code=1)
    assert "database unavailable" in r.stderr


def test_registered_in_root_cli():
    result = CliRunner().invoke(cli, ["leaderboard", "--help"])
    assert result.exit_code == 0 and "submit" in result.output and "serve" in result.output


def test_malformed_npy_header_exit_2_and_no_quota(cli_board):
    """An unbalanced header dict (numpy raises TokenError on it) is an invalid submission, not a crash."""
    from support.submissions import unbalanced_header_npy

    b = cli_board
    bad = unbalanced_header_npy(b["tmp"] / "unbalanced.npy", np.zeros((3, 4), np.float32))
    r = run("submit", str(bad), "--method", "x", "--data", b["out"], "--token", b["teams"]["alpha"], code=2)
    assert "malformed header" in r.stderr and "no quota used" in r.stderr
    q = json.loads(run("quota", "--data", b["out"], "--json", "--token", b["teams"]["alpha"]).stdout)
    assert q["daily_used"] == 0
