"""Sources built to break curation: a FIFO, non-UTF-8 names, huge crops, unlistable folders, ids out
of range, non-images. Each is recorded with a reason and curation goes on: one bad file in a
million-crop pool must not stop the run or cost the rest of it."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFile
from support.curation import person_keypoints, write_keypoints

from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.pipeline import curate
from opreid_builder.curation.sources import (
    NOT_UTF8,
    decode_image,
    max_file_bytes,
    read_and_decode,
    scan_sources,
)
from opreid_builder.errors import SourceError

GOOD = ["0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.jpg", "0002_c1s1_000003_00.jpg"]


def jpeg(seed: int, size: tuple[int, int] = (64, 128)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def raw(tmp_path) -> Path:
    """Three good Market-named crops and their keypoints."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for i, name in enumerate(GOOD):
        (folder / name).write_bytes(jpeg(i))
    write_keypoints(folder, {name: person_keypoints(64, 128) for name in GOOD})
    return folder


def run_curate(raw: Path, out: Path, **options) -> dict[str, dict]:
    cfg = CurateConfig(keypoints=str(raw / "keypoints.parquet"), workers=0, **options)
    result = curate(raw, out, cfg, progress=False)
    return {r["source_path"]: r for r in result.images.to_pylist()}


# --- 4. only regular files are read -------------------------------------------------------------


