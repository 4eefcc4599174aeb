"""The error policy, walked over every command: one last stderr line `opreid <command>: error: ...` and
the documented exit code (1 user error, 2 invalid input file, 3 refused, 70 internal)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from manifests import ExitCode
from opreid.cli import cli


def _leaf_commands() -> list[str]:
    """Every runnable command path below the root, e.g. 'score', 'leaderboard team add'."""
    paths = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])
            else:
                paths.append(" ".join([*prefix, name]))

    walk(cli, [])
    return sorted(paths)


COMMANDS = _leaf_commands()

#: A bad argument per command: (arguments after the command path, exit code, text in the message).
#: Placeholders: EMPTY (an empty folder), NOWHERE (a missing path), JUNK (a file that is no submission).
BAD_INPUT = {
    "ablate": (["--config", "tiny", "--data", "NOWHERE", "-o", "out"], ExitCode.USER, "dataset folder not found"),
    "build-split": (["-o", "EMPTY", "--curated"], ExitCode.INVALID_INPUT, "images.parquet"),
    "check": (["JUNK", "--data", "EMPTY"], ExitCode.USER, "query.parquet: no such file"),
    "curate": (["EMPTY", "-o", "NOWHERE", "--keypoints", "JUNK"], ExitCode.INVALID_INPUT, "keypoints"),
    "export": (["EMPTY", "-o", "NOWHERE"], ExitCode.USER, "ground truth"),
    "import": (["market1501", "EMPTY", "-o", "NOWHERE"], ExitCode.USER, "missing folder"),
    "extract": (["--checkpoint", "NOWHERE", "--data", "EMPTY", "-o", "x.npy"], ExitCode.USER, "checkpoint not found"),
    "leaderboard baseline": (["1", "--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard export": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard history": (["alpha", "--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard init": (["--data", "EMPTY"], ExitCode.USER, "not a built dataset"),
    "leaderboard migrate": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard phase close": (["final", "--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard phase list": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard phase set": (["final", "--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard quota": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard reveal": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard select": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard serve": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard show": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard submit": (["JUNK", "--method", "m", "--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard team add": (["alpha", "--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard team list": (["--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "leaderboard team revoke": (["alpha", "--data", "EMPTY"], ExitCode.USER, "no leaderboard at"),
    "occlusion calibrate": (["--occluded", "EMPTY", "--holistic", "EMPTY", "--keypoints", "JUNK"],
                            ExitCode.INVALID_INPUT, "keypoints"),
    "occlusion fit": (["--occluded", "EMPTY", "--holistic", "EMPTY", "-o", "NOWHERE", "--keypoints", "JUNK"],
                      ExitCode.INVALID_INPUT, "keypoints"),
    "release pack": (["EMPTY", "-o", "NOWHERE"], ExitCode.INVALID_INPUT, "dataset.json: no such file"),
    "report": (["NOWHERE"], ExitCode.USER, "run folder not found"),
    "review": (["EMPTY"], ExitCode.INVALID_INPUT, "images.parquet"),
    "score": (["JUNK", "--data", "EMPTY"], ExitCode.USER, "query.parquet: no such file"),
    "synth": (["NOWHERE", "--identities", "0"], ExitCode.USER, "identities"),
    "train": (["--config", "tiny", "--data", "NOWHERE", "-o", "run"], ExitCode.USER, "dataset folder not found"),
    "validate": (["EMPTY"], ExitCode.INVALID_INPUT, "violation(s)"),
}  # fmt: skip


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.bin").write_bytes(b"not what it claims to be")
    return {
        "EMPTY": str(tmp_path / "empty"),
        "NOWHERE": str(tmp_path / "nowhere"),
        "JUNK": str(tmp_path / "junk.bin"),
    }


def test_every_command_has_a_bad_input_case():
    assert sorted(BAD_INPUT) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_is_a_user_error_with_the_command_prefix(command, run_opreid, expect_error):
    result = run_opreid(*command.split(), "--no-such-option")
    expect_error(result, f"opreid {command}", ExitCode.USER, "No such option '--no-such-option'")
    assert result.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.slow
def test_bad_input_follows_the_policy(command, places, run_opreid, expect_error, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPREID_LEADERBOARD_DB", raising=False)
    monkeypatch.delenv("OPREID_LEADERBOARD_TOKEN", raising=False)
    args, code, fragment = BAD_INPUT[command]
    result = run_opreid(*command.split(), *[places.get(a, a) for a in args])
    expect_error(result, f"opreid {command}", code, fragment)


@pytest.mark.parametrize(
    "group", ["leaderboard", "leaderboard team", "leaderboard phase", "occlusion", "release"]
)
def test_unknown_subcommand_names_its_group(group, run_opreid, expect_error):
    expect_error(
        run_opreid(*group.split(), "nope"), f"opreid {group}", ExitCode.USER, "No such command 'nope'"
    )


def test_a_bug_is_an_internal_error_without_traceback(places, run_opreid, expect_error, monkeypatch):
    import opreid_builder.release.validate as validate_module

    def broken(out):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(validate_module, "validate", broken)
    result = run_opreid("validate", places["EMPTY"])
    expect_error(result, "opreid validate", ExitCode.INTERNAL, "internal error: ZeroDivisionError", "-vv")
    assert len(result.stderr.splitlines()) == 1


def test_an_unwritable_output_is_a_user_error_naming_the_file(tmp_path, run_opreid, expect_error):
    np.save(tmp_path / "d.npy", np.zeros((2, 2), np.float32))
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_opreid("synth", blocker / "raw", "--identities", "2", "--cameras", "2")
    expect_error(result, "opreid synth", ExitCode.USER, str(blocker))


@pytest.mark.slow
def test_the_console_script_prints_one_line_and_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "opreid"
    proc = subprocess.run([str(exe), "validate", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.INVALID_INPUT
    assert proc.stderr.splitlines()[-1].startswith("opreid validate: error: ")
    assert "Traceback" not in proc.stderr


#: Commands whose output is not a result a machine reads (a server's log).
NO_JSON = {"leaderboard serve"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_reports_a_result_has_json(command):
    group, ctx = cli, click.Context(cli)
    *groups, name = command.split()
    for part in groups:
        group = group.get_command(ctx, part)
    options = {opt for param in group.get_command(ctx, name).params for opt in getattr(param, "opts", [])}
    assert ("--json" in options) != (command in NO_JSON), command
