"""`opreid import`: every public layout, from its synthetic copy, gives exactly the truth's splits, pids,
cameras and flags, and validates; copies broken by hand fail with one exact line and write nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from support.paths import SHARED_DATA

from manifests import GROUND_TRUTH, KEYPOINTS_FILE, ExitCode, read_dataset_json, read_manifest, write_manifest
from opreid_builder.curation.config import CurateConfig
from opreid_builder.public_datasets.importer import ImportOptions, import_benchmark
from opreid_builder.release.validate import validate
from opreid_builder.release.writer import RELEASE_MAP
from opreid_builder.split.public_formats import FORMATS, LAYOUTS
from opreid_builder.synth.layouts import LAYOUT_TRUTH

SUBSET = {"cuhk03": "detected"}


def truth_of(layout_out: Path, fmt: str) -> pd.DataFrame:
    """The synthetic layout's truth, for the files an import of `fmt` (its default subset) reads."""
    truth = pq.read_table(layout_out / "truth.parquet").to_pandas()
    if fmt in SUBSET:
        truth = truth[truth["file"].str.startswith(f"{SUBSET[fmt]}/")]
    return truth.reset_index(drop=True)


def released(out: Path) -> pd.DataFrame:
    """Every released image with its public split, pid, camid, flag and the official file it came from."""
    gt = pq.read_table(out / "private/ground_truth.parquet").to_pandas()
    mapping = pq.read_table(out / "private/release_map.parquet").to_pandas()
    return gt.merge(mapping[["image_id", "source_path", "source_pid", "role"]], on="image_id", validate="1:1")


def root_of(layout_out: Path, fmt: str) -> Path:
    return layout_out / LAYOUTS[fmt].root_names[0]


@pytest.fixture
def copy_of(synth_layout, tmp_path):
    """A private copy of a synthetic layout (the dataset folder itself), to break by hand."""

    def make(fmt: str) -> Path:
        dest = tmp_path / "copy" / LAYOUTS[fmt].root_names[0]
        shutil.copytree(root_of(synth_layout(fmt), fmt), dest)
        return dest

    return make


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.slow
def test_import_gives_the_truth_exactly(fmt, synth_layout, tmp_path, run_opreid):
    src = synth_layout(fmt)
    truth = truth_of(src, fmt)
    out = tmp_path / "rel"
    result = import_benchmark(fmt, src, out)
    rel = released(out).set_index("source_path")
    expected = truth[truth["split"].notna()].set_index("file")

    assert sorted(rel.index) == sorted(expected.index)
    joined = rel.join(expected.add_suffix("_truth"))
    assert (joined["split"] == joined["split_truth"]).all()
    assert (joined["source_pid"] == joined["pid_truth"]).all()
    assert (joined["camid"] == joined["camid_truth"]).all()
    assert (joined["occluded"] == joined["occluded_truth"].fillna(False).astype(bool)).all()

    for split in ("train", "query", "gallery"):
        part, want = joined[joined["split"] == split], expected[expected["split"] == split]
        assert result.counts[split]["images"] == len(want)
        assert result.counts[split]["ids"] == want["pid"].nunique()
        # one release pid per source pid and back (test pids in their own namespace)
        pairs = part[["pid", "source_pid"]].drop_duplicates()
        assert pairs["pid"].is_unique and pairs["source_pid"].is_unique
        flags = "dataset" if len(want) and want["occluded"].notna().all() else "unknown"
        assert result.occlusion_flags[split] == flags
    train_pids = sorted(joined.loc[joined["split"] == "train", "pid"].unique())
    assert train_pids == list(range(len(train_pids)))
    assert set(joined.loc[joined["split"] != "train", "pid"]).isdisjoint(train_pids)

    assert result.junk == int((truth["role"] == "junk").sum())
    assert [p for p, _ in result.unexpected] == sorted(truth.loc[truth["role"] == "extra", "file"])
    if fmt not in SUBSET:
        assert sum(result.unused.values()) == int((truth["role"] == "unused").sum())
    assert result.counts["query"]["without_positive"] == 0

    info = read_dataset_json(out)
    assert (
        info["protocol"] == fmt
        and info["source"]["format"] == fmt
        and info["source"]["subset"] == SUBSET.get(fmt)
    )
    assert info["occlusion_flags"] == result.occlusion_flags
    assert (
        info["official_counts"]["query"]["images"]
        == LAYOUTS[fmt].published_counts(SUBSET.get(fmt))["query"].images
    )
    cameras = info["conventions"]["cameras"]
    assert ("query side camera 1, gallery side camera 2" in cameras) == LAYOUTS[fmt].camera_convention
    card = (out / "README.md").read_text()
    assert LAYOUTS[fmt].title in card and "Thumbs.db" in card
    report = validate(out)
    assert report.ok, report.violations
    assert report.summary["protocol"] == fmt
    ok = run_opreid("validate", out)
    assert ok.exit_code == 0 and f"({fmt} protocol)" in ok.stdout


