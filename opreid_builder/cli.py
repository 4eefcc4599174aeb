"""The `opreid` command: the composition root.

Each package lists its commands in a light `commands.py` (name -> "module:attribute"); the root
imports a command's module only when that command runs, so `opreid --help` stays free of torch,
ultralytics and friends. Nothing imports this module.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from opreid_builder.version import __version__

COMMAND_PACKAGES = ("opreid_builder", "reid_model", "benchmarks")


def _registry() -> dict[str, tuple[str, str]]:
    """Collect every package's `COMMANDS` table: name -> (import path, one-line help)."""
    table: dict[str, tuple[str, str]] = {}
    for package in COMMAND_PACKAGES:
        try:
            module = importlib.import_module(f"{package}.commands")
        except ModuleNotFoundError as exc:  # a package without commands yet
            if exc.name != f"{package}.commands":
                raise
            continue
        for name, spec in module.COMMANDS.items():
            if name in table:
                raise RuntimeError(f"command {name!r} registered twice")
            table[name] = spec
    return table


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = _registry()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            target, _ = self._lazy[cmd_name]
            module_name, attr = target.split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the registry so that listing commands imports none of them.
        rows = [(name, self._lazy[name][1]) for name in sorted(self._lazy)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="opreid")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """opreid: occluded person re-identification benchmarks.

    Curate raw pedestrian crops into an OPReID-protocol benchmark, train the paper's reference
    model, and score submissions against hidden ground truth.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main() -> None:
    """Entry point: a user mistake or an unexpected failure is one line on stderr, never a traceback.

    Commands turn their own typed errors into exit codes; anything that escapes them is reported
    here (exit 1) with a pointer to `-vv`, which re-raises for a full traceback.
    """
    try:
        cli.main(prog_name="opreid", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("opreid: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the CLI
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        click.echo(f"opreid: error: {message} ({type(exc).__name__}; rerun with -vv for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
