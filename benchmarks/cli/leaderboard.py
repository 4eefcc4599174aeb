"""`opreid leaderboard ...`: create a leaderboard, manage teams and phases, submit, select, show,
reveal, export, serve.

The database is `--db PATH|URL`, else $OPREID_LEADERBOARD_DB, else the leaderboard of the release
`--data OUT` (the one `init` recorded, by default `OUT.host/leaderboard.db`: outside the release).
Tokens come from `--token` or $OPREID_LEADERBOARD_TOKEN (the variable keeps them out of shell
history and `ps`). Times are UTC, ISO 8601 (`2025-03-01`, `2025-03-01T12:00`, `...Z`). Exit codes
follow the error policy: 1 error, 2 invalid submission (no quota used), 3 refused (quota exhausted,
bad or missing token, no phase open, private board not revealed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click

from benchmarks.cli.submission_options import metric_option, similarity_option
from benchmarks.leaderboard.export import FORMATS as EXPORT_FORMATS
from benchmarks.leaderboard.names import TEAM_NAME_RULE, printable
from benchmarks.leaderboard.settings import BoardSettings, WebSettings
from benchmarks.leaderboard.store import PHASES, Store

_BOARD = BoardSettings()
_WEB = WebSettings()
TOKEN_ENV = "OPREID_LEADERBOARD_TOKEN"
DB_ENV = "OPREID_LEADERBOARD_DB"


class UtcTime(click.ParamType):
    """An ISO 8601 date or date-time; with an offset it is converted, without one it is UTC."""

    name = "UTC-TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or time (e.g. 2025-03-01 or 2025-03-01T12:00Z)")
        if parsed.tzinfo is not None:
            try:
                parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
            except OverflowError:  # year 1 or 9999 shifted out of datetime's range by its offset
                self.fail(f"{value!r} is out of range in UTC (0001-01-01 to 9999-12-31)")
        return parsed


def _open(db: str | None, data: str | None) -> Store:
    from benchmarks.leaderboard.board import open_store

    return open_store(db, data)


def _store_options(fn: Callable) -> Callable:
    fn = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")(fn)
    fn = click.option(
        "--data", type=click.Path(file_okay=False), help="Built dataset OUT (its recorded leaderboard)."
    )(fn)
    fn = click.option("--db", envvar=DB_ENV, help=f"Database file or URL (env {DB_ENV}).")(fn)
    return fn


def _token_option(help_text: str) -> Callable:
    return click.option("--token", envvar=TOKEN_ENV, show_envvar=True, help=help_text)


def _phase_option(fn: Callable) -> Callable:
    return click.option(
        "--phase", type=click.Choice(PHASES), default=None,
        help="Phase to show (default: the open one, else the latest that has begun).",
    )(fn)  # fmt: skip


def _emit(as_json: bool, payload: Any, text: str) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True) if as_json else text)


@click.group("leaderboard")
def leaderboard() -> None:
    """Run a leaderboard: teams, quotas, phases, a hidden public/private split, a web page."""


@leaderboard.command("init")
@click.option(
    "--data", required=True, type=click.Path(exists=True, file_okay=False), help="Built dataset OUT."
)
@click.option("--db", envvar=DB_ENV, help="Database file or URL (default HOST_DIR/leaderboard.db).")
@click.option(
    "--host-dir", type=click.Path(file_okay=False),
    help="Host folder for the database, outside the release (default: OUT.host/ beside OUT, mode 0700).",
)  # fmt: skip
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
@click.option(
    "--selection-limit", type=click.IntRange(min=1), default=_BOARD.selection_limit, show_default=True,
    help="Submissions a team may select for the private board, per phase.",
)  # fmt: skip
@click.option("--dev-start", type=UtcTime(), help="Development phase start (default: open now).")
@click.option("--dev-end", type=UtcTime(), help="Development phase end (default: when final starts).")
@click.option("--final-start", type=UtcTime(), help="Final phase start (default: scheduled later).")
@click.option("--final-end", type=UtcTime(), help="Final phase end (default: until the host closes it).")
@click.option("--seed", type=int, default=None, help="Seed of the hidden split (default: random and secret).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def init_cmd(data, db, host_dir, name, sort_metric, daily_quota, total_quota, private_fraction,
             selection_limit, dev_start, dev_end, final_start, final_end, seed, as_json) -> None:  # fmt: skip
    """Create a leaderboard for a built dataset; prints where its database is and the host token (shown once)."""
    from benchmarks.leaderboard.board import init_board

    settings = BoardSettings(
        name=name, sort_metric=sort_metric, daily_quota=daily_quota or None, total_quota=total_quota or None,
        private_fraction=private_fraction, seed=seed, selection_limit=selection_limit,
        dev_start=dev_start, dev_end=dev_end, final_start=final_start, final_end=final_end,
    )  # fmt: skip
    result = init_board(data, settings, db=db, host_dir=host_dir)
    reach = (
        f"outside the release; `--data {data}` finds it"
        if result.is_file
        else "pass --db with its URL, or set OPREID_LEADERBOARD_DB, to reach it"
    )
    _emit(
        as_json,
        result.to_json(),
        f"leaderboard created in {result.db} ({reach})\nhost token (keep it secret; shown once):\n{result.host_token}",
    )


@leaderboard.command("migrate")
@_store_options
@_token_option("Host token.")
def migrate_cmd(db, data, as_json, token) -> None:
    """Upgrade a database made by an older opreid in place (back it up first)."""
    from benchmarks.leaderboard.migrate import migrate

    result = migrate(_open(db, data), token)
    text = (
        f"{result['db']}: upgraded from schema {result['from']} to {result['to']}"
        if result["migrated"]
        else f"{result['db']}: already at schema {result['to']}"
    )
    _emit(as_json, result, text)


# ---- teams --------------------------------------------------------------------------------------
@leaderboard.group("team")
def team() -> None:
    """Add, revoke and list teams (host token required)."""


@team.command("add", help=f"Add a team; prints its token (shown once). NAME: {TEAM_NAME_RULE}.")
@click.argument("name")
@_store_options
@_token_option("Host token.")
def team_add(name, db, data, as_json, token) -> None:
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
            f"{printable(r['name'])}\t{r['submissions']} submission(s){'  (revoked)' if r['revoked'] else ''}"
            for r in rows
        )
        or "no teams"
    )
    _emit(as_json, rows, text)


# ---- phases -------------------------------------------------------------------------------------
@leaderboard.group("phase")
def phase() -> None:
    """Show, schedule and close the development and final phases."""


def _phases_text(rows: list[dict]) -> str:
    def when(value: str | None, none: str) -> str:
        return none if value is None else value.replace("T", " ")[:16] + " UTC"

    return "\n".join(
        f"{r['name']:<12} {r['state']:<12} "
        + ("" if r["state"] == "unscheduled" else
           f"{when(r['starts_at'], 'from the start')} - {when(r['ends_at'], 'until closed')}")
        for r in rows
    )  # fmt: skip


@phase.command("list")
@_store_options
def phase_list(db, data, as_json) -> None:
    """The phases, their dates and their state now."""
    from benchmarks.leaderboard.board import board_info

    rows = board_info(_open(db, data))["phases"]
    _emit(as_json, rows, _phases_text(rows))


@phase.command("set")
@click.argument("name", type=click.Choice(PHASES))
@click.option("--start", type=UtcTime(), help="New start (UTC).")
@click.option("--end", type=UtcTime(), help="New end (UTC); a past end closes the phase.")
@click.option("--no-end", is_flag=True, help="Remove the end: open until the host closes it.")
@_store_options
@_token_option("Host token.")
def phase_set(name, start, end, no_end, db, data, as_json, token) -> None:
    """Schedule a phase (host). Scheduling final ends an open-ended development phase when final starts."""
    from benchmarks.leaderboard.phases import set_phase

    rows = set_phase(_open(db, data), token, name, starts_at=start, ends_at=end, clear_end=no_end)
    _emit(as_json, rows, _phases_text(rows))


@phase.command("close")
@click.argument("name", type=click.Choice(PHASES))
@_store_options
@_token_option("Host token.")
def phase_close(name, db, data, as_json, token) -> None:
    """Close an open phase now (host): no more submissions or selections in it."""
    from benchmarks.leaderboard.phases import close_phase

    rows = close_phase(_open(db, data), token, name)
    _emit(as_json, rows, _phases_text(rows))


@leaderboard.command("reveal")
@click.option(
    "--wait", "wait_s", type=click.FloatRange(min=0), default=0, show_default=True,
    help="Seconds to wait for submissions received before the final phase closed and still being scored "
    "(else the reveal is refused while they are).",
)  # fmt: skip
@_store_options
@_token_option("Host token.")
def reveal_cmd(wait_s, db, data, as_json, token) -> None:
    """Make the final phase's private standings public (host; only after the final phase has closed)."""
    from benchmarks.leaderboard.phases import reveal

    when = reveal(_open(db, data), token, wait_s=wait_s)
    stamp = when.isoformat() + "Z"
    _emit(as_json, {"revealed_at": stamp}, f"private standings revealed ({stamp}); "
          "`opreid leaderboard show --private --phase final` now shows them to anyone")  # fmt: skip


