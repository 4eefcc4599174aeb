"""Result tables as text: Markdown (pipe tables, for reading and pasting) or CSV (for spreadsheets).

Shared by `opreid report` and `opreid ablate`. Cells are typed (bool, number, text, None) and
formatted per format: a component switch is a check mark in Markdown and true/false in CSV;
metrics are percentages with one decimal, as the paper prints them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

#: The text formats of `opreid report` and `opreid ablate` (`--format`); the first is the default.
FORMATS = ("markdown", "csv")
CHECK = "✓"


def percent(value: float | None) -> float | None:
    """A metric fraction as a percentage (the paper's unit); None stays None."""
    return None if value is None else 100.0 * value


def signed(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:+.{digits}f}"


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return (CHECK if value else "") if fmt == "markdown" else str(value).lower()
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """The table in `fmt` (one of FORMATS), ending with a newline."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}")
    cells = [[_cell(v, fmt) for v in row] for row in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(cells)
        return buf.getvalue()

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    out = [line(headers), "|" + "|".join("---" for _ in headers) + "|"]
    out.extend(line(row) for row in cells)
    return "\n".join(out) + "\n"
