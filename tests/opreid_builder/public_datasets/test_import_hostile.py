"""`opreid import` on hostile dataset copies: links out of (or back into) SRC, lists that name a file
twice or hold huge lines, ids that fit no column, images that turn out empty, files owned by another
user, a release a leaderboard was made from, and a run killed between its two renames."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from manifests import DatasetLayout, ExitCode, read_dataset_json
from opreid_builder.errors import BenchmarkLayoutError
from opreid_builder.public_datasets.importer import import_benchmark
from opreid_builder.release.validate import validate
from opreid_builder.split.public_formats import LAYOUTS


@pytest.fixture
def copy_of(synth_layout, tmp_path):
    """A private copy of a synthetic layout (the dataset folder itself), to break by hand."""

    def make(fmt: str) -> Path:
        dest = tmp_path / "copy" / LAYOUTS[fmt].root_names[0]
        shutil.copytree(synth_layout(fmt) / LAYOUTS[fmt].root_names[0], dest)
        return dest

    return make


def source_paths(out: Path) -> list[str]:
    return pq.read_table(out / "private/release_map.parquet").column("source_path").to_pylist()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# --- symbolic links: nothing is read through one, and the card says so ---------------------------


def test_a_list_line_through_a_link_out_of_src_is_skipped_and_reported(copy_of, tmp_path):
    root = copy_of("msmt17")
    outside = tmp_path / "outside"
    outside.mkdir()
    query = root / "test" / _lines(root / "list_query.txt")[0].split()[0]
    secret = outside / query.name
    secret.write_bytes(query.read_bytes()[:-2] + b"\xff\xd9")  # another file, outside SRC
    os.symlink(outside, root / "test" / "evil")
    with open(root / "list_gallery.txt", "a") as fh:
        fh.write(f"evil/{query.name} 0\n")
    out = tmp_path / "rel"
    result = import_benchmark("msmt17", root, out)
    assert f"test/evil/{query.name}" not in source_paths(out)
    outside_inode = os.stat(secret).st_ino
    assert all(os.stat(p).st_ino != outside_inode for p in (out / "images").rglob("*") if p.is_file())
    reasons = dict(result.unexpected)
    assert reasons[f"test/evil/{query.name}"].startswith("reached through a symbolic link")
    assert f"`test/evil/{query.name}`: reached through a symbolic link" in (out / "README.md").read_text()
    assert validate(out).ok


def test_a_link_back_into_src_cannot_release_a_query_again_as_gallery(copy_of, tmp_path):
    root = copy_of("msmt17")
    first = _lines(root / "list_query.txt")[0].split()[0]  # 0000/<name>
    folder, name = first.split("/")
    os.symlink("..", root / "test" / folder / "up")
    with open(root / "list_gallery.txt", "a") as fh:
        fh.write(f"{folder}/up/{folder}/{name} 0\n")
    out = tmp_path / "rel"
    result = import_benchmark("msmt17", root, out)
    released = source_paths(out)
    assert f"test/{first}" in released and f"test/{folder}/up/{folder}/{name}" not in released
    assert released.count(f"test/{first}") == 1
    reasons = dict(result.unexpected)
    # the card names exactly what was skipped: the line through the link, and the link itself
    assert reasons[f"test/{folder}/up/{folder}/{name}"].endswith(f"test/{folder}/up")
    assert reasons[f"test/{folder}/up/"] == "a symbolic link"


@pytest.mark.parametrize("target", ["inside", "outside"])
def test_a_subset_folder_that_is_a_link_is_refused(target, copy_of, tmp_path, run_opreid, expect_error):
    root = copy_of("cuhk03")
    real = (root / "labeled") if target == "inside" else tmp_path / "elsewhere"
    if target == "outside":
        shutil.move(root / "detected", real)
    else:
        shutil.rmtree(root / "detected")
    os.symlink(real, root / "detected")
    result = run_opreid("import", "cuhk03", root, "-o", tmp_path / "out")
    expect_error(result, "opreid import", ExitCode.INVALID_INPUT, "detected is a symbolic link")
    assert not (tmp_path / "out").exists()


def test_a_dataset_root_that_is_a_link_inside_src_is_refused(synth_layout, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(synth_layout("dukemtmc") / "DukeMTMC-reID", src / "DukeMTMC-reID")
    with pytest.raises(BenchmarkLayoutError, match="a symbolic link inside SRC"):
        import_benchmark("dukemtmc", src, tmp_path / "out")
    import_benchmark("dukemtmc", src / "DukeMTMC-reID", tmp_path / "out")  # given as SRC itself: read


def test_an_identity_folder_that_is_a_link_is_skipped(copy_of, tmp_path):
    root = copy_of("occluded_reid")
    os.symlink(root / "whole_body_images" / "001", root / "occluded_body_images" / "999")
    result = import_benchmark("occluded_reid", root, tmp_path / "rel")
    assert dict(result.unexpected)["occluded_body_images/999"].startswith("a symbolic link")
    assert not any(p.startswith("occluded_body_images/999") for p in source_paths(tmp_path / "rel"))


# --- list files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["./{p}", "{a}//{b}", "{a}/./{b}"])
def test_one_file_listed_under_two_spellings_is_refused(spelling, copy_of, tmp_path):
    root = copy_of("msmt17")
    path = _lines(root / "list_gallery.txt")[0].split()[0]
    a, b = path.split("/")
    with open(root / "list_gallery.txt", "a") as fh:
        fh.write(f"{spelling.format(p=path, a=a, b=b)} 0\n")
    with pytest.raises(BenchmarkLayoutError, match=f"test/{path} is listed twice"):
        import_benchmark("msmt17", root, tmp_path / "out")


def test_one_file_in_two_lists_is_refused(copy_of, tmp_path):
    root = copy_of("msmt17")
    line = _lines(root / "list_query.txt")[0]
    with open(root / "list_gallery.txt", "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(BenchmarkLayoutError, match=r"listed twice \(first in list_query.txt\)"):
        import_benchmark("msmt17", root, tmp_path / "out")


@pytest.mark.parametrize("content", ["one line", "many lines"])
@pytest.mark.slow
def test_a_huge_unused_list_is_streamed_in_bounded_memory(content, copy_of, tmp_path):
    """80 MB of list_val.txt: read line by line (was read whole: ~900 MB peak RSS)."""
    root = copy_of("msmt17")
    first = _lines(root / "list_train.txt")[0].split()[0]
    with open(root / "list_val.txt", "wb") as fh:
        if content == "one line":
            fh.write(b"x" * (80 << 20))
        else:  # a valid first line, then 80 MB of other names
            fh.write(
                b"".join(f"{first.split('/')[0]}/val_{i:08d}.jpg 0\n".encode() for i in range(2_500_000))
            )
    code = f"""
        import json, resource
        from opreid_builder.errors import BenchmarkLayoutError
        from opreid_builder.public_datasets.importer import import_benchmark
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            import_benchmark("msmt17", {str(root)!r}, {str(tmp_path / "out")!r})
            message = None
        except BenchmarkLayoutError as exc:
            message = str(exc)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"message": message, "grown_kb": after - before}}))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["grown_kb"] < 32 * 1024, got
    expected = "longer than 4096 characters" if content == "one line" else "is missing"
    assert got["message"] and expected in got["message"], got


