"""`opreid check SUBMISSION --data PUBLIC`: a participant's offline check, every problem at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.submission.package_check import check_submission
from manifests import GALLERY, QUERY, ExitCode, sha256_file, write_dataset_json, write_manifest

Q, G = 4, 6


@pytest.fixture
def public(tmp_path) -> Path:
    """A minimal participants' package: the two manifests that fix the shape and order, and their checksums."""
    root = tmp_path / "public"
    for split, schema, n in (("query", QUERY, Q), ("gallery", GALLERY, G)):
        ids = [f"{i:012x}" for i in range(n)]
        write_manifest({"image_id": ids, "path": [f"images/{split}/{i}.jpg" for i in ids], "camid": [1] * n},
                       root / f"{split}.parquet", schema)  # fmt: skip
    write_dataset_json(root, {"kind": "public_package", "checksums": {
        name: sha256_file(root / name) for name in ("query.parquet", "gallery.parquet")}})  # fmt: skip
    return root


def save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=False)
    return path


def test_a_valid_matrix_ranked_list_and_features(public, tmp_path, run_opreid):
    dist = save(tmp_path / "d.npy", np.random.default_rng(0).random((Q, G), dtype=np.float32))
    report = check_submission(dist, public)
    assert report.ok and report.kind == "distances" and report.shape == (Q, G) and report.dtype == "float32"
    assert report.size_bytes == dist.stat().st_size
    assert report.order == ["rows follow query.parquet (matches the package's checksum)",
                            "columns follow gallery.parquet (matches the package's checksum)"]  # fmt: skip
    ranked = save(tmp_path / "r.npy", np.tile(np.arange(3, dtype=np.int32), (Q, 1)))
    assert check_submission(ranked, public).kind == "ranked"
    feats = tmp_path / "f.npz"
    np.savez(feats, query=np.ones((Q, 8), np.float32), gallery=np.ones((G, 8), np.float32))
    assert check_submission(feats, public, metric="euclidean").description.endswith("euclidean)")
    result = run_opreid("check", dist, "--data", public, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True
    assert json.loads(result.stdout)["values"] == "all finite (no NaN, no infinity)"
    text = run_opreid("check", ranked, "--data", public).stdout
    assert f"values    every index in [0, {G}), none repeated within a row" in text


def test_every_problem_at_once(public, tmp_path, run_opreid, expect_error):
    """A transposed matrix with NaN and infinities: the shape and the values in one run."""
    bad = np.zeros((G, Q), np.float32)
    bad[1, 2], bad[3, 0] = np.nan, np.inf
    path = save(tmp_path / "bad.npy", bad)
    report = check_submission(path, public)
    assert report.problems == [
        f"shape ({G}, {Q}) is transposed: rows must be the {Q} queries (query.parquet order), columns the {G} gallery images",
        "distance matrix holds 1 NaN and 1 infinite value(s) (first at row 1, column 2)",
    ]
    result = run_opreid("check", path, "--data", public)
    expect_error(result, "opreid check", ExitCode.INVALID_INPUT, "2 problem(s)")
    assert "transposed" in result.stdout and "1 NaN" in result.stdout
    payload = json.loads(run_opreid("check", path, "--data", public, "--json").stdout)
    assert payload["ok"] is False and payload["shape"] == [G, Q] and len(payload["problems"]) == 2


def test_size_dtype_and_format_problems(public, tmp_path):
    truncated = tmp_path / "t.npy"
    truncated.write_bytes(save(tmp_path / "full.npy", np.zeros((Q, G), np.float32)).read_bytes()[:-8])
    assert any("truncated" in p for p in check_submission(truncated, public).problems)
    complex_ = save(tmp_path / "c.npy", np.zeros((Q, G), np.complex64))
    assert any("dtype complex64 is not accepted" in p for p in check_submission(complex_, public).problems)
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n")
    assert check_submission(junk, public).problems[0].startswith("not a .npy or .npz file")
    assert check_submission(tmp_path / "missing.npy", public).problems == [
        f"{tmp_path / 'missing.npy'}: no such file"
    ]


def test_a_reordered_manifest_is_named(public, tmp_path):
    """The order scored is the package's: a query.parquet rewritten in another order is caught."""
    ids = [f"{i:012x}" for i in reversed(range(Q))]
    write_manifest({"image_id": ids, "path": [f"images/query/{i}.jpg" for i in ids], "camid": [1] * Q},
                   public / "query.parquet", QUERY)  # fmt: skip
    report = check_submission(save(tmp_path / "d.npy", np.zeros((Q, G), np.float32)), public)
    assert report.problems == [
        "query.parquet differs from its checksum in dataset.json: the rows may not be in the order scored; "
        "use the package's own file"
    ]


def test_no_package_is_a_user_error(tmp_path, run_opreid, expect_error):
    expect_error(run_opreid("check", tmp_path / "x.npy", "--data", tmp_path), "opreid check", ExitCode.USER,
                 "not a participants' package", "query.parquet: no such file")  # fmt: skip
