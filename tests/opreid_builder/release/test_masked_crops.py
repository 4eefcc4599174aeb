"""A raw crop swapped into masked/ between `curate` and `build-split --curated` used to be released,
with consistent checksums, and pass `validate`. Now build-split refuses it before writing, and
`validate` checks every released image against the masked crop curate wrote for its source."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests import read_dataset_json, sha256_file, write_dataset_json
from opreid_builder.release.validate import validate

#: The split the session's built_release was drawn with (tests/conftest.py).
BUILT_SPLIT = (
    "--preset",
    "opreid",
    "--scale",
    "0.005",
    "--train-ids",
    "20",
    "--train-images",
    "200",
    "--seed",
    "2",
)


def _query_image(release: Path) -> tuple[str, str, str]:
    """A released query image: its public id, its path in the release, and its source image id."""
    query = pq.read_table(release / "query.parquet").to_pylist()[0]
    mapping = {
        r["image_id"]: r["source_image_id"]
        for r in pq.read_table(release / "private" / "release_map.parquet").to_pylist()
    }
    return query["image_id"], query["path"], mapping[query["image_id"]]


def _raw_crop(release: Path, source_image_id: str) -> bytes:
    images = pq.read_table(release / "private" / "images.parquet").to_pylist()
    source = next(r["source_path"] for r in images if r["image_id"] == source_image_id)
    return (release.parent / "raw" / source).read_bytes()


def test_a_released_image_that_is_not_its_masked_crop_fails_validate(built_release, tmp_path):
    copy = tmp_path / "rel"
    shutil.copytree(built_release, copy)
    assert validate(copy).ok
    image_id, path, source = _query_image(copy)
    (copy / path).write_bytes(_raw_crop(built_release, source))  # what a swapped masked/ crop releases
    info = read_dataset_json(copy)
    info["checksums"][path] = sha256_file(copy / path)  # ... with checksums that match it
    write_dataset_json(copy, info)
    report = validate(copy)
    assert [v.code for v in report.violations] == ["masked-crop"]
    assert f"released image {image_id} is not the masked crop curate wrote for its source {source}" in str(
        report.violations[0]
    )


@pytest.mark.slow
def test_a_raw_crop_swapped_into_masked_is_refused_by_build_split_curated(
    built_release, tmp_path, run_opreid, expect_error
):
    """`build-split --curated` releases masked/ as it stands: a changed crop is refused before anything is
    written, so the release keeps its masked image."""
    copy = tmp_path / "rel"
    shutil.copytree(built_release, copy)
    _, path, source = _query_image(copy)
    released = (copy / path).read_bytes()
    (copy / "masked" / f"{source}.jpg").write_bytes(_raw_crop(built_release, source))
    result = run_opreid("build-split", "-o", copy, "--curated", *BUILT_SPLIT, "--no-progress")
    expect_error(result, "opreid build-split", 2, f"masked/{source}.jpg", "run `opreid curate` again")
    assert (copy / path).read_bytes() == released and validate(copy).ok
