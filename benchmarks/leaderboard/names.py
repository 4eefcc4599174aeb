"""The rules for the names and texts a leaderboard stores, and their escaping for a terminal.

Team names (the host types them) follow TEAM_NAME_RULE, the one statement of it that the error
message, `opreid leaderboard team add --help` and the README quote: plain ASCII with single spaces
inside, so that two teams never look alike on a page or in a terminal ("alpha" and "alpha ",
"alpha\\n", "a  b" and "a b" would). Names that differ only in case are refused too.

Method names, descriptions and URLs (the teams type them) may be any Unicode text but no control
character (ESC sequences and OSC titles rewrite a terminal), no bidi override or isolate (U+202E
turns the rest of a line around) and no other invisible format character. They are refused at
input; `printable()` escapes the same characters in what the CLI prints, for rows stored before
the rule or by another tool.
"""

from __future__ import annotations

import re
import unicodedata

from benchmarks.leaderboard.errors import LeaderboardError

TEAM_NAME_MAX = 64
TEAM_NAME_RULE = (
    f"1-{TEAM_NAME_MAX} ASCII letters, digits, spaces, '.', '_' or '-', starting with a letter or digit, "
    "with no space at the end and no two spaces in a row"
)
_TEAM_NAME = re.compile(rf"[A-Za-z0-9](?:[A-Za-z0-9._-]| (?! )){{0,{TEAM_NAME_MAX - 1}}}")
#: Control (Cc), format (Cf: bidi overrides and isolates, zero-width characters), surrogate,
#: private-use and unassigned code points, and the line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def check_team_name(name: str) -> str:
    """`name` when it follows TEAM_NAME_RULE; else a LeaderboardError quoting the rule."""
    if not isinstance(name, str) or not _TEAM_NAME.fullmatch(name) or name.endswith(" "):
        raise LeaderboardError(f"bad team name {name!r}: {TEAM_NAME_RULE}")
    return name


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def check_text(label: str, text: str, *, multiline: bool = False) -> str:
    """`text` when it holds no control, bidi or invisible format character (newlines and tabs allowed
    when `multiline`); else a LeaderboardError naming the characters, escaped."""
    allowed = "\n\t" if multiline else ""
    bad = sorted({c for c in text if _unsafe(c) and c not in allowed})
    if bad:
        shown = ", ".join(_escape(c) for c in bad)
        raise LeaderboardError(
            f"{label} contains control or invisible formatting characters ({shown}); remove them"
        )
    return text


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str | None) -> str:
    """`text` for a terminal: every control, bidi or invisible format character (newlines and tabs
    included) as a visible escape, e.g. ESC as `\\x1b` and U+202E as `\\u202e`."""
    if text is None:
        return ""
    return "".join(_escape(c) if _unsafe(c) else c for c in str(text))