@pytest.mark.slow
def test_public_names_are_opaque_and_nothing_public_carries_the_official_name(synth_layout, tmp_path):
    out = tmp_path / "rel"
    import_benchmark("market1501", synth_layout("market1501"), out)
    official = {Path(p).stem for p in released(out)["source_path"]}
    public_text = "".join(
        pq.read_table(out / f"{s}.parquet").to_pandas().to_csv() for s in ("train", "query", "gallery")
    )
    assert not [name for name in official if name in public_text]
    for split in ("query", "gallery"):
        assert all(len(p.stem) == 12 for p in (out / "images" / split).iterdir())
    dataset_json = (out / "dataset.json").read_text()
    assert str(tmp_path) not in dataset_json and str(tmp_path) not in (out / "README.md").read_text()


@pytest.mark.slow
def test_images_are_hard_links_unless_copy(synth_layout, tmp_path):
    src = synth_layout("dukemtmc")
    linked, copied = tmp_path / "linked", tmp_path / "copied"
    import_benchmark("dukemtmc", src, linked)
    import_benchmark("dukemtmc", src, copied, ImportOptions(copy=True))
    row = released(linked).iloc[0]
    source = root_of(src, "dukemtmc") / row["source_path"]
    path = (
        pq.read_table(linked / f"{row['split']}.parquet")
        .to_pandas()
        .set_index("image_id")
        .loc[row["image_id"], "path"]
    )
    assert os.stat(linked / path).st_ino == os.stat(source).st_ino and not (linked / path).is_symlink()
    assert read_dataset_json(linked)["images"]["hardlink"] == len(released(linked))
    info = read_dataset_json(copied)
    assert info["images"]["copy"] == len(released(copied)) and info["images"]["method"] == "copy"
    assert all(os.stat(p).st_nlink == 1 for p in (copied / "images").rglob("*") if p.is_file())


@pytest.mark.slow
def test_same_copy_and_seed_give_the_same_release_byte_for_byte(synth_layout, tmp_path):
    src = synth_layout("occluded_reid")
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    import_benchmark("occluded_reid", src, a, ImportOptions(seed=7))
    import_benchmark("occluded_reid", src, b, ImportOptions(seed=7))
    import_benchmark("occluded_reid", src, c, ImportOptions(seed=1))

    def digest(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }

    assert digest(a) == digest(b)
    assert (a / "query.parquet").read_bytes() != (c / "query.parquet").read_bytes()


