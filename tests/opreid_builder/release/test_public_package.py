"""`opreid release pack` and `opreid validate --public`: the participants' package holds only public files,
passes its own check, and copies broken by hand fail with the exact reason."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from manifests import DatasetLayout, ExitCode, read_dataset_json, sha256_file, write_dataset_json
from opreid_builder.errors import PackRefusedError, ReleaseError
from opreid_builder.release.public_package import pack_release
from opreid_builder.release.validate import PACKAGE_KEYS, validate_public
from opreid_builder.split.public_formats import FORMATS

PUBLIC_FILES = {"README.md", "SUBMITTING.md", "croissant.json", "dataset.json", "gallery.parquet", "query.parquet",
                "sample_submission.npy", "train.parquet"}  # fmt: skip


@pytest.fixture(scope="module")
def package(built_release, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("pkg") / "public"
    pack_release(built_release, dest)
    return dest


@pytest.fixture
def copy(package, tmp_path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(package, dest)
    return dest


def violations(path: Path) -> list[str]:
    return [str(v) for v in validate_public(path).violations]


def relist(root: Path) -> None:
    """Recompute dataset.json's checksums, as a careless host would after editing a file."""
    info = read_dataset_json(root)
    info["checksums"] = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "dataset.json"
    }
    write_dataset_json(root, info)


def test_package_holds_public_files_only_and_passes(built_release, package, run_opreid):
    top = {p.name for p in package.iterdir()}
    assert top == PUBLIC_FILES | {"images"}
    assert {p.name for p in (package / "images").iterdir()} == {"train", "query", "gallery"}
    release_images = {p.relative_to(built_release) for p in (built_release / "images").rglob("*.jpg")}
    assert {p.relative_to(package) for p in (package / "images").rglob("*.jpg")} == release_images
    for rel in ["train.parquet", "query.parquet", "gallery.parquet", *map(str, release_images)]:
        assert sha256_file(package / rel) == sha256_file(built_release / rel), rel  # copied byte for byte
    info = read_dataset_json(package)
    assert set(info) <= PACKAGE_KEYS and "seed" not in json.dumps(info) and "parameters" not in info
    assert set(info["checksums"]) == {p.relative_to(package).as_posix() for p in package.rglob("*")
                                      if p.is_file() and p.name != "dataset.json"}  # fmt: skip
    assert info["release_sha256"] == sha256_file(built_release / "dataset.json")
    q, g = (
        pq.read_metadata(package / "query.parquet").num_rows,
        pq.read_metadata(package / "gallery.parquet").num_rows,
    )
    assert (info["submission"]["num_query"], info["submission"]["num_gallery"]) == (q, g)
    sample = np.load(package / "sample_submission.npy")
    assert sample.shape == (q, g) and sample.dtype == np.float32 and not sample.any()
    guide = (package / "SUBMITTING.md").read_text()
    assert f"({q}, {g})" in guide and "opreid check" in guide
    assert validate_public(package).ok
    result = run_opreid("validate", "--public", package)
    assert result.exit_code == 0 and "checksums verified" in result.stdout
    result = run_opreid("check", package / "sample_submission.npy", "--data", package)
    assert result.exit_code == 0, result.output
    assert (
        f"distance matrix {q} x {g} (float32)" in result.stdout
        and "matches the package's checksum" in result.stdout
    )
    # the release itself is not a package (and says which check it needs)
    expect = run_opreid("validate", "--public", built_release)
    assert expect.exit_code == ExitCode.INVALID_INPUT and "not-a-package" in expect.stdout


def test_the_public_card_is_the_release_card_without_the_seed(built_release, package):
    seed = read_dataset_json(built_release)["seed"]
    private, public = (built_release / "README.md").read_text(), (package / "README.md").read_text()
    assert f"seed {seed}," in private and "seed" not in public.split("## Motivation")[0]
    assert "same seed" not in public
    # every figure (counts, targets, histograms, pool) is the release card's
    start = private.index("## Motivation")
    end = private.index("## Distribution")
    assert public[public.index("## Motivation") : public.index("## Distribution")] == private[start:end]


def test_modes_are_readable_by_everyone(package):
    assert package.stat().st_mode & 0o777 == 0o755
    for path in package.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path


@pytest.mark.parametrize("name", ["public.tar", "public.tar.gz", "public.zip"])
def test_archives_validate_and_are_reproducible(built_release, tmp_path, name, run_opreid):
    first, second = tmp_path / "a" / name, tmp_path / "b" / name
    result = run_opreid("release", "pack", built_release, "-o", first, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format"] == name.split(".", 1)[1]
    pack_release(built_release, second)
    assert sha256_file(first) == sha256_file(second)  # same release, same bytes
    assert run_opreid("validate", "--public", first).exit_code == 0
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_existing_output_needs_force_and_only_a_package_is_replaced(
    built_release, tmp_path, run_opreid, expect_error
):
    dest = tmp_path / "public"
    pack_release(built_release, dest)
    expect_error(run_opreid("release", "pack", built_release, "-o", dest), "opreid release pack", ExitCode.USER,
                 "exists", "--force")  # fmt: skip
    assert run_opreid("release", "pack", built_release, "-o", dest, "--force").exit_code == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="not a participants' package"):
        pack_release(built_release, other, force=True)
    assert (other / "mine.txt").read_text() == "keep me"
    with pytest.raises(ReleaseError, match="contain one another"):
        pack_release(built_release, built_release / "public")


