"""`train`, `extract` and `score` check the release's manifests against dataset.json before they read a
row (`manifests.verify_manifests`): a pid column added or rows dropped since the build was trained,
extracted and scored silently; `validate` and `pack` caught it, and now the three refuse it too."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import ChecksumError, DatasetLayout, ExitCode, verify_manifests


@pytest.fixture
def edited(built_release, tmp_path):
    """Copies of the built release, each with one manifest edited after the build."""

    def make(how: str):
        out = tmp_path / how
        shutil.copytree(built_release, out, ignore=shutil.ignore_patterns("masked", "cache"))
        layout = DatasetLayout(out)
        if how == "pid column in query":
            table = pq.read_table(layout.query)
            table = table.append_column("pid", pa.array(range(table.num_rows), pa.int64()))
            pq.write_table(table.replace_schema_metadata(pq.read_schema(layout.query).metadata), layout.query)
        elif how == "gallery rows dropped":
            table = pq.read_table(layout.gallery)
            pq.write_table(table.slice(0, table.num_rows - 3), layout.gallery)
        elif how == "train rows dropped":
            table = pq.read_table(layout.train)
            pq.write_table(table.slice(0, table.num_rows // 2), layout.train)
        elif how == "ground truth edited":
            table = pq.read_table(layout.ground_truth)
            pq.write_table(table.slice(1), layout.ground_truth)
        return out

    return make


def test_an_untouched_release_passes(built_release):
    verify_manifests(built_release)


@pytest.mark.parametrize("how", ["pid column in query", "gallery rows dropped", "ground truth edited"])
def test_score_refuses_an_edited_release(how, edited, tmp_path, run_opreid, expect_error):
    out = edited(how)
    q, g = (pq.read_metadata(DatasetLayout(out).manifest(s)).num_rows for s in ("query", "gallery"))
    np.save(tmp_path / "sub.npy", np.zeros((q, g), np.float32))
    result = run_opreid("score", tmp_path / "sub.npy", "--data", out)
    expect_error(result, "opreid score", ExitCode.INVALID_INPUT, "does not match its sha256 in dataset.json")


def test_training_reads_no_edited_train_split(edited):
    from reid_model.data.datasets import read_train

    with pytest.raises(ChecksumError, match="train.parquet: does not match its sha256"):
        read_train(edited("train rows dropped"))


@pytest.mark.slow  # the train command builds its model first (~10 s)
def test_train_refuses_an_edited_release(edited, tmp_path, run_opreid, expect_error, tiny_steps):
    out = edited("train rows dropped")
    result = run_opreid("train", "--config", "tiny", "--data", out, "-o", tmp_path / "run", "--no-progress",
                        *tiny_steps)  # fmt: skip
    expect_error(result, "opreid train", ExitCode.INVALID_INPUT, "train.parquet: does not match its sha256")


@pytest.mark.parametrize("split", ["query", "gallery"])
def test_extract_reads_no_edited_split(split, edited):
    from reid_model.data.datasets import read_split

    out = edited("pid column in query" if split == "query" else "gallery rows dropped")
    with pytest.raises(ChecksumError, match=f"{split}.parquet: does not match its sha256"):
        read_split(out, split)


def test_a_manifest_missing_from_the_listing_is_refused(built_release, tmp_path):
    out = tmp_path / "rel"
    shutil.copytree(built_release, out, ignore=shutil.ignore_patterns("masked", "cache", "private"))
    (out / "private").mkdir()
    shutil.copyfile(built_release / "private/ground_truth.parquet", out / "private/ground_truth.parquet")
    verify_manifests(out)  # listed and unchanged
    info = (
        (out / "dataset.json").read_text().replace('"private/ground_truth.parquet"', '"private/gt.parquet"')
    )
    (out / "dataset.json").write_text(info)
    with pytest.raises(ChecksumError, match="not listed in dataset.json"):
        verify_manifests(out)