@pytest.mark.parametrize("where", ["name", "list"])
def test_a_pid_beyond_int64_is_invalid_input(where, copy_of, tmp_path, run_opreid, expect_error):
    huge = 1 << 70
    if where == "name":
        root = copy_of("dukemtmc")
        victim = sorted((root / "query").glob("*.jpg"))[0]
        shutil.copyfile(victim, root / "query" / f"{huge}_c2_f0046182.jpg")
        fmt, fragment = "dukemtmc", f"pid {huge} is out of range"
    else:
        root = copy_of("msmt17")
        lines = _lines(root / "list_query.txt")
        lines[0] = f"{lines[0].split()[0]} {huge}"
        (root / "list_query.txt").write_text("\n".join(lines) + "\n")
        fmt, fragment = "msmt17", f"list_query.txt: line 1: pid {huge} is out of range"
    result = run_opreid("import", fmt, root, "-o", tmp_path / "out")
    expect_error(result, "opreid import", ExitCode.INVALID_INPUT, fragment)


def test_a_camera_beyond_int32_is_invalid_input(copy_of, tmp_path, run_opreid, expect_error):
    root = copy_of("market1501")
    victim = sorted((root / "query").glob("*.jpg"))[0]
    pid = victim.name.split("_")[0]
    shutil.copyfile(victim, root / "query" / f"{pid}_c{1 << 40}s1_000001_00.jpg")
    result = run_opreid("import", "market1501", root, "-o", tmp_path / "out")
    expect_error(result, "opreid import", ExitCode.INVALID_INPUT, f"camid {1 << 40} is out of range")


