"""One progress policy for every command: bars on stderr, shown when stderr is a terminal.

`--progress` forces bars on (e.g. in a log file, where they update at most every few seconds) and
`--no-progress` turns them off; without either, bars appear only on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
#: Seconds between two updates of a bar that is not drawn on a terminal.
LOG_INTERVAL_S = 10.0


def progress_enabled(requested: bool | None = None) -> bool:
    """The policy: an explicit choice wins; otherwise bars only when stderr is a terminal."""
    return sys.stderr.isatty() if requested is None else bool(requested)


def progress_bar(iterable: Iterable | None = None, *, enabled: bool, desc: str, total: int | None = None,
                 unit: str = "img", initial: int = 0):  # fmt: skip
    """A tqdm bar on stderr that leaves nothing behind; throttled when stderr is not a terminal."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        iterable, total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, leave=False,
        disable=not enabled, dynamic_ncols=tty, mininterval=0.1 if tty else LOG_INTERVAL_S,
    )  # fmt: skip


def progress_option(func: F) -> F:
    """The `--progress/--no-progress` option of every long-running command (default: on a terminal)."""
    import click

    return click.option(
        "--progress/--no-progress", default=None,
        help="Progress bars on stderr (default: only when stderr is a terminal).",
    )(func)  # fmt: skip