@pytest.mark.slow
def test_keypoints_fill_the_flags_the_dataset_lacks(synth_layout, tmp_path):
    src = synth_layout("occluded_duke")
    out = tmp_path / "rel"
    config = CurateConfig(keypoints=str(src / "keypoints.parquet"))
    result = import_benchmark("occluded_duke", src, out, ImportOptions(curation=config))
    assert result.occlusion_flags == {
        "train": "keypoints-file",
        "query": "dataset",
        "gallery": "keypoints-file",
    }
    truth = truth_of(src, "occluded_duke").set_index("file")
    rel = released(out).set_index("source_path")
    drawn = truth.loc[rel.index, "drawn_occluded"]
    keyed = rel["split"] != "query"
    assert (rel.loc[keyed, "occluded"] == drawn[keyed]).all()
    assert rel.loc[~keyed, "occluded"].all()
    assert rel["occluded"].any() and not rel["occluded"].all()
    info = read_dataset_json(out)
    assert info["parameters"]["curation"]["keypoints"]["source"] == "keypoints-file"
    assert info["parameters"]["curation"]["faces"] is None
    assert validate(out).ok


@pytest.mark.slow
def test_mask_faces_releases_masked_crops(synth_layout, tmp_path, monkeypatch):
    monkeypatch.delenv("OPREID_FACE_MODEL", raising=False)
    src = synth_layout("partial_ilids")
    out = tmp_path / "rel"
    config = CurateConfig(keypoints=str(src / "keypoints.parquet"))  # the bundled YuNet + head boxes
    result = import_benchmark("partial_ilids", src, out, ImportOptions(curation=config, mask_faces=True))
    n = result.counts["query"]["images"] + result.counts["gallery"]["images"]
    assert result.images["masked"] == n and result.images["hardlink"] == 0
    assert all(p.suffix == ".jpg" for p in (out / "images").rglob("*") if p.is_file())
    assert validate(out).ok
    # the flags stay the dataset's own: the probes are partial, the gallery whole
    assert result.occlusion_flags == {"train": "unknown", "query": "dataset", "gallery": "dataset"}


def test_jpeg_metadata_is_stripped_and_pixels_kept(copy_of, tmp_path):
    root = copy_of("market1501")
    victim = sorted((root / "query").glob("*.jpg"))[0]
    with Image.open(victim) as img:
        pixels = np.asarray(img).copy()
        exif = Image.Exif()
        exif[270] = victim.name
        img.save(victim, exif=exif, quality=95)
    with Image.open(victim) as img:
        pixels = np.asarray(img).copy()
    out = tmp_path / "rel"
    result = import_benchmark("market1501", root, out)
    assert result.images["stripped"] == 1
    rel = released(out)
    image_id = rel.loc[rel["source_path"] == f"query/{victim.name}", "image_id"].item()
    with Image.open(out / "images/query" / f"{image_id}.jpg") as img:
        assert "exif" not in img.info and np.array_equal(np.asarray(img), pixels)
    assert validate(out).ok


