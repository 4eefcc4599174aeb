"""Names and texts a host or a team types: team names that cannot look alike, method names that cannot
drive the host's terminal, a Markdown export that renders as text, and dates out of range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import support.leaderboard as lf
from click.testing import CliRunner
from sqlalchemy import update

from benchmarks.leaderboard.names import TEAM_NAME_RULE, check_team_name, printable
from benchmarks.leaderboard.store import Store, Submission
from manifests import ExitCode
from opreid.cli import cli

ROOT = Path(__file__).resolve().parents[3]
#: A cursor move and colour (CSI), a window title (OSC, ended by BEL and by ST), a C1 CSI, a
#: right-to-left override and isolate, a zero-width joiner, and a line separator.
TERMINAL_TRICKS = ["\x1b[2J\x1b[31mred", "\x1b]0;pwned\x07", "\x1b]2;t\x1b\\", "\x9b31m", "\u202eevil",
                   "\u2067x\u2069", "a\u200db", "a\u2028b", "tab\there", "bell\x07"]  # fmt: skip


def run(*args: str, env: dict | None = None) -> object:
    return CliRunner().invoke(cli, ["leaderboard", *map(str, args)], env=env, catch_exceptions=False)


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def board(dataset, tmp_path):
    out, data = dataset
    host = json.loads(run("init", "--data", out, "--daily-quota", "0", "--json").stdout)["host_token"]
    alpha = json.loads(run("team", "add", "alpha", "--data", out, "--token", host, "--json").stdout)["token"]
    sub = lf.write_submission(tmp_path / "s.npy", lf.distance_matrix(data, 0.5, 1))
    return {"out": out, "host": host, "alpha": alpha, "sub": sub}


def test_team_names_that_look_like_another_are_refused(board):
    out, host = board["out"], board["host"]
    for name in ("alpha ", "alpha\n", "alpha\t", " alpha", "al  pha", "Alpha", "ALPHA", "alpha\u00a0", "al\x1bpha",
                 "\u202ealpha", "", "-alpha", "a" * 65):  # fmt: skip
        result = run("team", "add", name, "--data", out, "--token", host)
        assert result.exit_code == ExitCode.USER, (name, result.output)
        line = error_line(result)
        assert (
            line.startswith("opreid leaderboard team add: error: ") and len(result.stderr.splitlines()) == 1
        )
        assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    teams = json.loads(run("team", "list", "--data", out, "--token", host, "--json").stdout)
    assert [t["name"] for t in teams] == ["alpha"]
    for name in ("a", "Team 7", "x.y_z-1", "b" * 64, "trailing."):
        assert run("team", "add", name, "--data", out, "--token", host).exit_code == 0, name


def test_the_team_name_rule_has_one_home():
    """The error, `team add --help` and the README all quote names.TEAM_NAME_RULE."""
    with pytest.raises(Exception, match="bad team name") as info:
        check_team_name("alpha ")
    assert TEAM_NAME_RULE in str(info.value)
    help_text = " ".join(run("team", "add", "--help").output.split())
    assert " ".join(TEAM_NAME_RULE.split()) in help_text
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert " ".join(TEAM_NAME_RULE.split()) in readme


def test_method_names_with_terminal_controls_are_refused(board):
    env = {"OPREID_LEADERBOARD_TOKEN": board["alpha"]}
    for trick in TERMINAL_TRICKS:
        result = run("submit", board["sub"], "--method", f"m{trick}", "--data", board["out"], env=env)
        assert result.exit_code == ExitCode.USER, (trick, result.output)
        assert "control or invisible formatting characters" in error_line(result)
        assert not any(c in result.stderr for c in "\x1b\x07\x9b\u202e\u2067\u200d\u2028"), repr(
            result.stderr
        )
        result = run("submit", board["sub"], "--method", "ok", "--description", f"d{trick}", "--data", board["out"],
                     env=env)  # fmt: skip
        assert result.exit_code == (0 if trick.startswith("tab") else ExitCode.USER), (trick, result.output)
    assert (
        run("submit", board["sub"], "--method", "Ünïcode 模型 ok", "--data", board["out"], env=env).exit_code
        == 0
    )
    # a browser's textarea sends CRLF line ends: kept as lines; a lone CR (it overwrites a line) is refused
    crlf = ["--method", "m", "--data", board["out"], "--json", "--description"]
    result = run("submit", board["sub"], *crlf, "one\r\ntwo", env=env)
    assert (
        result.exit_code == 0
        and json.loads(run("history", "--data", board["out"], "--json", env=env).stdout)[0]["description"]
        == "one\ntwo"
    )
    assert run("submit", board["sub"], *crlf, "one\rtwo", env=env).exit_code == ExitCode.USER


@pytest.mark.slow
def test_stored_names_are_escaped_in_what_the_host_reads(board):
    """A row stored before the rule (or by another tool): `history`, `show`, `team list` and `select`
    print its controls as visible escapes."""
    out, host = board["out"], board["host"]
    env = {"OPREID_LEADERBOARD_TOKEN": board["alpha"]}
    assert run("submit", board["sub"], "--method", "plain", "--data", out, env=env).exit_code == 0
    nasty = "".join(TERMINAL_TRICKS)
    store = Store(Path(f"{out}.host") / "leaderboard.db")
    with store.locked() as session:
        session.execute(update(Submission).values(method=nasty))
    store.dispose()
    outputs = [
        run("history", "alpha", "--data", out, "--token", host).stdout,
        run("history", "--data", out, env=env).stdout,
        run("show", "--data", out).stdout,
        run("show", "--private", "--data", out, "--token", host).stdout,
        run("select", "--data", out, env=env).stdout,
        run("team", "list", "--data", out, "--token", host).stdout,
    ]
    for text in outputs:
        assert not any(c in text for c in "\x1b\x07\x9b\u202e\u2067\u2069\u200d\u2028"), repr(text)
    assert (
        printable(nasty) in outputs[0] and "\\x1b]0;pwned\\x07" in outputs[0] and "\\u202eevil" in outputs[2]
    )
    assert json.loads(run("history", "--data", out, "--json", env=env).stdout)[0]["method"] == nasty


@pytest.mark.slow
def test_markdown_export_renders_as_text(board, tmp_path):
    markdown = pytest.importorskip("markdown")
    out, env = board["out"], {"OPREID_LEADERBOARD_TOKEN": board["alpha"]}
    tricks = ["<b>bold</b>", "[x](javascript:alert(1))", "![i](http://e.x/p.png)", "<script>alert(1)</script>",
              "*em* _em_ **strong**", "`code`", "<http://evil.example>", "a | b", "&lt;b&gt;", "~~gone~~",
              "x\\](javascript:y)"]  # fmt: skip
    for trick in tricks:  # each shown as a baseline row, so that every one is exported
        result = run("submit", board["sub"], "--method", trick, "--data", out, "--json", env=env)
        sid = json.loads(result.stdout)["submission_id"]
        assert run("baseline", sid, "--data", out, "--token", board["host"]).exit_code == 0
    text = run("export", "--format", "md", "--data", out).stdout
    for bad in ("<b>", "<script", "](javascript:", "](http://e.x", "<http://"):
        assert bad not in text, bad
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "\\[x\\]\\(javascript:alert\\(1\\)\\)" in text
    html = markdown.markdown(text, extensions=["tables"])
    for tag in ("<b>", "<a ", "<img", "<script", "<em>", "<strong>", "<code>", "<del>"):
        assert tag not in html, (tag, html)
    assert html.count("<tr>") == len(tricks) + 1  # the header and one row each: no cell broke the table


@pytest.mark.parametrize(
    "when",
    ["0001-01-01T00:00+01:00", "9999-12-31T23:00-05:00", "0001-01-01T00:30:00+00:45", "9999-12-31T22:00Z"],
)
def test_dates_at_the_ends_of_the_calendar(board, when):
    out, host = board["out"], board["host"]
    result = run("phase", "set", "final", "--start", when, "--data", out, "--token", host)
    if when.endswith("Z"):  # in range: a valid (if odd) schedule
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == ExitCode.USER, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "out of range" in error_line(result)
    result = run("init", "--data", out, "--db", str(Path(out).parent / "x.db"), "--dev-end", when)
    assert result.exit_code == ExitCode.USER and "out of range" in error_line(result)