# ---- copies broken by hand fail with the exact reason ------------------------------------------
def test_pid_column_sneaked_into_query(copy, run_opreid, expect_error):
    table = pq.read_table(copy / "query.parquet")
    table = table.append_column("pid", pa.array(np.arange(table.num_rows), pa.int64()))
    pq.write_table(
        table.replace_schema_metadata(pq.read_schema(copy / "query.parquet").metadata), copy / "query.parquet"
    )
    found = violations(copy)
    assert (
        "public-column: query.parquet carries column 'pid' (public files hold ['image_id', 'path', 'camid'])"
        in found
    )
    assert "checksum: query.parquet does not match its sha256 in dataset.json (modified)" in found
    relist(copy)  # even with fresh checksums the leak is named
    assert [v for v in violations(copy) if v.startswith("public-column")] and len(violations(copy)) == 1
    result = run_opreid("validate", "--public", copy)
    expect_error(result, "opreid validate", ExitCode.INVALID_INPUT, "1 violation(s)")
    assert "public-column: query.parquet carries column 'pid'" in result.stdout


def test_private_file_included(built_release, copy):
    (copy / "private").mkdir()
    shutil.copy(built_release / "private" / "ground_truth.parquet", copy / "private" / "ground_truth.parquet")
    shutil.copy(built_release / "private" / "ground_truth.parquet", copy / "leaderboard.db")
    relist(copy)
    assert violations(copy) == [
        "private-file: leaderboard.db is a database file: a leaderboard database holds the private split and scores",
        "private-file: private/ground_truth.parquet is a host file (private/): participants must never receive it",
    ]


def test_exif_put_back(copy):
    rel = sorted((copy / "images" / "query").iterdir())[0].relative_to(copy).as_posix()
    image = Image.open(copy / rel)
    exif = Image.Exif()
    exif[0x010F] = "camera maker"
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes())
    (copy / rel).write_bytes(buf.getvalue())
    found = violations(copy)
    assert any(v.startswith(f"image-metadata: {rel} holds APP1 (EXIF/XMP) at byte") for v in found), found
    assert f"checksum: {rel} does not match its sha256 in dataset.json (modified)" in found


def test_seed_and_host_files_in_a_package(copy):
    info = read_dataset_json(copy)
    info["seed"] = 1
    write_dataset_json(copy, info)
    (copy / "masked").mkdir()
    (copy / "masked" / "x.jpg").write_bytes(b"\xff\xd8")
    (copy / "notes.txt").write_text("hello")
    found = violations(copy)
    assert any(v.startswith("public-metadata: dataset.json carries 'seed'") and "rebuilds the ground truth" in v
               for v in found)  # fmt: skip
    assert "private-file: masked/x.jpg is a host file (masked/): participants must never receive it" in found
    assert "unexpected-file: notes.txt is not part of a participants' package" in found


def test_renamed_image_and_wrong_sample(copy):
    query = sorted((copy / "images" / "query").iterdir())
    query[0].rename(query[0].with_name("0001_c1_0000.jpg"))
    np.save(copy / "sample_submission.npy", np.zeros((2, 3), np.float32))
    found = violations(copy)
    assert any(v.startswith("missing-image: query image images/query/") for v in found)
    assert any(v.startswith("sample-submission: sample_submission.npy has shape (2, 3)") for v in found)