def test_unreadable_and_stray_files_are_listed_and_skipped(copy_of, tmp_path):
    root = copy_of("market1501")
    victim = sorted((root / "bounding_box_train").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    (root / "query" / "notes.txt").write_text("hello")
    (root / "stray").mkdir()
    os.symlink(victim, root / "query" / "link.jpg")
    out = tmp_path / "rel"
    result = import_benchmark("market1501", root, out)
    assert [p for p, _ in result.unreadable] == [f"bounding_box_train/{victim.name}"]
    assert {p: why for p, why in result.unexpected} == {
        "bounding_box_test/Thumbs.db": "not an image",
        "query/link.jpg": "a symbolic link (only regular files are read)",
        "query/notes.txt": "not an image",
        "stray/": "not part of the market1501 layout",
    }
    card = (out / "README.md").read_text()
    assert "`query/notes.txt`: not an image" in card and f"`bounding_box_train/{victim.name}`" in card
    assert validate(out).ok


def test_a_query_without_a_cross_camera_match_is_reported_not_refused(copy_of, tmp_path, run_opreid):
    root = copy_of("dukemtmc")
    query = sorted((root / "query").glob("*.jpg"))[0]
    pid = query.name.split("_")[0]
    for match in (root / "bounding_box_test").glob(f"{pid}_*.jpg"):
        match.unlink()
    out = tmp_path / "rel"
    result = import_benchmark("dukemtmc", root, out)
    lonely = sum(1 for p in (root / "query").glob(f"{pid}_*.jpg"))
    assert result.counts["query"]["without_positive"] == lonely
    report = validate(out)
    assert report.ok and len(report.summary["queries_without_positive"]) == lonely
    assert any(f"{lonely} of {result.counts['query']['images']} queries have no cross-camera match" in n
               for n in report.notes)  # fmt: skip
    res = run_opreid("validate", out)
    assert res.exit_code == 0 and "opreid validate: note:" in res.stderr


@pytest.mark.slow
def test_reimport_replaces_a_previous_import_and_refuses_anything_else(
    synth_layout, tmp_path, run_opreid, expect_error
):
    src = synth_layout("partial_reid")
    out = tmp_path / "rel"
    import_benchmark("partial_reid", src, out)
    (out / "leftover.txt").write_text("x")
    import_benchmark("partial_reid", src, out, ImportOptions(seed=3))
    assert not (out / "leftover.txt").exists()
    assert json.loads((out / "private/naming.json").read_text())["seed"] == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    result = run_opreid("import", "partial_reid", src, "-o", other)
    expect_error(result, "opreid import", ExitCode.USER, "neither empty nor an imported release")
    assert (other / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "rel"]


@pytest.mark.slow
def test_cli_prints_the_counts_and_json(synth_layout, tmp_path, run_opreid):
    src = synth_layout("cuhk03")
    res = run_opreid("import", "cuhk03", src, "-o", tmp_path / "lab", "--subset", "labeled", "--json")
    assert res.exit_code == 0, res.stderr
    body = json.loads(res.stdout)
    assert (
        body["subset"] == "labeled"
        and body["validate"]["ok"]
        and body["official_counts"]["train"]["images"] == 7368
    )
    rel = released(tmp_path / "lab")
    assert rel["source_path"].str.startswith("labeled/").all()
    res = run_opreid("import", "cuhk03", src, "-o", tmp_path / "det")
    assert res.exit_code == 0 and "imported cuhk03 (detected)" in res.stdout and "767/7365" in res.stdout
    assert "the published cuhk03 has 767 / 7365" in res.stderr


def test_scores_report_occlusion_breakdowns_only_where_flags_are_known(synth_layout, tmp_path):
    from benchmarks.scoring import score_submission

    for fmt, breakdown in (("occluded_reid", True), ("market1501", False)):
        out = tmp_path / fmt
        import_benchmark(fmt, synth_layout(fmt), out)
        q = len(pq.read_table(out / "query.parquet"))
        g = len(pq.read_table(out / "gallery.parquet"))
        np.save(tmp_path / f"{fmt}.npy", np.random.default_rng(0).random((q, g), dtype=np.float32))
        report = score_submission(tmp_path / f"{fmt}.npy", out)
        assert bool(report.breakdown) is breakdown, (fmt, report.breakdown)


# --- copies broken by hand: one exact line, nothing written -------------------------------------


def _first(folder: Path, pattern: str = "*.jpg") -> Path:
    return sorted(folder.glob(pattern))[0]


def _nothing_written(parent: Path) -> None:
    assert sorted(p.name for p in parent.iterdir()) == ["copy"], list(parent.iterdir())


def test_missing_query_folder(copy_of, tmp_path, run_opreid, expect_error):
    root = copy_of("market1501")
    shutil.rmtree(root / "query")
    result = run_opreid("import", "market1501", root.parent, "-o", tmp_path / "out")
    message = expect_error(result, "opreid import", ExitCode.USER)
    assert message == (
        f"{root}/query: missing folder; the market1501 layout needs bounding_box_train/, query/, "
        "bounding_box_test/ (SRC may also be the folder holding Market-1501-v15.09.15/)"
    )
    _nothing_written(tmp_path)


def test_a_train_identity_in_the_gallery(copy_of, tmp_path, run_opreid, expect_error):
    root = copy_of("market1501")
    train = _first(root / "bounding_box_train")
    pid = int(train.name.split("_")[0])
    shutil.copyfile(train, root / "bounding_box_test" / train.name)
    result = run_opreid("import", "market1501", root, "-o", tmp_path / "out")
    message = expect_error(result, "opreid import", ExitCode.INVALID_INPUT)
    assert message == (
        f"train pid {pid} is also in the test set (bounding_box_test/{train.name}): train and test "
        "identities must be disjoint"
    )
    _nothing_written(tmp_path)


def test_pid_zero_in_a_query(copy_of, tmp_path, run_opreid, expect_error):
    root = copy_of("market1501")
    shutil.copyfile(_first(root / "query"), root / "query" / "0000_c1s1_000001_00.jpg")
    result = run_opreid("import", "market1501", root, "-o", tmp_path / "out")
    message = expect_error(result, "opreid import", ExitCode.INVALID_INPUT)
    assert (
        message
        == "query/0000_c1s1_000001_00.jpg: pid 0 marks a distractor, allowed only in bounding_box_test/"
    )
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("fmt", "breakage", "expected"),
    [
        ("dukemtmc", lambda r: (r / "query" / "0001_c2.jpg").write_bytes(b"x"),
         "query/0001_c2.jpg: file name does not parse as <pid>_c<cam>_f<frame>.jpg (e.g. 0001_c2_f0046182.jpg)"),
        ("occluded_reid", lambda r: shutil.copyfile(_first(r / "whole_body_images/001", "*.tif"),
                                                    r / "whole_body_images/001/002_09.tif"),
         "whole_body_images/001/002_09.tif: the name's pid 2 differs from its identity folder 001/"),
        ("msmt17", lambda r: (r / "list_query.txt").write_text("0000/nothing.jpg\n"),
         "list_query.txt: line 1 does not parse as '<path> <pid>' (e.g. '0000/0000_000_01_0303morning_0015_0.jpg 0')"),
        ("msmt17", lambda r: (r / "list_gallery.txt").write_text("0000/gone.jpg 0\n"),
         "list_gallery.txt: line 1: test/0000/gone.jpg is missing"),
        ("partial_ilids", lambda r: shutil.rmtree(r / "Gallery"),
         "Gallery: missing folder; the partial_ilids layout needs Probe/, Gallery/"),
    ],
)  # fmt: skip
def test_broken_copies_name_the_file(fmt, breakage, expected, copy_of, tmp_path, run_opreid, expect_error):
    root = copy_of(fmt)
    breakage(root)
    result = run_opreid("import", fmt, root, "-o", tmp_path / "out")
    message = expect_error(result, "opreid import", result.exit_code)
    assert result.exit_code in (ExitCode.USER, ExitCode.INVALID_INPUT)
    assert expected in message, message
    _nothing_written(tmp_path)


