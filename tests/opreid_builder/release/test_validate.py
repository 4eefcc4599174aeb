"""`opreid validate`: passes on a built release, names the exact violation on copies broken by hand."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from support.split_pools import build_release

from manifests import GALLERY, GROUND_TRUTH, QUERY, write_manifest
from opreid_builder.release.validate import validate


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(tmp_path_factory.mktemp("validate") / "rel", seed=2)


@pytest.fixture
def copy(release, tmp_path):
    dest = tmp_path / "broken"
    shutil.copytree(release, dest, ignore=shutil.ignore_patterns("masked"))
    return dest


def lines(out) -> list[str]:
    return [str(v) for v in validate(out).violations]


def test_valid_release_passes(release):
    report = validate(release)
    assert report.ok, report.violations
    assert report.summary["counts"]["query"] == {"ids": 30, "images": 36, "occluded": 36}


def test_pid_column_added_to_query(copy):
    table = pq.read_table(copy / "query.parquet")
    gt = pq.read_table(copy / "private/ground_truth.parquet").to_pandas().set_index("image_id")
    pids = gt.loc[table.column("image_id").to_pylist(), "pid"].to_numpy()
    pq.write_table(table.append_column("pid", pa.array(pids)), copy / "query.parquet")
    found = lines(copy)
    assert (
        "public-column: query.parquet carries column 'pid' (public files hold ['image_id', 'path', 'camid'])"
        in found
    )
    assert "checksum: query.parquet does not match its sha256 in dataset.json (modified)" in found


def test_gallery_image_removed(copy):
    gallery = pq.read_table(copy / "gallery.parquet")
    victim = gallery.column("path")[0].as_py()
    (copy / victim).unlink()
    found = lines(copy)
    assert f"missing-image: gallery image {victim} is missing" in found
    assert f"missing-file: {victim} is listed in dataset.json but missing" in found


def test_gallery_row_removed_breaks_the_protocol(copy):
    gt = pq.read_table(copy / "private/ground_truth.parquet").to_pandas()
    query_pid = gt[gt.split == "query"].pid.iloc[0]
    row = gt[(gt.split == "gallery") & (gt.pid == query_pid)].iloc[0]
    gallery = pq.read_table(copy / "gallery.parquet").to_pandas()
    (copy / gallery.set_index("image_id").loc[row.image_id, "path"]).unlink()
    write_manifest(gallery[gallery.image_id != row.image_id], copy / "gallery.parquet", GALLERY)
    write_manifest(gt[gt.image_id != row.image_id], copy / "private/ground_truth.parquet", GROUND_TRUTH)
    found = lines(copy)
    kind = "0 occluded and 1 holistic" if row.occluded else "1 occluded and 0 holistic"
    assert (
        f"query-match: query pid {query_pid}: gallery holds 1 image(s), {kind} from other cameras "
        "(rule: exactly one of each)"
    ) in found


def test_train_identity_moved_to_gallery(copy):
    gt = pq.read_table(copy / "private/ground_truth.parquet").to_pandas()
    train = pq.read_table(copy / "train.parquet").to_pandas()
    moved = train.iloc[0]
    train = train.iloc[1:]
    write_manifest(train, copy / "train.parquet", "train")
    new_path = f"images/gallery/{moved.image_id}.jpg"
    shutil.move(copy / moved.path, copy / new_path)
    gallery = pq.read_table(copy / "gallery.parquet").to_pandas()
    gallery.loc[len(gallery)] = [moved.image_id, new_path, moved.camid]
    write_manifest(gallery.sort_values("image_id"), copy / "gallery.parquet", GALLERY)
    gt.loc[gt.image_id == moved.image_id, "split"] = "gallery"
    write_manifest(gt, copy / "private/ground_truth.parquet", GROUND_TRUTH)
    found = lines(copy)
    assert f"identity-overlap: pid {moved.pid} is in train and gallery" in found


def test_tampered_file(copy):
    query = pq.read_table(copy / "query.parquet")
    victim = query.column("path")[3].as_py()
    data = bytearray((copy / victim).read_bytes())
    data[-10] ^= 0xFF
    (copy / victim).write_bytes(bytes(data))
    assert lines(copy) == [f"checksum: {victim} does not match its sha256 in dataset.json (modified)"]


def test_extra_image_dropped_in(copy):
    (copy / "images/query/0123456789ab.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00\x08Exif\x00\x00\xff\xd9")
    assert lines(copy) == [
        "unlisted-file: images/query/0123456789ab.jpg is not listed in dataset.json checksums",
        "unreferenced-image: images/query/0123456789ab.jpg is in no query manifest row",
    ]


def test_exif_in_a_released_image(copy):
    from PIL import Image

    victim = pq.read_table(copy / "gallery.parquet").column("path")[0].as_py()
    exif = Image.Exif()
    exif[0x010F] = "camera maker"
    Image.new("RGB", (8, 16)).save(copy / victim, format="JPEG", exif=exif.tobytes())
    found = lines(copy)
    assert any(v.startswith(f"image-metadata: {victim} holds APP1 (EXIF/XMP) at byte") for v in found), found


def test_rows_ordered_by_pid(copy):
    gt = pq.read_table(copy / "private/ground_truth.parquet")
    gt = gt.filter(pc.equal(gt.column("split"), "gallery")).to_pandas()
    gallery = (
        pq.read_table(copy / "gallery.parquet").to_pandas().merge(gt[["image_id", "pid"]], on="image_id")
    )
    write_manifest(gallery.sort_values("pid").drop(columns="pid"), copy / "gallery.parquet", GALLERY)
    found = lines(copy)
    assert any(line.startswith("row-order: gallery.parquet rows are ordered by pid") for line in found)
    assert any(line.startswith("row-order: gallery.parquet rows are grouped by pid") for line in found)


def test_non_opaque_name_and_holistic_query(copy):
    gt = pq.read_table(copy / "private/ground_truth.parquet").to_pandas()
    gt.loc[gt.split == "query", "occluded"] = [False] + [True] * (int((gt.split == "query").sum()) - 1)
    write_manifest(gt, copy / "private/ground_truth.parquet", GROUND_TRUTH)
    query = pq.read_table(copy / "query.parquet").to_pandas()
    holistic = gt[(gt.split == "query") & ~gt.occluded].image_id.iloc[0]
    old = query.path.iloc[0]
    query.loc[0, "path"] = "images/query/0042_c1.jpg"
    shutil.move(copy / old, copy / "images/query/0042_c1.jpg")
    write_manifest(query, copy / "query.parquet", QUERY)
    found = lines(copy)
    assert f"query-holistic: query image {holistic} is not occluded" in found
    assert any(line.startswith("opaque-name: query row") and "0042_c1.jpg" in line for line in found)


def test_cli_exit_codes_and_json(release, copy):
    from opreid_builder.cli.validate import validate_cmd

    runner = CliRunner()
    ok = runner.invoke(validate_cmd, [str(release)])
    assert ok.exit_code == 0 and ok.output.startswith("ok: ")
    (copy / "README.md").write_text("changed\n")
    bad = runner.invoke(validate_cmd, [str(copy)])
    assert bad.exit_code == 1
    assert bad.output.splitlines() == [
        "checksum: README.md does not match its sha256 in dataset.json (modified)"
    ]
    as_json = runner.invoke(validate_cmd, [str(copy), "--json"])
    body = json.loads(as_json.output)
    assert as_json.exit_code == 1 and body["ok"] is False and body["violations"][0]["code"] == "checksum"


def test_staging_tree_left_by_a_killed_build(copy):
    (copy / ".images.k7x2q9/gallery").mkdir(parents=True)
    (copy / ".images.k7x2q9/gallery/0a1b2c3d4e5f.jpg").write_bytes(b"\xff\xd8")
    assert lines(copy) == [
        "staging-folder: .images.k7x2q9/ is an image staging tree left by an interrupted build-split "
        "(rerun build-split, or delete it)"
    ]
