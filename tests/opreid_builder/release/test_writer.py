"""The release writer: layout, opaque public files, remapped pids, card, byte-identical rebuilds."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from support.paths import TESTS
from support.split_pools import build_release

from manifests import GROUND_TRUTH, QUERY, TRAIN, read_dataset_json, read_manifest, sha256_file


def test_layout_and_public_files(tmp_path):
    out = build_release(tmp_path / "rel")
    for rel in ("dataset.json", "README.md", "train.parquet", "query.parquet", "gallery.parquet",
                "private/ground_truth.parquet", "private/release_map.parquet"):  # fmt: skip
        assert (out / rel).is_file(), rel
    query = read_manifest(out / "query.parquet", QUERY).to_pandas()
    assert pq.read_schema(out / "query.parquet").names == ["image_id", "path", "camid"]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in query.image_id)
    assert (query.path == "images/query/" + query.image_id + ".jpg").all()
    assert list(query.image_id) == sorted(query.image_id)
    train = read_manifest(out / "train.parquet", TRAIN).to_pandas()
    assert set(train.pid) == set(range(15))
    assert all(re.fullmatch(r"images/train/\d{4}_c\d+_\d{4}\.jpg", p) for p in train.path)
    gt = read_manifest(out / "private/ground_truth.parquet", GROUND_TRUTH).to_pandas()
    assert len(gt) == len(train) + len(query) + 55 * 0 + len(gt[gt.split == "gallery"])
    assert set(gt[gt.split != "train"].pid).isdisjoint(range(15))
    # images are the masked crops, byte for byte
    mapping = pq.read_table(out / "private/release_map.parquet").to_pandas().set_index("image_id")
    first = query.iloc[0]
    source = mapping.loc[first.image_id, "source_image_id"]
    assert (out / first.path).read_bytes() == (out / "masked" / f"{source}.jpg").read_bytes()
    assert len(list((out / "masked").iterdir())) == len(gt)
    info = read_dataset_json(out)
    assert info["counts"]["query"]["images"] == 36
    assert info["target_vs_achieved"]["train_images"] == {"target": 200, "achieved": 200}
    assert "dataset.json" not in info["checksums"]
    assert info["checksums"]["images/" + first.path[len("images/") :]] == sha256_file(out / first.path)
    card = (out / "README.md").read_text()
    for section in ("Motivation", "Composition", "Collection process", "Preprocessing", "Uses",
                    "Distribution", "Maintenance", "Personal information", "Occlusion rule"):  # fmt: skip
        assert f"## {section}" in card or f"### {section}" in card, section
    assert "| left_leg |" in card


@pytest.mark.slow
def test_shuffled_input_gives_byte_identical_release(tmp_path):
    a = build_release(tmp_path / "a", seed=5)
    b = build_release(tmp_path / "b", seed=5, order_seed=11)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_rebuild_replaces_previous_images(tmp_path):
    out = build_release(tmp_path / "rel", seed=1)
    build_release(out, seed=2)
    listed = read_dataset_json(out)["checksums"]
    on_disk = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*") if p.is_file()}
    assert on_disk == {k for k in listed if k.startswith("images/")}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_public_order_is_not_by_pid(tmp_path):
    out = build_release(tmp_path / "rel")
    gallery = pq.read_table(out / "gallery.parquet")
    gt = pq.read_table(out / "private/ground_truth.parquet")
    gt = gt.filter(pc.equal(gt.column("split"), "gallery")).to_pandas().set_index("image_id")
    pids = gt.loc[gallery.column("image_id").to_pylist(), "pid"].to_numpy()
    assert abs(np.corrcoef(np.arange(len(pids)), pids)[0, 1]) < 0.5


def test_every_released_folder_and_file_has_the_plain_mode(tmp_path):
    """images/ came from mkdtemp (0700): the one folder of a release nobody else could read."""
    umask = os.umask(0)
    os.umask(umask)
    out = build_release(tmp_path / "rel")
    build_release(out, seed=1)  # a rebuild swaps images/ through a second staging folder
    folders = [out / "images", *(out / "images").iterdir(), out / "private"]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(0o777 & ~umask)}
    files = [out / rel for rel in read_dataset_json(out)["checksums"]] + [out / "dataset.json"]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o666 & ~umask)}


KILL_DURING_COPY = """
import os, signal, shutil, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from support.split_pools import build_release
real, count = shutil.copyfile, [0]
def copyfile(src, dst, **kw):
    count[0] += 1
    if count[0] > 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, **kw)
shutil.copyfile = copyfile
build_release(Path({out!r}), seed=3)
"""


@pytest.mark.slow
def test_kill_during_image_copy_leaves_a_staging_tree_that_a_rerun_removes(tmp_path):
    from opreid_builder.release.validate import validate

    out = tmp_path / "rel"
    script = KILL_DURING_COPY.format(tests=str(TESTS), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    staging = [p.name for p in out.iterdir() if p.name.startswith(".images.")]
    assert len(staging) == 1 and len(list((out / staging[0]).rglob("*.jpg"))) == 5
    codes = {v.code for v in validate(out).violations}
    assert "staging-folder" in codes
    build_release(out, seed=3)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert validate(out).ok