def test_face_options_need_mask_faces(synth_layout, tmp_path, run_opreid, expect_error):
    result = run_opreid(
        "import", "market1501", synth_layout("market1501"), "-o", tmp_path / "o", "--face-mask", "blur"
    )
    expect_error(result, "opreid import", ExitCode.USER, "--face-mask applies with --mask-faces only")


# --- validate on imported releases broken by hand -----------------------------------------------


@pytest.fixture
def imported(synth_layout, tmp_path):
    out = tmp_path / "rel"
    import_benchmark("market1501", synth_layout("market1501"), out, ImportOptions(copy=True))
    return out


def _rewrite_json(out: Path, change) -> None:
    info = json.loads((out / "dataset.json").read_text())
    change(info)
    (out / "dataset.json").write_text(json.dumps(info))


def test_validate_recorded_counts(imported):
    _rewrite_json(imported, lambda info: info["counts"]["query"].update(images=999))
    assert [str(v) for v in validate(imported).violations] == [
        "counts: query: dataset.json records 5 ids / 999 images, the release holds 5 / 11"
    ]


def test_validate_unknown_flags_stay_unset(imported):
    gt = pq.read_table(imported / "private/ground_truth.parquet").to_pandas()
    gt.loc[gt["split"] == "gallery", "occluded"] = True
    write_manifest(gt, imported / "private/ground_truth.parquet", GROUND_TRUTH)
    found = [str(v) for v in validate(imported).violations]
    assert found == [
        "checksum: private/ground_truth.parquet does not match its sha256 in dataset.json (modified)",
        "occlusion-flags: gallery: flags are marked unknown in dataset.json, yet 31 images are flagged occluded",
    ]


