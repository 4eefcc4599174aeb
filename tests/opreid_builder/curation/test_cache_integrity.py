"""The curation cache is checked before it is trusted: a shard or a masked crop that differs from what
curate wrote (edited, truncated, swapped) is computed again, with a warning, and the outputs are those
of a clean run. A keypoints file that names none of the crops is refused."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from support.curation import make_synth, person_keypoints, write_keypoints

from manifests import MASKED_DIGESTS, DatasetLayout, read_manifest, sha256_file
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.masked_digests import changed_masked_crops
from opreid_builder.curation.pipeline import curate
from opreid_builder.errors import KeypointsFileError


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth") / "raw", identities=8, cameras=3, seed=5)


def _config(raw: Path) -> CurateConfig:
    return CurateConfig(keypoints=str(raw / "keypoints.parquet"), workers=0, shard_size=8)


@pytest.fixture(scope="module")
def clean(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    curate(raw, out, _config(raw), progress=False)
    return out


def _outputs(out: Path) -> dict:
    files = {p.name: p.read_bytes() for p in (out / "masked").iterdir()}
    files["images"] = pq.read_table(out / "private" / "images.parquet").to_pylist()
    files["curation"] = (out / "private" / "curation.json").read_text()
    files["digests"] = read_manifest(out / "cache" / "masked_digests.parquet", MASKED_DIGESTS).to_pylist()
    return files


def _copy(clean: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    return out


def _largest_shard(out: Path, stage: str) -> Path:
    """The stage's shard with the most rows (shards are cut by content: their sizes vary)."""
    shards = sorted((out / "cache" / "shards" / stage).glob("*/*.parquet"))
    return max(shards, key=lambda p: pq.ParquetFile(p).metadata.num_rows)


def _rewrite(shard: Path, table: pa.Table, *, record_digest: bool) -> None:
    """Write `table` over a shard, as an editor would; `record_digest` also forges its recorded digest."""
    pq.write_table(table, shard, compression="zstd")
    if record_digest:
        shard.with_suffix(".sha256").write_text(sha256_file(shard) + "\n")


@pytest.mark.parametrize("stage", ["read", "pose", "masks"])
@pytest.mark.parametrize("record_digest", [False, True])
def test_a_shard_with_a_row_removed_is_computed_again(raw, clean, tmp_path, caplog, stage, record_digest):
    """Used to stop with exit 70 (a KeyError) on the missing row; a forged digest does not hide it either."""
    out = _copy(clean, tmp_path)
    shard = _largest_shard(out, stage)
    table = pq.read_table(shard)
    assert table.num_rows > 1
    _rewrite(shard, table.slice(1), record_digest=record_digest)
    with caplog.at_level(logging.WARNING):
        curate(raw, out, _config(raw), progress=False)
    assert f"computing cache shard {shard} again" in caplog.text
    assert _outputs(out) == _outputs(clean)


def test_an_edited_pose_shard_is_computed_again(raw, clean, tmp_path, caplog):
    """Keypoints edited in the cache (every one hidden: every crop would be flagged occluded) are not reused."""
    out = _copy(clean, tmp_path)
    shard = _largest_shard(out, "pose")
    table = pq.read_table(shard)
    hidden = pa.array([[0.0] * len(kp) if kp else kp for kp in table.column("keypoints").to_pylist()])
    _rewrite(
        shard,
        table.set_column(table.column_names.index("keypoints"), "keypoints", hidden),
        record_digest=False,
    )
    with caplog.at_level(logging.WARNING):
        curate(raw, out, _config(raw), progress=False)
    assert "its bytes differ from the digest recorded when it was written" in caplog.text
    assert _outputs(out) == _outputs(clean)


def test_a_masked_crop_swapped_for_its_raw_crop_is_masked_again(raw, clean, tmp_path, caplog):
    out = _copy(clean, tmp_path)
    images = pq.read_table(out / "private" / "images.parquet")
    row = images.filter(
        pc.field("face_boxes").is_valid() & (pc.list_value_length(pc.field("face_boxes")) > 0)
    )
    row = row.slice(0, 1).to_pylist()[0]
    masked = out / row["masked_path"]
    masked.write_bytes((raw / row["source_path"]).read_bytes())
    with caplog.at_level(logging.WARNING):
        curate(raw, out, _config(raw), progress=False)
    assert f"{masked} differs from the masked crop curate wrote" in caplog.text
    assert _outputs(out) == _outputs(clean)


def test_a_keypoints_file_that_names_none_of_the_crops_is_refused(raw, tmp_path):
    """Keyed by paths relative to another folder, every crop used to become `no_person` without a word."""
    names = sorted(p.name for p in raw.glob("*.jpg"))
    elsewhere = write_keypoints(tmp_path, {f"raw/{n}": person_keypoints(64, 128) for n in names})
    with pytest.raises(KeypointsFileError) as err:
        curate(raw, tmp_path / "out", CurateConfig(keypoints=str(elsewhere), workers=0), progress=False)
    message = str(err.value)
    assert message.startswith("--keypoints") and f"crop '{names[0]}'" in message and "'raw/" in message
    empty = write_keypoints(tmp_path, {}, name="empty.parquet")
    with pytest.raises(KeypointsFileError, match="the file is empty"):
        curate(raw, tmp_path / "out", CurateConfig(keypoints=str(empty), workers=0), progress=False)


def test_a_keypoints_file_that_names_some_of_the_crops_warns(raw, tmp_path, caplog):
    names = sorted(p.name for p in raw.glob("*.jpg"))
    some = write_keypoints(
        tmp_path, {n: person_keypoints(64, 128) for n in names[:3]} | {"other/x.jpg": [0.0] * 51}
    )
    with caplog.at_level(logging.WARNING):
        result = curate(raw, tmp_path / "out", CurateConfig(keypoints=str(some), workers=0), progress=False)
    assert f"{len(names) - 3} of {len(names)} crops have no entry (e.g. crop '{names[3]}'" in caplog.text
    assert "the file has 'other/x.jpg'" in caplog.text
    assert result.curation["no_person"] == {"policy": "occluded", "crops": len(names) - 3}  # kept, flagged


def test_changed_masked_crops_names_a_crop_changed_since_curate(raw, clean, tmp_path):
    out = _copy(clean, tmp_path)
    layout = DatasetLayout(out)
    ids = read_manifest(layout.masked_digests, MASKED_DIGESTS).column("image_id").to_pylist()
    assert changed_masked_crops(layout, ids) == []
    (layout.masked / f"{ids[1]}.jpg").write_bytes(b"not the masked crop")
    (layout.masked / f"{ids[2]}.jpg").unlink()
    assert changed_masked_crops(layout, ids) == [ids[1], ids[2]]
