"""Standings as CSV, JSON or Markdown (public by default; the private view needs the host token)."""

from __future__ import annotations

import csv
import io
import json

from benchmarks.leaderboard.names import printable
from benchmarks.leaderboard.standings import Standings, metric_columns
from manifests import csv_cell

FORMATS = ("csv", "json", "md")


def _table(standings: Standings) -> tuple[list[str], list[list[object]]]:
    """One row per standing, every track (`full`, `top-K`), ranks counted within each track."""
    cols, every = standings.columns, standings.all_rows
    private_cols = metric_columns([r.private_metrics or {} for r in every]) if standings.private else []
    header = ["rank", "team", "method", "submitted_at", "baseline", "submissions", *cols]
    header += [f"private_{c}" for c in private_cols] + ["track", "phase", "url", "submission_id"]
    rows = []
    for r in every:
        row: list[object] = [
            "" if r.rank is None else r.rank,
            r.team,
            r.method,
            r.submitted_at.isoformat() + "Z",
            "yes" if r.baseline else "",
            r.submissions,
            *(r.metrics.get(c) for c in cols),
        ]
        row += [(r.private_metrics or {}).get(c) for c in private_cols]
        row += [r.track, standings.phase, r.url or "", r.submission_id]
        rows.append(row)
    return header, rows


#: Markdown's inline syntax (emphasis, code, links and images, strikethrough, tables, escapes):
#: backslash-escaped so that a name renders as the text it is.
_MD_SPECIAL = frozenset("\\`*_[]()!~|#")
#: HTML, which Markdown passes through: as entities, so no tag, autolink or entity survives.
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def _md_cell(value: object) -> str:
    """A cell's text as inert Markdown: no emphasis, link, image, HTML tag or table break; newlines
    as spaces; control and invisible formatting characters visibly escaped (`names.printable`)."""
    text = "" if value is None else str(value)
    text = printable(" ".join(text.splitlines()))
    return "".join(_HTML.get(c) or ("\\" + c if c in _MD_SPECIAL else c) for c in text)


def render(standings: Standings, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(standings.to_json(), indent=2, sort_keys=True) + "\n"
    header, rows = _table(standings)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[csv_cell(v) for v in row] for row in rows])
        return buf.getvalue()
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
