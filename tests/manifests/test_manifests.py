"""The data contract: round trips, validation errors, atomic writes, third-party readability."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import manifests
from manifests import (
    ColumnTypeError,
    ManifestError,
    MissingColumnError,
    SchemaKindError,
    SchemaVersionError,
    UnreadableManifestError,
    csv_cell,
)


def _train_rows():
    return {
        "image_id": ["a1", "b2", "c3"],
        "path": ["images/train/0000_c1_0.jpg", "images/train/0000_c2_1.jpg", "images/train/0001_c1_2.jpg"],
        "pid": [0, 0, 1],
        "camid": [1, 2, 1],
        "occluded": [False, True, False],
    }


def test_round_trip_every_schema(tmp_path):
    samples = {
        "train": _train_rows(),
        "query": {"image_id": ["q1"], "path": ["images/query/q1.jpg"], "camid": [3]},
        "gallery": {
            "image_id": ["g1", "g2"],
            "path": ["images/gallery/g1.jpg", "images/gallery/g2.jpg"],
            "camid": [1, 2],
        },
        "ground_truth": {
            "image_id": ["q1"],
            "split": ["query"],
            "pid": [7],
            "camid": [3],
            "occluded": [True],
        },
        "keypoints": {"file": ["0001_c1s1_000001_00.jpg"], "keypoints": [[1.0] * 51]},
    }
    for kind, data in samples.items():
        path = tmp_path / f"{kind}.parquet"
        manifests.write_manifest(data, path, kind)
        table = manifests.read_manifest(path, kind)
        assert table.schema.equals(manifests.SCHEMAS[kind].schema, check_metadata=False)
        assert table.to_pydict() == pa.table(data).cast(manifests.SCHEMAS[kind].schema).to_pydict()
        meta = manifests.read_metadata(path)
        assert meta["kind"] == kind and meta["schema_version"] == manifests.SCHEMA_VERSION


def test_images_schema_round_trip_with_nested_columns(tmp_path):
    row = {name: [None] for name in manifests.IMAGES.columns}
    row.update(
        image_id=["0123456789abcdef"], source_path=["0001_c1s1_000001_00.jpg"], pid=[1], camid=[1], status=["ok"],
        keypoints=[[0.5] * 51], missing_parts=[["left_leg"]], occluded=[True],
        face_boxes=[[{"x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0, "score": 0.9, "detector": "yunet"}]],
    )  # fmt: skip
    path = tmp_path / "private" / "images.parquet"
    manifests.write_manifest(pa.table(row, schema=manifests.IMAGES.schema), path, manifests.IMAGES)
    back = manifests.read_manifest(path, manifests.IMAGES).to_pylist()[0]
    assert back["face_boxes"][0]["detector"] == "yunet" and back["missing_parts"] == ["left_leg"]


def test_pandas_polars_duckdb_read_without_our_code(tmp_path):
    path = tmp_path / "train.parquet"
    manifests.write_manifest(_train_rows(), path, manifests.TRAIN)
    import duckdb
    import pandas as pd
    import polars as pl

    assert pd.read_parquet(path)["pid"].tolist() == [0, 0, 1]
    assert pl.read_parquet(path)["camid"].to_list() == [1, 2, 1]
    assert duckdb.sql(f"select count(*) from '{path}'").fetchall()[0][0] == 3


def test_pandas_dataframe_input_is_cast_and_index_dropped(tmp_path):
    import pandas as pd

    df = pd.DataFrame(_train_rows(), index=[10, 11, 12])
    path = tmp_path / "train.parquet"
    manifests.write_manifest(df, path, "train")
    assert b"pandas" not in (pq.read_schema(path).metadata or {})
    assert manifests.read_manifest(path, "train").schema.field("camid").type == pa.int32()


def test_write_refuses_missing_extra_and_mistyped_columns(tmp_path):
    rows = _train_rows()
    with pytest.raises(MissingColumnError, match="'occluded'"):
        manifests.write_manifest(
            {k: v for k, v in rows.items() if k != "occluded"}, tmp_path / "t.parquet", "train"
        )
    with pytest.raises(ManifestError, match="unexpected column"):
        manifests.write_manifest({**rows, "secret": [1, 2, 3]}, tmp_path / "t.parquet", "train")
    with pytest.raises(ColumnTypeError, match="'pid'"):
        manifests.write_manifest({**rows, "pid": ["a", "b", "c"]}, tmp_path / "t.parquet", "train")
    with pytest.raises(ManifestError, match="null"):
        manifests.write_manifest({**rows, "pid": [1, None, 2]}, tmp_path / "t.parquet", "train")
    assert not list(tmp_path.iterdir()), "a refused write leaves nothing behind"


def test_read_names_file_and_column_for_each_violation(tmp_path):
    good = pa.table(_train_rows()).cast(manifests.TRAIN.schema)
    meta = {b"opreid.kind": b"train", b"opreid.schema_version": b"1.0"}

    missing = tmp_path / "missing.parquet"
    pq.write_table(good.drop(["camid"]).replace_schema_metadata(meta), missing)
    with pytest.raises(MissingColumnError) as err:
        manifests.read_manifest(missing, "train")
    assert err.value.column == "camid" and "missing.parquet" in str(err.value)

    wrong = tmp_path / "wrong.parquet"
    pq.write_table(good.set_column(2, "pid", pa.array(["0", "0", "1"])).replace_schema_metadata(meta), wrong)
    with pytest.raises(ColumnTypeError) as err:
        manifests.read_manifest(wrong, "train")
    assert err.value.column == "pid" and "wrong.parquet" in str(err.value)

    future = tmp_path / "future.parquet"
    pq.write_table(good.replace_schema_metadata({**meta, b"opreid.schema_version": b"2.0"}), future)
    with pytest.raises(SchemaVersionError, match="2.0"):
        manifests.read_manifest(future, "train")

    foreign = tmp_path / "foreign.parquet"
    pq.write_table(good, foreign)
    with pytest.raises(SchemaKindError):
        manifests.read_manifest(foreign, "train")

    other_kind = tmp_path / "gt.parquet"
    pq.write_table(good.replace_schema_metadata({**meta, b"opreid.kind": b"query"}), other_kind)
    with pytest.raises(SchemaKindError, match="query"):
        manifests.read_manifest(other_kind, "train")

    minor = tmp_path / "minor.parquet"
    pq.write_table(good.replace_schema_metadata({**meta, b"opreid.schema_version": b"1.7"}), minor)
    assert manifests.read_manifest(minor, "train").num_rows == 3


def test_unreadable_files(tmp_path):
    with pytest.raises(UnreadableManifestError, match="no such file"):
        manifests.read_manifest(tmp_path / "absent.parquet", "train")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(UnreadableManifestError, match="junk.parquet"):
        manifests.read_manifest(junk, "train")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path):
    target = tmp_path / "x.txt"
    manifests.atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), manifests.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_sha256_and_tree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.bin").write_bytes(b"abc")
    (tmp_path / "g.bin").write_bytes(b"")
    assert manifests.sha256_file(tmp_path / "a" / "f.bin") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    tree = manifests.sha256_tree(tmp_path)
    assert list(tree) == ["a/f.bin", "g.bin"]
    assert tree["g.bin"] == manifests.sha256_bytes(b"")


def test_dataset_json_round_trip_and_version_check(tmp_path):
    manifests.write_dataset_json(tmp_path, {"seed": 3, "counts": {"train": 1}})
    info = manifests.read_dataset_json(tmp_path)
    assert info["seed"] == 3 and info["schema_version"] == manifests.SCHEMA_VERSION
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": "9.0"}))
    with pytest.raises(SchemaVersionError):
        manifests.read_dataset_json(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(UnreadableManifestError):
        manifests.read_dataset_json(tmp_path)


def test_layout_paths(tmp_path):
    layout = manifests.DatasetLayout(tmp_path)
    assert layout.ground_truth == tmp_path / "private" / "ground_truth.parquet"
    assert layout.images("query") == tmp_path / "images" / "query"
    assert layout.manifest("gallery") == tmp_path / "gallery.parquet"


def test_manifests_imports_no_other_project_package():
    import subprocess
    import sys

    code = (
        "import sys, manifests; "
        "bad=[m for m in sys.modules if m.split('.')[0] in ('opreid_builder','reid_model','benchmarks','torch')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_atomic_files_get_normal_permissions(tmp_path):
    target = tmp_path / "perm.txt"
    manifests.atomic_write_text(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_folder_replaces_whole_or_leaves_the_target(tmp_path):
    from manifests import atomic_folder

    target = tmp_path / "out"
    with atomic_folder(target) as staging:
        (staging / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one" and oct(target.stat().st_mode & 0o755) == oct(0o755)
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "b.txt").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(os.listdir(target)) == ["a.txt"]
    with atomic_folder(target) as staging:
        (staging / "c.txt").write_text("two")
    assert sorted(os.listdir(target)) == ["c.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_csv_cell_writes_formulas_as_text_and_leaves_numbers_alone():
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert csv_cell(text) == "'" + text
    assert [csv_cell(v) for v in (None, "", "a=1", -1, 2.5, True)] == ["", "", "a=1", -1, 2.5, True]