# ---- teams' commands ----------------------------------------------------------------------------
@leaderboard.command("submit")
@click.argument("submission", type=click.Path(exists=True, dir_okay=False))
@click.option("--method", required=True, help="Method name shown in the standings.")
@click.option("--url", help="Paper or code URL (http/https).")
@click.option("--description", help="Free text.")
@similarity_option
@metric_option
@_store_options
@_token_option("Team token.")
def submit_cmd(submission, method, url, description, similarity, metric, db, data, as_json, token) -> None:
    """Validate, score and record a submission; prints its public scores and the quota left."""
    from benchmarks.leaderboard.submissions import submit

    result = submit(
        _open(db, data), submission, token, method=method, url=url, description=description,
        similarity=similarity, metric=metric,
    )  # fmt: skip
    payload = result.to_json()
    metrics = ", ".join(f"{k} {v}" for k, v in payload["metrics"].items() if not k.startswith("num_"))
    track = "" if result.truncated_at is None else f" (ranked list: track {result.track}, ranked apart)"
    _emit(
        as_json,
        payload,
        f"submission {result.submission_id} recorded for team {result.team!r} in the {result.phase} "
        f"phase{track}\npublic scores: {metrics}\n{result.quota.describe()}",
    )


@leaderboard.command("quota")
@_store_options
@_token_option("Team token.")
def quota_cmd(db, data, as_json, token) -> None:
    """Show the submissions a team has left."""
    from benchmarks.leaderboard.submissions import team_quota

    status = team_quota(_open(db, data), token)
    _emit(as_json, status.to_json(), status.describe())


