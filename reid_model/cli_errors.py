"""How the model's CLI commands report user mistakes: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import click

from manifests import ManifestError
from reid_model.errors import ReidModelError


@contextlib.contextmanager
def one_line_errors(command: str) -> Iterator[None]:
    try:
        yield
    except (ReidModelError, ManifestError) as exc:
        click.echo(f"opreid {command}: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"opreid {command}: interrupted", err=True)
        sys.exit(130)