def test_validate_pid_zero_outside_the_gallery(imported):
    mapping = pq.read_table(imported / "private/release_map.parquet")
    df = mapping.to_pandas()
    victim = df.index[df["split"] == "query"][0]
    df.loc[victim, "source_pid"] = 0
    write_manifest(df, imported / "private/release_map.parquet", RELEASE_MAP)
    found = [str(v) for v in validate(imported).violations]
    image_id = df.loc[victim, "image_id"]
    assert (f"distractor-pid: query image {image_id} comes from pid 0 (a distractor): pid 0 may only give "
            "gallery distractors") in found  # fmt: skip


def test_validate_unknown_protocol(imported):
    _rewrite_json(imported, lambda info: info.update(protocol="nope"))
    found = [str(v) for v in validate(imported).violations]
    assert found[0].startswith(
        "protocol: dataset.json names the protocol 'nope'; this opreid knows opreid, market1501"
    )


@pytest.mark.slow
def test_imported_market_layout_trains_extracts_and_scores(tmp_path, run_opreid):
    """synth --layout market1501 -> import -> train (tiny) -> extract -> score, through the commands, with
    the paper's cross-dataset pair: an imported Occluded-REID layout evaluated by --eval-data."""
    raw, rel, run = tmp_path / "raw", tmp_path / "rel", tmp_path / "run"
    oreid_raw, oreid = tmp_path / "oreid_raw", tmp_path / "oreid"
    for args in (
        ("synth", raw, "--layout", "market1501", "--identities", 24, "--cameras", 4, "--seed", 3),
        ("import", "market1501", raw, "-o", rel, "--no-progress"),
        ("synth", oreid_raw, "--layout", "occluded_reid", "--identities", 12, "--seed", 4),
        ("import", "occluded_reid", oreid_raw, "-o", oreid, "--no-progress"),
        ("train", "--config", "tiny", "--data", rel, "--eval-data", oreid, "-o", run, "--no-progress", "solver.max_epochs=2",
         "solver.iters_per_epoch=3", "data.ims_per_batch=16", "data.num_workers=0", "train.num_threads=1",
         "train.eval_period=1", "solver.warmup_iters=2", "solver.delay_epochs=1"),
        ("extract", "--checkpoint", run / "checkpoints/last.pt", "--data", rel, "-o", tmp_path / "pred.npy",
         "--num-workers", 0, "--no-progress"),
    ):  # fmt: skip
        result = run_opreid(*args)
        assert result.exit_code == 0, (args[0], result.stderr[-2000:])
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluated = {(e["dataset"], e.get("protocol")) for e in evals if e["kind"] == "eval"}
    assert evaluated == {
        (read_dataset_json(rel)["name"], "market1501"),
        (read_dataset_json(oreid)["name"], "occluded_reid"),
    }, "training evaluated on the imported query/gallery and on the --eval-data release"
    score = run_opreid("score", tmp_path / "pred.npy", "--data", rel, "--json")
    assert score.exit_code == 0, score.stderr
    body = json.loads(score.stdout)
    assert body["num_valid_queries"] == read_dataset_json(rel)["counts"]["query"]["images"]
    assert 0.0 < body["mAP"] <= 1.0 and not body.get("breakdown")  # Market has no occlusion flags