def test_fifo_named_like_an_image_is_recorded_not_read(raw, tmp_path):
    """Reading a FIFO with no writer blocks forever: the curate run is bounded by a timeout."""
    os.mkfifo(raw / "0005_c1s1_900016_00.jpg")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "opreid", "curate", str(raw), "-o", str(out), "--no-progress",
         "--keypoints", str(raw / "keypoints.parquet"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["status_unreadable"] == 1
    rows = {r["source_path"]: r for r in pq.read_table(out / "private" / "images.parquet").to_pylist()}
    fifo = rows["0005_c1s1_900016_00.jpg"]
    assert (fifo["status"], fifo["status_detail"], fifo["sha256"]) == (
        "unreadable",
        "not a regular file",
        None,
    )
    assert all(rows[name]["status"] == "ok" for name in GOOD)


def test_read_and_decode_never_blocks_on_a_fifo(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    got: list = []
    worker = threading.Thread(target=lambda: got.append(read_and_decode(fifo)), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # the old read blocks in open(): give it a writer so the thread can end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("read_and_decode blocked on a FIFO")
    data, decoded = got[0]
    assert data is None and decoded.detail == "not a regular file"


# --- 5. a pixel cap, checked from the header before decoding ------------------------------------


def test_crop_over_the_pixel_cap_is_refused_before_decoding(monkeypatch):
    buf = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buf, format="PNG")

    def no_decoding(self, *a, **k):
        raise AssertionError("the pixels were decoded")

    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", no_decoding)
        decoded = decode_image(buf.getvalue(), max_pixels=300 * 200 - 1)
    assert not decoded.ok and decoded.detail == "too large (300 x 200; the cap is 59999 pixels)"
    assert decode_image(buf.getvalue(), max_pixels=300 * 200).ok


def test_pixel_cap_is_a_setting_and_keys_the_read_cache(raw, tmp_path):
    (raw / "0003_c1s1_000004_00.jpg").write_bytes(jpeg(9, size=(400, 300)))
    out = tmp_path / "out"
    rows = run_curate(raw, out, max_pixels=100_000)
    big = rows["0003_c1s1_000004_00.jpg"]
    assert big["status"] == "unreadable" and big["status_detail"].startswith("too large (400 x 300;")
    assert big["width"] is None and all(rows[name]["status"] == "ok" for name in GOOD)
    rows = run_curate(raw, out, max_pixels=120_000)  # a rerun with a higher cap decodes it
    assert rows["0003_c1s1_000004_00.jpg"]["width"] == 400


def test_file_too_large_for_any_crop_is_not_read(tmp_path):
    path = tmp_path / "0001_c1s1_000001_00.jpg"
    with open(path, "wb") as fh:  # sparse: costs no disk
        fh.truncate(max_file_bytes(1000) + 1)
    data, decoded = read_and_decode(path, max_pixels=1000)
    assert data is None and decoded.detail.startswith(f"too large ({max_file_bytes(1000) + 1} bytes;")


# --- 7. a file name that is not UTF-8 -----------------------------------------------------------


def test_non_utf8_names_are_recorded_escaped_and_curation_goes_on(raw, tmp_path):
    root = os.fsencode(raw)
    for name in (b"0005_c1s1_\xff_00.jpg", b"\xe9t\xe9.jpg"):  # latin-1 bytes: not UTF-8
        with open(os.path.join(root, name), "wb") as fh:
            fh.write(jpeg(5))
    out = tmp_path / "out"
    rows = run_curate(raw, out)
    odd = rows["0005_c1s1_\\xff_00.jpg"]
    assert (odd["status"], odd["status_detail"], odd["pid"], odd["camid"]) == ("unreadable", NOT_UTF8, 5, 1)
    assert all(rows[name]["status"] == "ok" for name in GOOD)
    record = json.loads((out / "private" / "curation.json").read_text(encoding="utf-8"))
    assert {
        "path": "\\xe9t\\xe9.jpg",
        "reason": "name does not match the Market-1501 pattern <pid>_c<cam>",
    } in (record["refused"])


# --- 9. ids that do not fit the manifests' columns ----------------------------------------------


def test_ids_out_of_range_in_names_are_refused(raw):
    for name in ("0007_c99999999999s1_000001_00.jpg", "99999999999999999999_c1s1_000001_00.jpg"):
        (raw / name).write_bytes(jpeg(7))
    scan = scan_sources(raw)
    assert sorted(i.source_path for i in scan.items) == GOOD
    assert sorted(scan.refused) == [
        ("0007_c99999999999s1_000001_00.jpg", "camid 99999999999 is out of range (-2147483648..2147483647)"),
        ("99999999999999999999_c1s1_000001_00.jpg",
         "pid 99999999999999999999 is out of range (-9223372036854775808..9223372036854775807)"),
    ]  # fmt: skip


def test_ids_out_of_range_in_an_index_name_the_row(raw, run_opreid, expect_error, tmp_path):
    rows = "".join(f"{name},1,1\n" for name in GOOD[:2]) + f"{GOOD[2]},2,9999999999\n"
    (raw / "index.csv").write_text("path,pid,camid\n" + rows)
    with pytest.raises(
        SourceError, match=r"row 3 \(0002_c1s1_000003_00.jpg\): camid 9999999999 is out of range"
    ):
        scan_sources(raw)
    result = run_opreid("curate", raw, "-o", tmp_path / "out", "--keypoints", raw / "keypoints.parquet")
    expect_error(result, "opreid curate", 1, "row 3", "camid 9999999999")
    (raw / "index.csv").write_text(f"path,pid,camid\n{GOOD[0]},99999999999999999999,1\n{GOOD[1]},x,1\n")
    with pytest.raises(
        SourceError, match=r"row 1 \(0001_c1s1_000001_00.jpg\): pid 99999999999999999999 is out"
    ):
        scan_sources(raw)
    (raw / "index.csv").write_text(f"path,pid,camid\n{GOOD[1]},x,1\n")
    with pytest.raises(
        SourceError, match=r"row 1 \(0001_c2s1_000002_00.jpg\): pid and camid must be integers"
    ):
        scan_sources(raw)
    (raw / "index.csv").unlink()
    table = pa.table(
        {"path": GOOD, "pid": pa.array([1, 1, 2**63], pa.uint64()), "camid": pa.array([1, 2, 1], pa.int32())}
    )
    pq.write_table(table, raw / "index.parquet")
    with pytest.raises(SourceError, match=r"row 3 \(0002_c1s1_000003_00.jpg\): pid 9223372036854775808"):
        scan_sources(raw)


# --- 10. a folder that cannot be listed ---------------------------------------------------------


@pytest.fixture
def deny_listing(monkeypatch):
    """Make os.scandir refuse one folder (root ignores permission bits, so chmod cannot)."""

    def deny(folder: Path) -> None:
        real_scandir = os.scandir

        def scandir(path="."):
            if Path(path) == folder:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)

    return deny


def test_unlistable_subfolder_is_refused_with_a_warning(raw, deny_listing, caplog):
    (raw / "sub").mkdir()
    (raw / "sub" / "0003_c1s1_000009_00.jpg").write_bytes(jpeg(3))
    deny_listing(raw / "sub")
    caplog.set_level("WARNING", logger="opreid_builder.curation.sources")
    scan = scan_sources(raw)
    assert sorted(i.source_path for i in scan.items) == GOOD
    assert scan.refused == [("sub", "folder cannot be listed (Permission denied)")]
    assert "1 folder(s) under" in caplog.text and "sub" in caplog.text


def test_unlistable_raw_is_one_clear_error(raw, deny_listing):
    deny_listing(raw)
    with pytest.raises(SourceError, match="cannot be listed"):
        scan_sources(raw, layout="market")


# --- 12. error details carry no memory address --------------------------------------------------


def test_non_image_gives_the_same_bytes_on_every_build(raw, tmp_path):
    (raw / "0004_c1s1_000001_00.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (raw / "0004_c2s1_000002_00.jpg").write_text("plain text")
    (raw / "0004_c3s1_000003_00.jpg").write_bytes(jpeg(4)[:300])  # truncated
    first = run_curate(raw, tmp_path / "a")
    keep = [io.BytesIO() for _ in range(100)]  # shift the allocator between the builds
    second = run_curate(raw, tmp_path / "b")
    del keep
    details = [r["status_detail"] for r in first.values() if r["status"] == "unreadable"]
    assert len(details) == 3
    assert not [d for d in details if re.search(r"0x[0-9a-f]{4,}", d)], details
    assert (
        first["0004_c2s1_000002_00.jpg"]["status_detail"]
        == "cannot decode: not an image format Pillow can read"
    )
    assert first == second
    tables = [(tmp_path / o / "private" / "images.parquet").read_bytes() for o in ("a", "b")]
    assert tables[0] == tables[1]
