"""The local and Ray engines: identical outputs, resume after kill -9 of the driver or of a Ray worker
(on either engine, and across engines), and a one-line error when Ray is not installed.

Ray runs go through the CLI in a subprocess (each starts its own local cluster, as a user's would).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support.curation import make_synth

import manifests

OPREID = Path(sys.executable).parent / "opreid"
POSE_MODEL = os.environ.get("OPREID_TEST_POSE_MODEL")


def _has_ray() -> bool:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not _has_ray(), reason="Ray is not installed (pip install 'opreid[ray]')")


def _curate_args(raw: Path, out: Path, *extra) -> list[str]:
    return [str(OPREID), "curate", str(raw), "-o", str(out), "--no-progress", *map(str, extra)]


def _curate(raw: Path, out: Path, *extra) -> None:
    proc = subprocess.run(_curate_args(raw, out, *extra), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _files(out: Path) -> dict[str, bytes]:
    """images.parquet and every masked crop, byte for byte."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "masked").glob("*.jpg"))}
    files["images.parquet"] = (out / "private" / "images.parquet").read_bytes()
    return files


def _mask_shards(out: Path) -> int:
    return len(list((out / "cache" / "shards" / "masks").glob("*/*.parquet")))


def _descendants(pid: int) -> list[int]:
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _run_and_kill(args: list[str], out: Path, victim: str | None) -> int:
    """Start a curate run and SIGKILL its driver once a shard has finished (victim None), or the
    first of its Ray workers whose command line holds `victim` once one does. Returns the driver's
    exit status."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "nothing to kill within 300 s"
            if victim is None and _mask_shards(out) >= 1:
                target = proc.pid
                break
            workers = [p for p in _descendants(proc.pid) if victim and victim in _cmdline(p)]
            if workers:
                target = workers[0]
                break
            time.sleep(0.02)
        assert not (out / "private" / "images.parquet").exists(), "the run ended before the kill"
        os.kill(target, signal.SIGKILL)
        return proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """About 150 synth crops, plus a duplicate and an unreadable file, so every status crosses the engines."""
    raw = make_synth(tmp_path_factory.mktemp("engines") / "raw", identities=20, cameras=3, seed=11)
    first = sorted(raw.glob("*.jpg"))[0]
    (raw / "0999_c1s1_000001_00.jpg").write_bytes(first.read_bytes())
    (raw / "0999_c2s1_000002_00.jpg").write_bytes(b"")
    return raw


@pytest.fixture(scope="module")
def clean(raw, tmp_path_factory) -> dict[str, bytes]:
    """The local engine's files, run once without interruption."""
    out = tmp_path_factory.mktemp("clean") / "out"
    _curate(raw, out, "--keypoints", raw / "keypoints.parquet", "--shard-size", 4, "--batch-size", 4)
    return _files(out)


def test_ray_engine_without_ray_is_one_line_error(tmp_path, run_opreid, expect_error, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    raw = make_synth(tmp_path / "raw", identities=2, cameras=2, seed=1)
    result = run_opreid(
        "curate", raw, "-o", tmp_path / "out", "--keypoints", raw / "keypoints.parquet", "--engine", "ray"
    )
    expect_error(result, "opreid curate", 1, "--engine ray", "pip install 'opreid[ray]'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "private").exists()  # refused before any work


@pytest.mark.slow
@needs_ray
def test_ray_driver_killed_then_rerun_with_local_is_identical(raw, clean, tmp_path):
    out = tmp_path / "out"
    args = ["--keypoints", raw / "keypoints.parquet", "--shard-size", 4, "--batch-size", 4]
    status = _run_and_kill(_curate_args(raw, out, *args, "--engine", "ray"), out, victim=None)
    assert status == -signal.SIGKILL
    done = _mask_shards(out)
    _curate(raw, out, *args)  # across engines: the local engine finishes what Ray started
    assert _files(out) == clean
    assert done >= 1


@pytest.mark.slow
@needs_ray
def test_ray_worker_killed_then_rerun_is_identical(raw, clean, tmp_path):
    out = tmp_path / "out"
    args = ["--keypoints", raw / "keypoints.parquet", "--shard-size", 4, "--batch-size", 4, "--engine", "ray"]
    _run_and_kill(_curate_args(raw, out, *args), out, victim="MapBatches(FaceStage)).submit")  # while at work
    # Ray restarts the actor and retries its batch, so the run usually completes; either way a rerun
    # (which recomputes nothing that finished) gives the same files as the uninterrupted local run.
    _curate(raw, out, *args)
    assert _files(out) == clean


KILL_LOCAL = """
import os, signal, sys
from pathlib import Path
import opreid_builder.curation.stages as st
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.pipeline import curate
real, count = st.encode_jpeg, [0]
def encode(*a, **k):
    count[0] += 1
    if count[0] > int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
st.encode_jpeg = encode
raw = Path(sys.argv[1])
config = CurateConfig(keypoints=str(raw / "keypoints.parquet"), shard_size=4, batch_size=4)
curate(raw, Path(sys.argv[2]), config, progress=False)
"""


@pytest.mark.slow
@needs_ray
def test_local_driver_killed_then_rerun_with_ray_is_identical(raw, clean, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_LOCAL, str(raw), str(out), "50"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _mask_shards(out) >= 1 and not (out / "private" / "images.parquet").exists()
    _curate(
        raw,
        out,
        "--keypoints",
        raw / "keypoints.parquet",
        "--shard-size",
        4,
        "--batch-size",
        4,
        "--engine",
        "ray",
    )
    assert _files(out) == clean


@pytest.mark.slow
@pytest.mark.integration
@needs_ray
@pytest.mark.skipif(not POSE_MODEL or not Path(POSE_MODEL).is_file(), reason="set OPREID_TEST_POSE_MODEL")
def test_engines_give_the_same_rows_with_the_real_pose_model(tmp_path):
    raw = make_synth(tmp_path / "raw", identities=4, cameras=3, seed=5)
    local, ray = tmp_path / "local", tmp_path / "ray"
    _curate(raw, local, "--pose-model", POSE_MODEL, "--batch-size", 8)
    _curate(raw, ray, "--pose-model", POSE_MODEL, "--batch-size", 8, "--engine", "ray")
    a = manifests.read_manifest(local / "private" / "images.parquet", manifests.IMAGES).to_pylist()
    b = manifests.read_manifest(ray / "private" / "images.parquet", manifests.IMAGES).to_pylist()
    assert [r["source_path"] for r in a] == [r["source_path"] for r in b]
    assert sum(r["n_persons"] or 0 for r in a) > len(a) / 2  # the model found people
    for ra, rb in zip(a, b, strict=True):
        if ra["keypoints"] is None:
            assert rb["keypoints"] is None
        else:
            np.testing.assert_allclose(ra["keypoints"], rb["keypoints"], rtol=0, atol=1e-4)
        for column in ("status", "occluded", "missing_parts", "face_boxes", "face_detectors", "mask_method"):
            assert ra[column] == rb[column], (ra["source_path"], column)
    assert _files(local) == _files(ray)  # and in fact byte for byte: flags, boxes, masked crops
    assert pq.read_metadata(local / "private" / "images.parquet").num_rows == len(a)