def test_synth_layout_command_writes_the_layout_and_its_truth(tmp_path, run_opreid, expect_error):
    out = tmp_path / "layouts"
    res = run_opreid(
        "synth", out, "--layout", "msmt17", "--identities", 8, "--images-per-identity", "8", "--json"
    )
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["layout"] == "msmt17" and summary["root"] == "MSMT17_V1"
    root = out / "MSMT17_V1"
    assert {p.name for p in root.iterdir()} == {
        "train", "test", "list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt"
    }  # fmt: skip
    truth = read_manifest(out / "truth.parquet", LAYOUT_TRUTH).to_pandas()
    assert summary["roles"] == truth["role"].value_counts().to_dict()
    assert (truth["role"] == "unused").sum() == len((root / "list_val.txt").read_text().splitlines()) > 0
    listed = {line.split()[0] for line in (root / "list_query.txt").read_text().splitlines()}
    assert listed == {f[len("test/") :] for f in truth.loc[truth["role"] == "query", "file"]}
    # test ids restart at 0, as in MSMT17: the same numbers as train ids, other people
    assert set(truth.loc[truth["split"] == "train", "pid"]) & set(truth.loc[truth["split"] == "query", "pid"])
    keypoints = read_manifest(out / "keypoints.parquet", KEYPOINTS_FILE).to_pandas()
    assert set(truth.loc[truth["split"].notna(), "file"]) <= set(keypoints["file"])
    again = run_opreid("synth", out, "--layout", "msmt17")
    expect_error(again, "opreid synth", ExitCode.USER, "already holds the msmt17 layout")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("OPREID_TEST_POSE_MODEL"), reason="OPREID_TEST_POSE_MODEL not set")