# --- empty splits ----------------------------------------------------------------------------------


def test_a_split_whose_every_image_is_unreadable_is_invalid_input(
    copy_of, tmp_path, run_opreid, expect_error
):
    root = copy_of("market1501")
    for path in (root / "query").glob("*.jpg"):
        path.write_bytes(b"")
    result = run_opreid("import", "market1501", root, "-o", tmp_path / "out")
    expect_error(
        result, "opreid import", ExitCode.INVALID_INPUT, "query: no readable image", "zero-byte file"
    )
    assert not (tmp_path / "out").exists()


def test_validate_refuses_an_empty_query_split(synth_layout, tmp_path, run_opreid):
    out = tmp_path / "rel"
    import_benchmark("market1501", synth_layout("market1501"), out)
    layout = DatasetLayout(out)
    query = pq.read_table(layout.query)
    pq.write_table(query.slice(0, 0), layout.query)  # the metadata stays, the rows go
    found = {v.code for v in validate(out).violations}
    assert "empty-split" in found
    assert run_opreid("validate", out).exit_code == ExitCode.INVALID_INPUT


# --- files of another user, a leaderboard's release, a killed swap ---------------------------------


def test_files_owned_by_another_user_are_copied_not_linked(synth_layout, tmp_path, monkeypatch):
    import opreid_builder.public_datasets.importer as module

    src = synth_layout("partial_ilids")
    owner = os.stat(next(src.rglob("*.jpg"))).st_uid
    monkeypatch.setattr(module.os, "geteuid", lambda: owner + 1)  # as if another user ran the import
    result = import_benchmark("partial_ilids", src, tmp_path / "rel")
    assert result.images["hardlink"] == 0 and result.images["copy"] == 24
    assert all(os.stat(p).st_nlink == 1 for p in (tmp_path / "rel/images").rglob("*") if p.is_file())
    monkeypatch.undo()
    mine = import_benchmark("partial_ilids", src, tmp_path / "mine")
    assert mine.images["hardlink"] == 24


