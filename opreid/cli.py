"""The `opreid` command: the composition root, and the one place where errors become exit codes.

Each package lists its commands in a light `<package>.cli.commands` (name -> "module:attribute"); the root
imports a command's module only when that command runs, so `opreid --help` stays free of torch,
ultralytics and friends. Nothing imports this module.

Error policy (docs/architecture.md): library code raises `manifests.OpreidError` subclasses, each
carrying an exit code; command bodies never catch them. `LazyGroup.main` reports every failure,
click's usage errors included, as one last stderr line `opreid <command>: error: <message>`.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

import click

from manifests.errors import ExitCode, OpreidError
from opreid.version import __version__

COMMAND_PACKAGES = ("opreid_builder", "reid_model", "benchmarks")


def _registry() -> dict[str, tuple[str, str]]:
    """Collect every package's `COMMANDS` table: name -> (import path, one-line help)."""
    table: dict[str, tuple[str, str]] = {}
    for package in COMMAND_PACKAGES:
        module = importlib.import_module(f"{package}.cli.commands")
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

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var=None,
             standalone_mode: bool = True, **extra):  # fmt: skip
        """Run the command line; every failure becomes one stderr line and a documented exit code."""
        argv = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(argv, prog_name or "opreid", complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else ExitCode.OK
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx else self.command_path_of(argv)
            code = _report(path, f"{exc.format_message()} (see '{path} --help')", ExitCode.USER)
        except click.ClickException as exc:  # click.FileError, BadParameter raised outside parsing
            code = _report(self.command_path_of(argv), exc.format_message(), ExitCode.USER)
        except OpreidError as exc:
            code = _report(self.command_path_of(argv), str(exc), exc.exit_code)
        except (KeyboardInterrupt, click.Abort):
            click.echo(f"{self.command_path_of(argv)}: interrupted", err=True)
            code = ExitCode.INTERRUPTED
        except OSError as exc:  # a file the command had to read or write: say which, and why
            where = f" ({exc.filename})" if exc.filename else ""
            code = _report(self.command_path_of(argv), f"{exc.strerror or exc}{where}", ExitCode.USER)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, never a traceback
            if _verbosity(argv) >= 2:  # -vv: the full traceback, for a bug report
                raise
            message = str(exc).splitlines()[0] if str(exc) else ""
            code = _report(
                self.command_path_of(argv),
                f"internal error: {type(exc).__name__}: {message} (a bug; rerun with -vv for the traceback)",
                ExitCode.INTERNAL,
            )
        if standalone_mode:
            sys.exit(int(code))
        return int(code)

    def command_path_of(self, argv: Sequence[str]) -> str:
        """`opreid <command> [<subcommand>]` named by argv (group options are flags, so words are names)."""
        names, command = ["opreid"], self
        words = [a for a in argv if not a.startswith("-")]
        while isinstance(command, click.Group) and words:
            sub = command.get_command(click.Context(command), words[0])
            if sub is None:
                break
            names.append(words.pop(0))
            command = sub
        return " ".join(names)


def _verbosity(argv: Sequence[str]) -> int:
    """How many -v the root was given (the options before the command name)."""
    count = 0
    for arg in argv:
        if not arg.startswith("-"):
            break
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


def _report(command_path: str, message: str, code: int) -> int:
    """The error policy's one line: always the last line of stderr."""
    text = " ".join(message.split()) or "failed"
    click.echo(f"{command_path}: error: {text}", err=True)
    return code


class CommandLogFormatter(logging.Formatter):
    """Log lines as `opreid <command>: warning: ...`, the same prefix as errors (logger name with -v)."""

    def __init__(self, command: str, with_logger: bool = False):
        super().__init__()
        self.command, self.with_logger = command, with_logger

    def format(self, record: logging.LogRecord) -> str:
        where = f" [{record.name}]" if self.with_logger else ""
        text = f"{self.command}: {record.levelname.lower()}{where}: {record.getMessage()}"
        if record.exc_info and self.with_logger:
            text += "\n" + self.formatException(record.exc_info)
        return text


@click.group("opreid", cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="opreid")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug and full tracebacks).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """opreid: occluded person re-identification benchmarks.

    Curate raw pedestrian crops into an OPReID-protocol benchmark, train the paper's reference
    model, and score submissions against hidden ground truth.

    Exit codes: 0 ok, 1 user error (usage, options, missing paths), 2 invalid input file
    (submission, manifest, release), 3 refused (quota, token, phase), 70 internal error.
    """
    command = " ".join(["opreid", *([ctx.invoked_subcommand] if ctx.invoked_subcommand else [])])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CommandLogFormatter(command, with_logger=verbose > 0))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, CommandLogFormatter)]
    level = logging.WARNING - 10 * min(verbose, 2)
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, level))  # never hide records another handler asked for


def main() -> None:
    """Entry point of the `opreid` console script."""
    cli.main(prog_name="opreid")


if __name__ == "__main__":
    main()
