"""Builders of the leaderboard tests: a tiny scored dataset, a throwaway PostgreSQL server, Chromium.

The fixtures built on these (postgres_server, db_url, chromium_path, dataset) are in tests/conftest.py.

- The PostgreSQL server is started by the test session itself: `initdb` into a temp folder and
  `pg_ctl start` on a free 127.0.0.1 port (as user `postgres` when running as root, since initdb
  refuses root), one fresh database per test, stopped at session end. Binaries are looked up in
  $OPREID_TEST_PG_BIN, then /usr/lib/postgresql/*/bin, then PATH; missing ones skip with a reason.
- Chromium is Debian's /usr/bin/chromium (or $OPREID_TEST_CHROMIUM) driven by Playwright; no
  browser is ever downloaded.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from manifests import GALLERY, GROUND_TRUTH, QUERY, write_dataset_json, write_manifest

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@contextmanager
def chromium_page(chromium_path: str, timeout_ms: int = 20_000, **page_options) -> Iterator:
    """A page of a headless Debian Chromium driven by Playwright; the browser closes on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(**page_options)
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


# ---- a tiny dataset -----------------------------------------------------------------------------
def make_dataset(out: Path, num_queries: int = 20, num_distractors: int = 20, seed: int = 0) -> dict:
    """Q queries (one per identity, camera 0); per identity one occluded and one holistic gallery
    image on cameras 1-2; distractor identities fill the gallery (G = 2Q + distractors).
    Image ids are random hex so that a leaked id is unmistakable in page bytes."""
    rng = np.random.default_rng(seed)

    def ids(n: int) -> list[str]:
        return [f"{int(x):016x}" for x in rng.integers(1 << 60, 1 << 62, size=n)]

    q_ids = ids(num_queries)
    q_pids = np.arange(num_queries)
    g_pids = np.concatenate([np.repeat(q_pids, 2), 1000 + np.arange(num_distractors)])
    g_cams = np.concatenate([np.tile([1, 2], num_queries), rng.integers(0, 3, size=num_distractors)])
    g_occ = np.concatenate([np.tile([True, False], num_queries), rng.random(num_distractors) < 0.5])
    g_ids = ids(len(g_pids))
    write_manifest(
        {"image_id": q_ids, "path": [f"images/query/{i}.jpg" for i in q_ids], "camid": [0] * num_queries},
        out / "query.parquet", QUERY,
    )  # fmt: skip
    write_manifest(
        {"image_id": g_ids, "path": [f"images/gallery/{i}.jpg" for i in g_ids], "camid": g_cams.tolist()},
        out / "gallery.parquet", GALLERY,
    )  # fmt: skip
    write_manifest(
        {
            "image_id": q_ids + g_ids,
            "split": ["query"] * num_queries + ["gallery"] * len(g_ids),
            "pid": q_pids.tolist() + g_pids.tolist(),
            "camid": [0] * num_queries + g_cams.tolist(),
            "occluded": [True] * num_queries + g_occ.tolist(),
        },
        out / "private" / "ground_truth.parquet", GROUND_TRUTH,
    )  # fmt: skip
    write_dataset_json(out, {"counts": {"query": num_queries, "gallery": len(g_ids)}, "seed": seed})
    return {"query_ids": q_ids, "q_pids": q_pids, "g_pids": g_pids}


def distance_matrix(data: dict, quality: float, seed: int, good_rows: np.ndarray | None = None) -> np.ndarray:
    """A Q x G distance matrix whose true matches are pulled closer by `quality` (0 random, 1 perfect);
    with `good_rows`, only those queries get the pull (others stay random)."""
    rng = np.random.default_rng(seed)
    match = data["q_pids"][:, None] == data["g_pids"][None, :]
    dist = rng.random(match.shape)
    pull = np.full(len(data["q_pids"]), quality)
    if good_rows is not None:
        pull = np.where(good_rows, quality, 0.0)
    return (dist - match * pull[:, None]).astype(np.float32)


def write_submission(path: Path, matrix: np.ndarray) -> Path:
    np.save(path, matrix, allow_pickle=False)
    return path


# ---- PostgreSQL -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path | None:
    candidates = [os.environ.get("OPREID_TEST_PG_BIN", "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    which = shutil.which("initdb")
    candidates += [str(Path(which).parent)] if which else []
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


class PostgresServer:
    """A throwaway cluster on 127.0.0.1:port with trust auth; `new_database()` gives a fresh URL."""

    def __init__(self, bindir: Path, root: Path, run_as: str | None):
        self.bindir, self.root, self.run_as = bindir, root, run_as
        self.data, self.port = root / "data", free_port()
        self._counter = itertools.count()

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)

    def start(self) -> None:
        res = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync")  # fmt: skip
        if res.returncode:
            raise RuntimeError(f"initdb failed: {res.stderr.strip()[-500:]}")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")  # fmt: skip
        res = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                        "-o", opts, "-w", "-t", "60", "start")  # fmt: skip
        if res.returncode:
            log = (
                (self.root / "server.log").read_text(errors="replace")[-800:]
                if (self.root / "server.log").exists()
                else ""
            )
            raise RuntimeError(f"pg_ctl start failed: {res.stderr.strip()[-300:]} {log}")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        import psycopg

        name = f"lb_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


# ---- Chromium and a live server -------------------------------------------------------------------
class LiveServer:
    """uvicorn serving an ASGI app on 127.0.0.1:<free port> in a background thread, configured as
    `leaderboard serve` configures it (`settings`: its header deadline)."""

    def __init__(self, app, settings=None):
        import uvicorn

        from benchmarks.leaderboard.web import WebSettings, server_config

        self.port = free_port()
        config = server_config(
            app, settings or WebSettings(), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


# ---- a leaderboard on each store ------------------------------------------------------------------