def test_a_leaderboard_release_is_not_replaced_without_force(
    synth_layout, tmp_path, run_opreid, expect_error
):
    src = synth_layout("partial_reid")
    out = tmp_path / "rel"
    import_benchmark("partial_reid", src, out)
    DatasetLayout(out).leaderboard_marker.write_text(json.dumps({"database": "/srv/lb.db"}))
    before = read_dataset_json(out)["checksums"]
    result = run_opreid("import", "partial_reid", src, "-o", out)
    expect_error(result, "opreid import", ExitCode.USER, "the release of the leaderboard in /srv/lb.db")
    assert read_dataset_json(out)["checksums"] == before
    forced = run_opreid("import", "partial_reid", src, "-o", out, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "the release of the leaderboard" in forced.stderr


def test_a_run_killed_between_the_two_renames_leaves_nothing_behind(synth_layout, tmp_path):
    src = synth_layout("partial_reid")
    out = tmp_path / "rel"
    import_benchmark("partial_reid", src, out)
    replaced = tmp_path / ".rel.replaced"
    os.replace(out, replaced)  # where kill -9 after the first rename leaves things
    import_benchmark("partial_reid", src, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]
    assert validate(out).ok
    # killed after the second rename, before the old release was deleted
    shutil.copytree(out, replaced)
    import_benchmark("partial_reid", src, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]


# --- images that carry identity beside their pixels ---------------------------------------------


@pytest.mark.slow
def test_metadata_of_every_kind_is_removed_from_released_images(copy_of, tmp_path):
    from support.hostile_images import SECRET, jpeg_variants, pixels, png_with_text, tiff_with_tags

    from opreid_builder.release.image_containers import image_problem
    from opreid_builder.release.public_package import pack_release
    from opreid_builder.release.validate import validate_public

    root = copy_of("market1501")
    queries = sorted((root / "query").glob("*.jpg"))
    expected = {}
    variants = list(jpeg_variants(queries[0].read_bytes()).items())
    for path, (name, _) in zip(queries, variants, strict=False):
        data = jpeg_variants(path.read_bytes())[name]
        path.write_bytes(data)
        expected[f"query/{path.name}"] = pixels(data)
    rgb = pixels(queries[len(variants)].read_bytes())
    queries[len(variants)].write_bytes(png_with_text(rgb))  # a PNG named .jpg: PIL reads it all the same
    queries[len(variants) + 1].write_bytes(tiff_with_tags(rgb))
    out = tmp_path / "rel"
    result = import_benchmark("market1501", root, out)
    assert result.images["stripped"] == len(variants) + 2
    mapping = pq.read_table(out / "private/release_map.parquet").to_pandas().set_index("source_path")
    for rel, want in expected.items():
        data = (out / "images/query" / f"{mapping.loc[rel, 'image_id']}.jpg").read_bytes()
        assert image_problem(data) is None and np.array_equal(pixels(data), want), rel
    for image in (out / "images").rglob("*"):
        if image.is_file():
            assert SECRET.encode() not in image.read_bytes() and image_problem(image.read_bytes()) is None
    assert validate(out).ok
    pack_release(out, tmp_path / "public.tar.gz")
    assert validate_public(tmp_path / "public.tar.gz").ok


def test_an_image_that_cannot_be_reduced_is_released_as_png(copy_of, tmp_path):
    import io

    from PIL import Image
    from support.hostile_images import pixels

    root = copy_of("market1501")
    victim = sorted((root / "query").glob("*.jpg"))[0]
    rgb = pixels(victim.read_bytes())
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="BMP")
    victim.write_bytes(buf.getvalue())
    out = tmp_path / "rel"
    result = import_benchmark("market1501", root, out)
    assert result.images["converted"] == 1
    mapping = pq.read_table(out / "private/release_map.parquet").to_pandas().set_index("source_path")
    png = out / "images/query" / f"{mapping.loc[f'query/{victim.name}', 'image_id']}.png"
    assert np.array_equal(pixels(png.read_bytes()), rgb)
    assert validate(out).ok


# --- public names: a random secret unless --seed -------------------------------------------------


def _replayed_ids(out: Path, seed: int) -> set[str]:
    """The public ids an attacker gets by replaying the import's draw with `seed` (the salt is public)."""
    from opreid_builder.public_datasets import importer
    from opreid_builder.release.writer import _public_ids

    n = len(pq.read_table(out / "private/release_map.parquet"))
    rng = np.random.default_rng(np.random.SeedSequence([seed, importer._IMPORT_SALT]))
    return set(_public_ids(n, rng).tolist())


@pytest.mark.slow
def test_public_ids_cannot_be_replayed_without_the_secret(synth_layout, tmp_path, run_opreid):
    src = synth_layout("market1501")
    a, b, fixed = tmp_path / "a", tmp_path / "b", tmp_path / "fixed"
    import_benchmark("market1501", src, a)
    import_benchmark("market1501", src, b)
    public = set(pq.read_table(a / "query.parquet").column("image_id").to_pylist())
    assert public != set(pq.read_table(b / "query.parquet").column("image_id").to_pylist())
    # the old default (seed 0) and any small seed give none of the public ids
    assert not any(public & _replayed_ids(a, seed) for seed in range(50))
    naming = json.loads((a / "private/naming.json").read_text())
    assert naming["given"] is False and naming["seed"].bit_length() > 64
    assert public <= _replayed_ids(a, naming["seed"])  # the host's secret does rebuild them
    info = read_dataset_json(a)
    assert "seed" not in info and info["naming_seed"] == "random"
    assert str(naming["seed"]) not in (a / "README.md").read_text() + (a / "dataset.json").read_text()
    # a fixed seed is reproducible, and the card says what that means
    result = run_opreid("import", "market1501", src, "-o", fixed, "--seed", 5)
    assert result.exit_code == 0, result.stderr
    assert set(pq.read_table(fixed / "query.parquet").column("image_id").to_pylist()) <= _replayed_ids(
        fixed, 5
    )
    assert "Anyone who knows that seed" in (fixed / "README.md").read_text()
