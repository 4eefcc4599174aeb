"""`opreid leaderboard ...`: create a leaderboard, manage teams, submit, show, export, serve.

The database is `--db PATH|URL`, else $OPREID_LEADERBOARD_DB, else OUT/leaderboard.db for
`--data OUT`. Tokens come from `--token` or $OPREID_LEADERBOARD_TOKEN (the variable keeps them out
of shell history and `ps`). Exit codes follow the error policy: 1 error, 2 invalid submission (no
quota used), 3 refused (quota exhausted, bad or missing token).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from benchmarks.leaderboard.errors import LeaderboardError
from benchmarks.leaderboard.export import FORMATS as EXPORT_FORMATS
from benchmarks.leaderboard.settings import BoardSettings, WebSettings
from benchmarks.leaderboard.store import DB_FILENAME, Store

_BOARD = BoardSettings()
_WEB = WebSettings()
TOKEN_ENV = "OPREID_LEADERBOARD_TOKEN"
DB_ENV = "OPREID_LEADERBOARD_DB"


def _open(db: str | None, data: str | None) -> Store:
    if db:
        return Store(db)
    if data:
        path = Path(data) / DB_FILENAME
        if not path.is_file():
            raise LeaderboardError(f"no leaderboard at {path}; run `opreid leaderboard init --data {data}`")
        return Store(path)
    raise LeaderboardError(f"which leaderboard? pass --db PATH|URL or --data OUT, or set {DB_ENV}")


def _store_options(fn: Callable) -> Callable:
    fn = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")(fn)
    fn = click.option(
        "--data", type=click.Path(file_okay=False), help="Built dataset OUT (db: OUT/leaderboard.db)."
    )(fn)
    fn = click.option("--db", envvar=DB_ENV, help=f"Database file or URL (env {DB_ENV}).")(fn)
    return fn


def _token_option(help_text: str) -> Callable:
    return click.option("--token", envvar=TOKEN_ENV, show_envvar=True, help=help_text)


def _emit(as_json: bool, payload: Any, text: str) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True) if as_json else text)


@click.group("leaderboard")
def leaderboard() -> None:
    """Run a leaderboard: teams, quotas, hidden public/private split, standings, a web page."""


@leaderboard.command("init")
@click.option(
    "--data", required=True, type=click.Path(exists=True, file_okay=False), help="Built dataset OUT."
)
@click.option("--db", envvar=DB_ENV, help="Database file or URL (default OUT/leaderboard.db).")
@click.option("--name", default=_BOARD.name, show_default=True, help="Leaderboard title.")
@click.option("--sort-metric", default=_BOARD.sort_metric, show_default=True, help="mAP, mINP or rankK.")
@click.option(
    "--daily-quota",
    type=click.IntRange(min=0),
    default=_BOARD.daily_quota,
    show_default=True,
    help="Per team per UTC day; 0 = unlimited.",
)
@click.option(
    "--total-quota",
    type=click.IntRange(min=0),
    default=_BOARD.total_quota,
    show_default=True,
    help="Per team in total; 0 = unlimited.",
)
@click.option(
    "--private-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=_BOARD.private_fraction,
    show_default=True,
    help="Share of queries in the hidden private subset.",
)
@click.option("--seed", type=int, default=None, help="Seed of the hidden split (default: random and secret).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def init_cmd(data, db, name, sort_metric, daily_quota, total_quota, private_fraction, seed, as_json) -> None:
    """Create a leaderboard for a built dataset; prints the host token (shown once)."""
    from benchmarks.leaderboard.board import create_board

    store = Store(db or Path(data) / DB_FILENAME)
    settings = BoardSettings(
        name=name,
        sort_metric=sort_metric,
        daily_quota=daily_quota or None,
        total_quota=total_quota or None,
        private_fraction=private_fraction,
        seed=seed,
    )
    token = create_board(store, data, settings)
    _emit(
        as_json,
        {"db": store.display_url, "host_token": token},
        f"leaderboard created in {store.display_url}\nhost token (keep it secret; shown once):\n{token}",
    )


@leaderboard.group("team")
def team() -> None:
    """Add, revoke and list teams (host token required)."""


@team.command("add")
@click.argument("name")
@_store_options
@_token_option("Host token.")
def team_add(name, db, data, as_json, token) -> None:
    """Add a team; prints its token (shown once)."""
    from benchmarks.leaderboard.teams import add_team

    team_token = add_team(_open(db, data), token, name)
    _emit(
        as_json,
        {"team": name, "token": team_token},
        f"team {name!r} added; its token (shown once):\n{team_token}",
    )


@team.command("revoke")
@click.argument("name")
@_store_options
@_token_option("Host token.")
def team_revoke(name, db, data, as_json, token) -> None:
    """Revoke a team's token (its recorded submissions stay)."""
    from benchmarks.leaderboard.teams import revoke_team

    revoke_team(_open(db, data), token, name)
    _emit(as_json, {"team": name, "revoked": True}, f"team {name!r} revoked")


@team.command("list")
@_store_options
@_token_option("Host token.")
def team_list(db, data, as_json, token) -> None:
    """List teams and their submission counts."""
    from benchmarks.leaderboard.teams import list_teams

    rows = list_teams(_open(db, data), token)
    text = (
        "\n".join(
            f"{r['name']}\t{r['submissions']} submission(s){'  (revoked)' if r['revoked'] else ''}"
            for r in rows
        )
        or "no teams"
    )
    _emit(as_json, rows, text)