def _selection_text(status: dict) -> str:
    lines = [
        f"team {status['team']!r}, {status['phase']} phase: {len(status['selected'])} of at most "
        f"{status['limit']} selected{' (frozen: the phase is closed)' if status['frozen'] else ''}",
        "counts for the private board:" if status["counts"] else "no submission yet in this phase",
    ]
    for c in status["counts"]:
        score = " ".join(f"{k}={v}" for k, v in c["metrics"].items() if not k.startswith("num_"))
        lines.append(
            f"  {c['submission_id']}\t{c['track']}\t{printable(c['method'])}\t{c['reason']}\t{score}"
        )
    return "\n".join(lines)


@leaderboard.command("select")
@click.argument("submission_ids", nargs=-1, type=int)
@click.option("--clear", is_flag=True, help="Select nothing: the best public submission counts.")
@_store_options
@_token_option("Team token.")
def select_cmd(submission_ids, clear, db, data, as_json, token) -> None:
    """Choose the submissions that count for the private board (none given: show what counts)."""
    from benchmarks.leaderboard.selection import update_selection

    status = update_selection(_open(db, data), token, submission_ids, clear=clear)
    _emit(as_json, status, _selection_text(status))


@leaderboard.command("history")
@click.argument("team_name", required=False)
@_store_options
@_token_option("Team token (its own history) or host token (any team's).")
def history_cmd(team_name, db, data, as_json, token) -> None:
    """A team's submissions with their public scores and what counts (that team or the host only)."""
    from benchmarks.leaderboard.submissions import team_history

    rows = team_history(_open(db, data), token, team_name)
    text = (
        "\n".join(
            f"{r['id']}\t{r['submitted_at']}\t{r['phase']}\t{r['track']}\t{printable(r['method'])}\t"
            + " ".join(f"{k}={v}" for k, v in r["metrics"].items() if not k.startswith("num_"))
            + ("\tcounts" if r["counts"] else "")
            for r in rows
        )
        or "no submissions"
    )
    _emit(as_json, rows, text)


