"""`opreid export --format hf` (Hugging Face datasets) and the Croissant metadata of releases and exports."""

from __future__ import annotations

import itertools
import json
import shutil

import pyarrow.parquet as pq
import pytest

from manifests import GALLERY, GROUND_TRUTH, QUERY, TRAIN, read_dataset_json, read_manifest, sha256_file
from opreid_builder.errors import ExportError
from opreid_builder.export.formats import export_release

pytestmark = pytest.mark.slow  # the synth release fixture takes ~10 s


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _load(folder, tmp_path):
    """Both configs as one dict of splits: `train` (the default) and `test` (query, gallery)."""
    from datasets import load_dataset

    train = load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))
    test = load_dataset(str(folder), "test", cache_dir=str(tmp_path / "hf-cache"))
    return {**train, **test}


def test_public_export_loads_with_datasets_and_holds_no_private_label(
    built_release, tmp_path, run_opreid, offline, caplog
):
    from datasets import Image

    public = tmp_path / "public"  # a participant's copy: no private/
    shutil.copytree(built_release, public, ignore=shutil.ignore_patterns("private", "masked", "cache"))
    result = run_opreid("export", public, "--format", "hf", "-o", tmp_path / "hf", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["contains_ground_truth"] is False and summary["warnings"] == []

    manifests = {s: read_manifest(built_release / f"{s}.parquet", schema).to_pylist()
                 for s, schema in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY))}  # fmt: skip
    import datasets.utils.logging as hf_logging

    hf_logging.enable_propagation()  # so that caplog sees its warnings
    try:
        ds = _load(tmp_path / "hf", tmp_path)
    finally:
        hf_logging.disable_propagation()
    assert set(ds) == {"train", "query", "gallery"}
    assert (
        {s: ds[s].num_rows for s in ds}
        == {s: len(rows) for s, rows in manifests.items()}
        == summary["images"]
    )
    for split, rows in manifests.items():
        assert isinstance(ds[split].features["image"], Image)
        assert ds[split]["image_id"] == [r["image_id"] for r in rows]  # submission order kept
        assert ds[split]["camid"] == [r["camid"] for r in rows]
        if split == "train":
            assert ds[split]["pid"] == [r["pid"] for r in rows]
            assert ds[split]["occluded"] == [r["occluded"] for r in rows]
        else:  # no label at all, not even an all-null column
            assert set(ds[split].features) == {"image", "image_id", "path", "camid"}
    first = ds["query"][0]["image"]
    assert first.size[1] > 0 and first.mode == "RGB"
    assert ds["query"][0]["image"].tobytes() == _decoded(built_release / manifests["query"][0]["path"])
    for shard in (tmp_path / "hf" / "data").glob("*.parquet"):
        table = pq.read_table(shard)
        if not shard.name.startswith("train"):
            assert "pid" not in table.column_names and "occluded" not in table.column_names
    assert "malformed" not in caplog.text  # every split's size is declared (num_bytes, num_examples)
    readme = (tmp_path / "hf" / "README.md").read_text()
    assert "seed" not in readme.lower()  # no release card here: a copy without private/ cannot rebuild it


def test_the_readme_holds_the_participants_card_never_the_seed(built_release, tmp_path, offline):
    from opreid_builder.release.public_package import public_card

    export_release(built_release, tmp_path / "hf", "hf")
    readme = (tmp_path / "hf" / "README.md").read_text()
    seed = read_dataset_json(built_release)["seed"]
    assert f"seed {seed}" in (built_release / "README.md").read_text()  # the host's card names it
    assert f"seed {seed}" not in readme and "seed" not in readme.split("---")[1]
    assert readme.endswith(public_card(built_release, read_dataset_json(built_release)))