def test_an_archive_member_that_escapes_is_refused(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        data = b"x"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    found = violations(evil)
    assert found == [
        f"archive: {evil}: member '../outside.txt' would land outside the folder it is unpacked in"
    ]
    assert not (tmp_path.parent / "outside.txt").exists()


def _tar_gz(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A .tar.gz of (name, data) members; data None makes a folder."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_with_more_members_than_it_lists_is_refused_before_extraction(tmp_path, monkeypatch):
    """A few hundred KB holding thousands of empty members: counted from the headers, none written."""
    import opreid_builder.release.archive as archive

    listing = json.dumps({"kind": "public_package", "checksums": {"README.md": "0" * 64}}).encode()
    members = [("public/README.md", b"x"), ("public/dataset.json", listing)]
    members += [(f"public/images/query/{i:06d}.jpg", b"") for i in range(5000)]
    bomb = _tar_gz(tmp_path / "bomb.tar.gz", members)
    written = []
    monkeypatch.setattr(archive, "_copy_bounded", lambda *a: written.append(a))
    found = violations(bomb)
    assert found == [f"archive: {bomb} holds more than 7 members: its dataset.json lists 1 file(s), and a package "
                     "holds them, itself and at most 5 folders; nothing was extracted"]  # fmt: skip
    assert not written
    no_listing = _tar_gz(tmp_path / "nolist.tar.gz", members[:1] + members[2:10])
    assert violations(no_listing) == [
        f"archive: {no_listing}: no readable dataset.json listing its files; nothing was extracted"
    ]
    assert not written


@pytest.mark.parametrize("order", ["file first", "folder first", "file under a file"])
def test_a_name_that_is_a_file_and_a_folder_is_a_violation(order, tmp_path, run_opreid):
    listing = json.dumps({"checksums": {"x": "0" * 64, "y": "0" * 64}}).encode()
    clash = {
        "file first": [("public/x", b"a"), ("public/x", None)],
        "folder first": [("public/x", None), ("public/x", b"a")],
        "file under a file": [("public/x", b"a"), ("public/x/y", b"b")],
    }[order]
    bad = _tar_gz(tmp_path / "clash.tar.gz", [("public/dataset.json", listing), *clash])
    (found,) = violations(bad)
    assert found.startswith(f"archive: {bad}") and (
        "both a file and a folder" in found or "which is a file" in found
    )
    result = run_opreid("validate", "--public", bad)
    assert result.exit_code == ExitCode.INVALID_INPUT, result.stderr


# ---- pack refuses what would leak ----------------------------------------------------------------
@pytest.fixture
def release_copy(built_release, tmp_path) -> Path:
    dest = tmp_path / "release"
    shutil.copytree(built_release, dest, ignore=shutil.ignore_patterns("masked", "cache"))
    return dest


def _relist_release(root: Path) -> None:
    from opreid_builder.release.writer import release_files

    info = read_dataset_json(root)
    info["checksums"] = {rel: sha256_file(root / rel) for rel in release_files(root)}
    write_dataset_json(root, info)


def test_pack_refuses_a_pid_column_and_writes_nothing(release_copy, tmp_path, run_opreid, expect_error):
    path = release_copy / "query.parquet"
    table = pq.read_table(path)
    table = table.append_column("pid", pa.array(np.zeros(table.num_rows, np.int64)))
    pq.write_table(table.replace_schema_metadata(pq.read_schema(path).metadata), path)
    _relist_release(release_copy)  # the checksums agree: only the leak is left to catch
    dest = tmp_path / "out" / "public.zip"
    result = run_opreid("release", "pack", release_copy, "-o", dest)
    expect_error(result, "opreid release pack", ExitCode.INVALID_INPUT, "refusing to pack",
                 "public-column: query.parquet carries column 'pid'")  # fmt: skip
    assert list(dest.parent.iterdir()) == []  # no package, no staging folder


def test_pack_refuses_a_manifest_path_into_private(release_copy, tmp_path):
    path = release_copy / "gallery.parquet"
    table = pq.read_table(path)
    paths = table.column("path").to_pylist()
    paths[0] = "private/ground_truth.parquet"
    table = table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths))
    pq.write_table(table.replace_schema_metadata(pq.read_schema(path).metadata), path)
    _relist_release(release_copy)
    with pytest.raises(
        PackRefusedError, match="manifest-path: gallery.parquet names 'private/ground_truth.parquet'"
    ):
        pack_release(release_copy, tmp_path / "public")
    assert not (tmp_path / "public").exists()


def test_pack_refuses_a_file_changed_since_the_build(release_copy, tmp_path):
    image = sorted((release_copy / "images" / "train").iterdir())[0]
    image.write_bytes(image.read_bytes() + b"\0")
    with pytest.raises(PackRefusedError, match=f"{image.relative_to(release_copy).as_posix()} changed since"):
        pack_release(release_copy, tmp_path / "public")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]


def test_a_killed_pack_leaves_staging_that_the_next_one_removes(built_release, tmp_path):
    stale = tmp_path / ".public.pack-abc123"
    (stale / "images").mkdir(parents=True)
    pack_release(built_release, tmp_path / "public")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["public"]
    assert DatasetLayout(tmp_path / "public").sample_submission.is_file()


# ---- imported benchmarks pack too ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_imported_layout_packs_and_validates(fmt, synth_layout, tmp_path, run_opreid):
    from opreid_builder.public_datasets.importer import import_benchmark

    out, dest = tmp_path / "rel", tmp_path / "public.zip"
    import_benchmark(fmt, synth_layout(fmt), out)
    result = run_opreid("release", "pack", out, "-o", dest)
    assert result.exit_code == 0, result.stderr
    checked = run_opreid("validate", "--public", dest)
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    with zipfile.ZipFile(dest) as zf:
        names = {n.split("/", 1)[1] for n in zf.namelist()}
        card = zf.read("public/README.md").decode()
    assert not any(n.startswith(("private/", "masked/", "cache/")) for n in names)
    assert card == (out / "README.md").read_text() and "private/naming.json" in card


def test_an_import_whose_seed_is_public_is_refused(synth_layout, tmp_path):
    from opreid_builder.public_datasets.importer import import_benchmark

    out = tmp_path / "rel"
    import_benchmark("partial_ilids", synth_layout("partial_ilids"), out)
    info = read_dataset_json(out)  # as an import before the random secret recorded it
    del info["naming_seed"]
    info["seed"] = 0
    write_dataset_json(out, info)
    with pytest.raises(PackRefusedError, match="anyone can replay that draw"):
        pack_release(out, tmp_path / "public")
    assert not (tmp_path / "public").exists()
