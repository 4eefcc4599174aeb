"""Fixtures shared by the test modules (no test module imports another)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import support.leaderboard as lb
from click.testing import CliRunner, Result

#: Fixtures that build a real release or train a model: a test that asks for one is `slow` by that
#: fact alone (the default `-m "not slow"` run stays fast without each test remembering its marker).
SLOW_FIXTURES = frozenset({"built_release", "tiny_steps"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def run_opreid() -> Callable[..., Result]:
    """Run `opreid ARGS...` in process through the CLI root, as a user would (the root owns the error policy).

    The result has `exit_code`, `stdout` and `stderr` apart; the last stderr line of a failure is
    `opreid <command>: error: ...`.
    """
    from opreid.cli import cli

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
            from opreid_builder.synth.generator import SynthConfig
            from opreid_builder.synth.layouts import generate_layout

            out = tmp_path_factory.mktemp(f"layout-{fmt}")
            config = SynthConfig(identities=12, cameras=4, images_per_identity=(4, 8), seed=5)
            generate_layout(out, fmt, config)
            made[fmt] = out
        return made[fmt]

    return get


@pytest.fixture(scope="session")
def built_release(tmp_path_factory):
    """A small OPReID-protocol release built as a host would (`opreid synth` + `opreid build-split
    --keypoints`, through the CLI): real JPEGs, 20 train identities, 21 occluded queries, a private ground
    truth, and everything a host keeps (private/, masked/, cache/). Shared by the session: read-only
    (copy it before changing it)."""
    from opreid.cli import cli

    root = tmp_path_factory.mktemp("built_release")
    steps = (
        ["synth", root / "raw", "--identities", 60, "--cameras", 4, "--seed", 3],
        ["build-split", root / "raw", "-o", root / "rel", "--keypoints", root / "raw" / "keypoints.parquet",
         "--preset", "opreid", "--scale", 0.005, "--train-ids", 20, "--train-images", 200, "--seed", 2,
         "--no-progress"],
    )  # fmt: skip
    for args in steps:
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root / "rel"


#: Overrides that make a `tiny` training run take two steps of a few images (about a second on a CPU).
TINY_STEPS = (
    "input.height=64", "input.width=32", "data.ims_per_batch=8", "data.num_instance=2", "data.num_workers=0",
    "solver.iters_per_epoch=2", "solver.max_epochs=1", "solver.warmup_iters=2", "solver.freeze_iters=1",
    "solver.delay_epochs=1", "train.num_threads=1", "train.eval_at_start=false", "test.batch_size=32",
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_steps() -> tuple[str, ...]:
    """TINY_STEPS, for tests that train (a fixture, since test modules do not import each other)."""
    return TINY_STEPS


# ---- the leaderboard's stores, its scored dataset, and Chromium (builders in support/leaderboard.py)
@pytest.fixture(scope="session")
def postgres_server():
    bindir = lb.pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package "
                    "or set OPREID_TEST_PG_BIN")  # fmt: skip
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg (3) is not installed")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` user to run initdb as (initdb refuses root)")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and no `runuser` to drop to the postgres user")
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="opreid-pg-"))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    server = lb.PostgresServer(bindir, root, run_as)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a throwaway PostgreSQL server: {exc}")
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("OPREID_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        pytest.skip(
            f"no Chromium at {path}: install Debian's `chromium` package (or set OPREID_TEST_CHROMIUM)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright (python) is not installed")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db_url(request, tmp_path) -> str:
    """A fresh database: a SQLite file always; a PostgreSQL database too (slow) when a server can start."""
    if request.param == "sqlite":
        return str(tmp_path / "leaderboard.db")
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, dict]:
    """A tiny scored dataset (OUT with manifests and ground truth, and its pids/camids); a module
    may define its own `dataset`, which then takes precedence."""
    out = tmp_path / "OUT"
    return out, lb.make_dataset(out)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: its worker threads spin while they wait, so on a shared CPU a
    second one costs far more than it gives (the re-ranking tests' torch code runs on the CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