def _decoded(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB").tobytes()


def test_with_ground_truth_is_host_only_and_says_so(
    built_release, tmp_path, run_opreid, expect_error, offline
):
    result = run_opreid(
        "export", built_release, "--format", "hf", "-o", tmp_path / "hf", "--with-ground-truth"
    )
    assert result.exit_code == 0, result.stderr
    assert "warning: this export holds the private ground truth" in result.stderr
    assert "it holds the private ground truth" in result.stdout
    assert "Host only" in (tmp_path / "hf" / "README.md").read_text()
    truth = {
        r["image_id"]: r
        for r in read_manifest(built_release / "private/ground_truth.parquet", GROUND_TRUTH).to_pylist()
    }
    ds = _load(tmp_path / "hf", tmp_path)
    for split in ("query", "gallery"):
        for image_id, pid, occ in zip(
            ds[split]["image_id"], ds[split]["pid"], ds[split]["occluded"], strict=True
        ):
            assert (pid, occ) == (truth[image_id]["pid"], truth[image_id]["occluded"])

    public = tmp_path / "public"
    shutil.copytree(built_release, public, ignore=shutil.ignore_patterns("private", "masked", "cache"))
    expect_error(run_opreid("export", public, "--format", "hf", "-o", tmp_path / "x", "--with-ground-truth"),
                 "opreid export", 1, "needs the private ground truth")  # fmt: skip
    expect_error(run_opreid("export", built_release, "-o", tmp_path / "m", "--with-ground-truth"),
                 "opreid export", 1, "--with-ground-truth applies to hf")  # fmt: skip
    with pytest.raises(ExportError, match="not empty"):
        export_release(built_release, tmp_path / "hf", "hf")
    assert not (tmp_path / "x").exists() and not (tmp_path / "m").exists()


def test_export_shards_and_row_groups_are_bounded(built_release, tmp_path, monkeypatch, offline):
    import opreid_builder.export.huggingface as hf

    monkeypatch.setattr(hf, "MAX_SHARD_BYTES", 40_000)
    monkeypatch.setattr(hf, "MAX_ROW_GROUP_ROWS", 7)
    export_release(built_release, tmp_path / "hf", "hf")
    shards = sorted(p.name for p in (tmp_path / "hf" / "data").glob("train-*.parquet"))
    assert len(shards) > 1 and shards[0] == f"train-00000-of-{len(shards):05d}.parquet"
    meta = pq.ParquetFile(tmp_path / "hf" / "data" / shards[0]).metadata
    assert all(meta.row_group(i).num_rows <= 7 for i in range(meta.num_row_groups))
    ds = _load(tmp_path / "hf", tmp_path)
    assert (
        ds["train"]["image_id"]
        == read_manifest(built_release / "train.parquet", TRAIN).column("image_id").to_pylist()
    )


def test_release_croissant_is_valid_and_covered_by_the_checksums(built_release):
    import mlcroissant as mlc

    path = built_release / "croissant.json"
    meta = json.loads(path.read_text())
    assert meta["conformsTo"] == "http://mlcommons.org/croissant/1.0" and meta["@type"] == "sc:Dataset"
    assert read_dataset_json(built_release)["checksums"]["croissant.json"] == sha256_file(path)
    files = {d["@id"]: d for d in meta["distribution"]}
    for split in ("train", "query", "gallery"):
        assert files[f"{split}-file"]["sha256"] == sha256_file(built_release / f"{split}.parquet")
    assert "private" not in path.read_text()  # describes the public part only
    ds = mlc.Dataset(jsonld=str(path))  # raises on any structural error
    query = read_manifest(built_release / "query.parquet", QUERY).to_pylist()
    records = list(ds.records(record_set="query"))
    assert [r["query/image_id"].decode() for r in records] == [r["image_id"] for r in query]
    image = next(iter(ds.records(record_set="images")))
    assert image["images/image"].size[1] > 0 and (built_release / image["images/path"].decode()).is_file()


def test_hf_export_croissant_reads_the_shards(built_release, tmp_path):
    import mlcroissant as mlc

    export_release(built_release, tmp_path / "hf", "hf")
    ds = mlc.Dataset(jsonld=str(tmp_path / "hf" / "croissant.json"))
    gallery = list(itertools.islice(ds.records(record_set="gallery"), 3))
    assert "gallery/pid" not in gallery[0] and gallery[0]["gallery/image"].mode == "RGB"
    assert (
        sum(1 for _ in ds.records(record_set="train"))
        == read_manifest(built_release / "train.parquet", TRAIN).num_rows
    )
