"""`opreid export --format market1501`: Market folders and names, ground truth required."""

from __future__ import annotations

import csv
import re
import shutil

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from support.split_pools import build_release

from opreid_builder.cli.export import export_cmd
from opreid_builder.errors import ExportError
from opreid_builder.export.market1501 import export_market1501

MARKET = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.jpg$")  # what fast-reid / torchreid parse


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(tmp_path_factory.mktemp("export") / "rel", seed=4)


def test_market_layout(release, tmp_path):
    dest = tmp_path / "market"
    result = export_market1501(release, dest)
    gt = pq.read_table(release / "private/ground_truth.parquet").to_pandas()
    assert result.images == {s: int((gt.split == s).sum()) for s in ("train", "query", "gallery")}
    assert result.warnings == []
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    mapping = {row.image_id: row for row in gt.itertuples()}
    with open(dest / "image_map.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(gt)
    for row in rows:
        folder, name = row["market_name"].split("/")
        match = MARKET.match(name)
        assert match and folder == folders[row["split"]]
        truth = mapping[row["image_id"]]
        assert int(match.group(1)) == truth.pid and truth.split == row["split"]
        assert (dest / row["market_name"]).is_file()
    train_pids = {int(MARKET.match(p.name).group(1)) for p in (dest / "bounding_box_train").iterdir()}
    test_pids = {int(MARKET.match(p.name).group(1)) for p in (dest / "bounding_box_test").iterdir()}
    assert train_pids.isdisjoint(test_pids)
    query_pids = {int(MARKET.match(p.name).group(1)) for p in (dest / "query").iterdir()}
    assert query_pids <= test_pids


def test_needs_private_ground_truth(release, tmp_path, run_opreid, expect_error):
    public = tmp_path / "public"
    shutil.copytree(release, public, ignore=shutil.ignore_patterns("private", "masked"))
    with pytest.raises(ExportError, match="needs the private ground truth"):
        export_market1501(public, tmp_path / "m")
    result = run_opreid("export", public, "--format", "market1501", "-o", tmp_path / "m")
    expect_error(result, "opreid export", 1, "needs the private ground truth")
    assert not (tmp_path / "m").exists()


def test_refuses_non_empty_destination(release, tmp_path):
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_market1501(release, dest)
    ok = CliRunner().invoke(export_cmd, [str(release), "-o", str(tmp_path / "fresh")])
    assert ok.exit_code == 0 and "names carry the private ground truth" in ok.output