def test_a_real_pose_model_flags_what_the_dataset_does_not(synth_layout, tmp_path, run_opreid):
    src = synth_layout("occluded_duke")
    out = tmp_path / "rel"
    res = run_opreid("import", "occluded_duke", src, "-o", out, "--pose-model", os.environ["OPREID_TEST_POSE_MODEL"],
                     "--device", "cpu", "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    body = json.loads(res.stdout)
    assert body["occlusion_flags"] == {"train": "pose", "query": "dataset", "gallery": "pose"}
    rel = released(out)
    truth = truth_of(src, "occluded_duke").set_index("file").loc[rel["source_path"]]
    flagged = rel["split"] != "query"
    agree = (
        rel.loc[flagged, "occluded"].to_numpy() == truth["drawn_occluded"].to_numpy()[flagged.to_numpy()]
    ).mean()
    assert agree > 0.6, agree  # a real detector on synthetic crops: mostly (0.83 measured), not always
    assert read_dataset_json(out)["parameters"]["curation"]["keypoints"]["source"] == "pose"


def test_cuhk03_src_may_be_the_subset_folder_itself(synth_layout, tmp_path):
    src = root_of(synth_layout("cuhk03"), "cuhk03") / "labeled"
    result = import_benchmark("cuhk03", src, tmp_path / "rel")
    assert (
        result.subset == "labeled"
        and released(tmp_path / "rel")["source_path"].str.startswith("labeled/").all()
    )
    assert (
        result.unused == {"detected/": (result.unused or {}).get("detected/")}
        and result.unused["detected/"] > 0
    )


def test_images_with_the_same_bytes_are_kept_and_noted(copy_of, tmp_path):
    root = copy_of("dukemtmc")
    original = _first(root / "bounding_box_test")
    twin = original.with_name(original.name.replace("_f", "_f9"))
    shutil.copyfile(original, twin)
    out = tmp_path / "rel"
    result = import_benchmark("dukemtmc", root, out)
    assert {f"bounding_box_test/{original.name}", f"bounding_box_test/{twin.name}"} <= set(
        released(out)["source_path"]
    )
    report = validate(out)
    assert report.ok and any("has the same bytes as" in n for n in report.notes)
    assert (
        any("released more than once" in n for n in report.notes) and result.counts["gallery"]["images"] > 0
    )


def test_images_are_copied_where_a_hard_link_is_impossible(synth_layout, tmp_path, monkeypatch, caplog):
    import errno

    import opreid_builder.public_datasets.importer as module

    def cross_device(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(module.os, "link", cross_device)
    result = import_benchmark("partial_ilids", synth_layout("partial_ilids"), tmp_path / "rel")
    assert (
        result.images["copy"] == 24
        and result.images["hardlink"] == 0
        and result.images["method"] == "hardlink"
    )
    assert "24 image(s) copied: a hard link was not possible" in caplog.text
    assert validate(tmp_path / "rel").ok


# --- a layout is not a dataset: the name, and whether it is the published one ----------------------


@pytest.mark.slow
def test_a_copy_whose_counts_differ_is_not_named_the_published_dataset(synth_layout, tmp_path, run_opreid):
    src = synth_layout("market1501")
    result = run_opreid("import", "market1501", src, "-o", tmp_path / "plain", "--json")
    assert result.exit_code == 0, result.stderr
    info = read_dataset_json(tmp_path / "plain")
    assert info["name"] == "Market-1501-v15.09.15 in the Market-1501 layout (imported by opreid)"
    assert info["published_dataset"] is None and info["published_by"] is None
    card = (tmp_path / "plain" / "README.md").read_text()
    assert (
        card.startswith(f"# {info['name']}: the Market-1501 protocol")
        and "is not the published Market-1501" in card
    )

    named = run_opreid("import", "market1501", src, "-o", tmp_path / "named", "--name", "CUHK03-NP (labeled)")
    assert named.exit_code == 0 and "name: CUHK03-NP (labeled) (not the published market1501" in named.stdout
    assert read_dataset_json(tmp_path / "named")["name"] == "CUHK03-NP (labeled)"

    said = run_opreid("import", "market1501", src, "-o", tmp_path / "said", "--published")
    assert said.exit_code == 0, said.stderr
    info = read_dataset_json(tmp_path / "said")
    assert (info["published_dataset"], info["published_by"]) == ("market1501", "user")
    assert info["name"] == "Market-1501, official protocol (imported by opreid)"


def test_a_copy_with_the_published_counts_is_the_published_dataset(synth_layout, tmp_path, monkeypatch):
    import dataclasses

    import opreid_builder.public_datasets.importer as module
    from opreid_builder.split.public_formats import Counts, get_layout

    src = synth_layout("partial_ilids")
    layout = get_layout("partial_ilids")
    truth = truth_of(src, "partial_ilids")
    counts = {
        s: Counts(int(t["pid"].nunique()), len(t)) for s, t in truth[truth["split"].notna()].groupby("split")
    }
    as_published = dataclasses.replace(layout, published={"": counts})
    monkeypatch.setattr(module, "get_layout", lambda fmt: as_published)
    result = import_benchmark("partial_ilids", src, tmp_path / "rel")
    assert result.published == "counts"
    info = read_dataset_json(tmp_path / "rel")
    assert info["published_dataset"] == "partial_ilids" and info["name"].startswith(
        "Partial-iLIDS, official protocol"
    )


@pytest.mark.skipif(
    not (SHARED_DATA / "cuhk01").is_dir(),
    reason=f"{SHARED_DATA}/cuhk01 (real CUHK01 crops in the Market-1501 layout) is not here",
)
@pytest.mark.slow
def test_cuhk01_in_the_market_layout_is_not_market1501(tmp_path):
    src = SHARED_DATA / "cuhk01"
    result = import_benchmark("market1501", src, tmp_path / "rel")
    info = read_dataset_json(tmp_path / "rel")
    assert result.published is None and info["published_dataset"] is None
    assert (
        info["name"] == "cuhk01 in the Market-1501 layout (imported by opreid)"
        and "Market-1501," not in info["name"]
    )
    assert result.counts["train"]["ids"] == 871 and result.counts["query"]["images"] == 100
    assert validate(tmp_path / "rel").ok
