"""CSV cells a spreadsheet opens as data, never as a formula.

Excel, LibreOffice and Google Sheets run a cell that starts with `=`, `+`, `-` or `@` as a formula
(`=HYPERLINK(...)`, `=cmd|...`), and skip a leading tab or carriage return before looking. A CSV
we write can carry text others chose (file names, team and method names, reviewer names), so every
such text cell gets a leading `'`, which spreadsheets read as "this is text". Numbers stay numbers.
"""

from __future__ import annotations

#: First characters that make a spreadsheet read a text cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """`value` as a CSV cell: None as empty, text that would run as a formula behind a leading quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