@leaderboard.command("submit")
@click.argument("submission", type=click.Path(exists=True, dir_okay=False))
@click.option("--method", required=True, help="Method name shown in the standings.")
@click.option("--url", help="Paper or code URL (http/https).")
@click.option("--description", help="Free text.")
@click.option("--similarity", is_flag=True, help="The matrix holds similarities (higher is closer).")
@_store_options
@_token_option("Team token.")
def submit_cmd(submission, method, url, description, similarity, db, data, as_json, token) -> None:
    """Validate, score and record a submission; prints its public scores and the quota left."""
    from benchmarks.leaderboard.submissions import submit

    result = submit(
        _open(db, data),
        submission,
        token,
        method=method,
        url=url,
        description=description,
        similarity=similarity,
    )
    payload = result.to_json()
    metrics = ", ".join(f"{k} {v}" for k, v in payload["metrics"].items() if not k.startswith("num_"))
    _emit(
        as_json,
        payload,
        f"submission {result.submission_id} recorded for team {result.team!r}\n"
        f"public scores: {metrics}\n{result.quota.describe()}",
    )


@leaderboard.command("quota")
@_store_options
@_token_option("Team token.")
def quota_cmd(db, data, as_json, token) -> None:
    """Show the submissions a team has left."""
    from benchmarks.leaderboard.submissions import team_quota

    status = team_quota(_open(db, data), token)
    _emit(as_json, status.to_json(), status.describe())


def _standings(db, data, private: bool, token: str | None):
    from benchmarks.leaderboard.standings import compute_standings

    return compute_standings(_open(db, data), private=private, host_token=token)


def _text_table(standings) -> str:
    cols = standings.columns
    header = ["#", "team", "method", *cols] + ([f"private {c}" for c in cols] if standings.private else [])
    lines = [header]
    for r in standings.rows:
        row = ["base" if r.baseline else str(r.rank), r.team, r.method]
        row += ["" if r.metrics.get(c) is None else f"{r.metrics[c]:.4f}" for c in cols]
        if standings.private:
            row += [
                "" if (r.private_metrics or {}).get(c) is None else f"{r.private_metrics[c]:.4f}"
                for c in cols
            ]
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    title = f"{'PRIVATE' if standings.private else 'public'} standings, sorted by {standings.sort_metric}"
    return "\n".join([title, *out] if standings.rows else [title, "no submissions yet"])


@leaderboard.command("show")
@click.option("--private", is_flag=True, help="Host view: private scores (needs the host token).")
@_store_options
@_token_option("Host token (for --private).")
def show_cmd(private, db, data, as_json, token) -> None:
    """Print the standings (public unless --private)."""
    standings = _standings(db, data, private, token)
    _emit(as_json, standings.to_json(), _text_table(standings))


@leaderboard.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=EXPORT_FORMATS[0], show_default=True
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default stdout).")
@click.option("--private", is_flag=True, help="Host view: include private scores (needs the host token).")
@_store_options
@_token_option("Host token (for --private).")
def export_cmd(fmt, output, private, db, data, as_json, token) -> None:
    """Export the standings as CSV, JSON or Markdown."""
    from benchmarks.leaderboard.export import render
    from manifests import atomic_write_text

    text = render(_standings(db, data, private, token), fmt)
    if output:
        atomic_write_text(output, text)
        if as_json:
            click.echo(json.dumps({"output": str(output), "format": fmt}))
    else:
        click.echo(text, nl=False)


@leaderboard.command("baseline")
@click.argument("submission_id", type=int)
@click.option("--unset", is_flag=True, help="Remove the baseline flag.")
@_store_options
@_token_option("Host token.")
def baseline_cmd(submission_id, unset, db, data, as_json, token) -> None:
    """Flag a submission as a baseline row (e.g. the reference model)."""
    from benchmarks.leaderboard.submissions import set_baseline

    set_baseline(_open(db, data), token, submission_id, not unset)
    _emit(
        as_json,
        {"submission_id": submission_id, "baseline": not unset},
        f"submission {submission_id} {'is no longer' if unset else 'is now'} a baseline",
    )


@leaderboard.command("history")
@click.argument("team_name")
@_store_options
def history_cmd(team_name, db, data, as_json) -> None:
    """A team's submissions with their public scores."""
    from benchmarks.leaderboard.submissions import team_history

    rows = team_history(_open(db, data), team_name)
    text = (
        "\n".join(
            f"{r['id']}\t{r['submitted_at']}\t{r['method']}\t"
            + " ".join(f"{k}={v}" for k, v in r["metrics"].items() if not k.startswith("num_"))
            for r in rows
        )
        or "no submissions"
    )
    _emit(as_json, rows, text)


@leaderboard.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option(
    "--max-upload-mb",
    default=_WEB.max_upload_bytes / 2**20,
    type=float,
    show_default=True,
    help="Upload size limit (413 above).",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=_WEB.request_timeout_s,
    type=float,
    show_default=True,
    help="Request timeout in seconds.",
)
@click.option("--db", envvar=DB_ENV, help=f"Database file or URL (env {DB_ENV}).")
@click.option("--data", type=click.Path(file_okay=False), help="Built dataset OUT (db: OUT/leaderboard.db).")
def serve_cmd(host, port, max_upload_mb, timeout_s, db, data) -> None:
    """Serve the standings page, team histories, an upload form and a JSON API."""
    import uvicorn

    from benchmarks.leaderboard.web import create_app, install_log_redaction

    store = _open(db, data)
    with store.session() as session:
        store.board(session)  # fail now, not on the first request
    app = create_app(
        store, WebSettings(max_upload_bytes=int(max_upload_mb * 2**20), request_timeout_s=timeout_s)
    )
    install_log_redaction()
    click.echo(f"serving {store.display_url} on http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