# ---- standings ----------------------------------------------------------------------------------
def _standings(db, data, private: bool, token: str | None, phase: str | None):
    from benchmarks.leaderboard.standings import compute_standings

    return compute_standings(_open(db, data), private=private, host_token=token, phase=phase)


def _text_table(standings) -> str:
    cols = standings.columns
    view = "PRIVATE" if standings.private else "public"
    title = f"{view} standings, {standings.phase} phase, sorted by {standings.sort_metric}"
    if not standings.all_rows:
        return "\n".join([title, "no submissions yet"])
    out = [title]
    for track, rows in standings.tracks.items():
        header = ["#", "team", "method", *cols]
        header += [f"private {c}" for c in cols] if standings.private else []
        lines = [header]
        for r in rows:
            row = ["base" if r.baseline else str(r.rank), printable(r.team), printable(r.method)]
            row += ["" if r.metrics.get(c) is None else f"{r.metrics[c]:.4f}" for c in cols]
            if standings.private:
                private = r.private_metrics or {}
                row += ["" if private.get(c) is None else f"{private[c]:.4f}" for c in cols]
            lines.append(row)
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        if track != "full":
            out.append(f"ranked lists, {track} (metrics truncated at K; ranked apart):")
        out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(out)


@leaderboard.command("show")
@click.option("--private", is_flag=True, help="Private scores: the host's, or anyone's once revealed.")
@_phase_option
@_store_options
@_token_option("Host token (for --private before the reveal).")
def show_cmd(private, phase, db, data, as_json, token) -> None:
    """Print the standings (public unless --private)."""
    standings = _standings(db, data, private, token, phase)
    _emit(as_json, standings.to_json(), _text_table(standings))


@leaderboard.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=EXPORT_FORMATS[0], show_default=True
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default stdout).")
@click.option(
    "--private", is_flag=True, help="Include private scores (the host's, or anyone's once revealed)."
)
@_phase_option
@_store_options
@_token_option("Host token (for --private before the reveal).")
def export_cmd(fmt, output, private, phase, db, data, as_json, token) -> None:
    """Export the standings as CSV, JSON or Markdown."""
    from benchmarks.leaderboard.export import render
    from manifests import atomic_write_text

    text = render(_standings(db, data, private, token, phase), fmt)
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
    type=click.FloatRange(min=0, min_open=True),
    show_default=True,
    help="Request timeout in seconds.",
)
@click.option(
    "--header-timeout",
    "header_timeout_s",
    default=_WEB.header_timeout_s,
    type=click.FloatRange(min=0, min_open=True),
    show_default=True,
    help="Seconds a connection may take to send a request's headers (at most --timeout); then it is closed.",
)
@click.option("--db", envvar=DB_ENV, help=f"Database file or URL (env {DB_ENV}).")
@click.option(
    "--data", type=click.Path(file_okay=False), help="Built dataset OUT (its recorded leaderboard)."
)
def serve_cmd(host, port, max_upload_mb, timeout_s, header_timeout_s, db, data) -> None:
    """Serve the standings page, the team and host pages, an upload form and a JSON API."""
    import uvicorn

    from benchmarks.leaderboard.web import create_app, install_log_redaction, server_config

    store = _open(db, data)
    with store.session() as session:
        store.board(session)  # fail now, not on the first request
    settings = WebSettings(
        max_upload_bytes=int(max_upload_mb * 2**20),
        request_timeout_s=timeout_s,
        header_timeout_s=header_timeout_s,
    )
    app = create_app(store, settings)
    install_log_redaction()
    click.echo(f"serving {store.display_url} on http://{host}:{port}/", err=True)
    uvicorn.Server(server_config(app, settings, host=host, port=port)).run()
