"""The `opreid` root: lazy registration, help, version, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from opreid.cli import _registry, cli
from opreid.version import __version__

HEAVY = ("torch", "torchvision", "ultralytics", "cv2", "pandas", "insightface", "matplotlib")


def test_help_lists_every_registered_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in _registry():
        assert name in result.output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_help_imports_no_heavy_module():
    code = (
        "import sys\n"
        "from opreid.cli import cli\n"
        "try:\n    cli.main(['--help'], prog_name='opreid', standalone_mode=True)\n"
        "except SystemExit:\n    pass\n"
        f"heavy=[m for m in {HEAVY!r} if m in sys.modules]\n"
        "sys.stderr.write(repr(heavy))\n"
        "sys.exit(3 if heavy else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_command_has_help():
    runner = CliRunner()
    for name in _registry():
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage" in result.output


def test_unknown_command_is_one_line_error():
    proc = subprocess.run(
        [sys.executable, "-m", "opreid.cli", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "opreid: error: No such command 'no-such-command'. (see 'opreid --help')"
    ]
