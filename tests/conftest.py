"""Fixtures shared by the test modules (no test module imports another)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result


@pytest.fixture
def run_opreid() -> Callable[..., Result]:
    """Run `opreid ARGS...` in process through the CLI root, as a user would (the root owns the error policy).

    The result has `exit_code`, `stdout` and `stderr` apart; the last stderr line of a failure is
    `opreid <command>: error: ...`.
    """
    from opreid_builder.cli import cli

    def run(*args, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env, catch_exceptions=False)

    return run


@pytest.fixture
def expect_error() -> Callable[..., str]:
    """Check a failed run against the error policy; returns the message after the prefix."""

    def check(result: Result, command: str, exit_code: int, *fragments: str) -> str:
        assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
        last = result.stderr.rstrip("\n").splitlines()[-1]
        prefix = f"{command}: error: "
        assert last.startswith(prefix), last
        for fragment in fragments:
            assert fragment in last, (fragment, last)
        return last[len(prefix) :]

    return check


@pytest.fixture(scope="session")
def synth_release(tmp_path_factory):
    """A small release built from `opreid synth` crops (real JPEGs, ground truth, occlusion flags), in
    about 10 s; shared by the session, so tests must not change it. Returns the release folder."""
    from opreid_builder.cli import cli

    root = tmp_path_factory.mktemp("synth_release")
    steps = (
        ["synth", root / "raw", "--identities", 40, "--cameras", 4, "--seed", 3],
        ["build-split", root / "raw", "-o", root / "rel", "--keypoints", root / "raw/keypoints.parquet",
         "--preset", "opreid", "--scale", 0.004, "--seed", 2, "--no-progress"],
    )  # fmt: skip
    for args in steps:
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root / "rel"
