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
def synth_layout(tmp_path_factory) -> Callable:
    """`opreid synth OUT --layout FORMAT` (12 identities, 4 cameras), made once per format and session.

    Returns OUT: the dataset folder under it, `truth.parquet` and `keypoints.parquet` beside it.
    Shared: copy it (shutil.copytree) before breaking it.
    """
    made: dict = {}

    def get(fmt: str):
        if fmt not in made:
            from opreid_builder.synth import SynthConfig
            from opreid_builder.synth_layouts import generate_layout

            out = tmp_path_factory.mktemp(f"layout-{fmt}")
            config = SynthConfig(identities=12, cameras=4, images_per_identity=(4, 8), seed=5)
            generate_layout(out, fmt, config)
            made[fmt] = out
        return made[fmt]

    return get


@pytest.fixture(scope="session")
def built_release(tmp_path_factory):
    """A small real release (synth -> build-split, through the CLI as a host types it: real JPEGs, ground
    truth, occlusion flags): a folder that holds everything a host has (private/, masked/, cache/).
    Shared by the session, so tests must not change it (copy it first)."""
    from opreid_builder.cli import cli

    root = tmp_path_factory.mktemp("built")
    raw, out = root / "raw", root / "release"
    for args in (
        ["synth", raw, "--identities", "50", "--cameras", "4", "--seed", "1", "--workers", "1"],
        ["build-split", raw, "-o", out, "--keypoints", raw / "keypoints.parquet", "--preset", "opreid",
         "--scale", "0.005", "--seed", "1", "--no-progress"],
    ):  # fmt: skip
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return out
