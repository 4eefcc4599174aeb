"""`opreid build-split`: the curated-table path (fast) and synth -> curate -> split -> validate (slow)."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from support.split_pools import curated_pool

from manifests import IMAGES, write_manifest
from opreid_builder.cli.build_split import build_split
from opreid_builder.release.validate import validate

SMALL = ["--train-ids", "15", "--train-images", "200", "--query-ids", "30", "--query-images", "36",
         "--gallery-ids", "55", "--gallery-images", "none"]  # fmt: skip


def write_images_table(out, write_images: bool = True) -> None:
    """A private/images.parquet as curate leaves it (status ok rows plus one excluded row)."""
    pool = curated_pool(out, write_images=write_images, identities=80, images=(8, 16))
    n = pool.num_rows
    status = ["ok"] * (n - 1) + ["excluded"]
    cols = {name: pool.column(name) for name in pool.column_names}
    cols.update(
        source_path=pa.array([f"raw/{i}.jpg" for i in range(n)]),
        status=pa.array(status),
    )
    table = pa.table(
        {c: cols[c] if c in cols else pa.nulls(n, IMAGES.schema.field(c).type) for c in IMAGES.columns}
    )
    write_manifest(table, out / "private/images.parquet", IMAGES)


@pytest.mark.slow
def test_build_split_from_curated_table(tmp_path):
    out = tmp_path / "rel"
    write_images_table(out)
    result = CliRunner().invoke(build_split, ["-o", str(out), "--curated", "--seed", "3", "--json", *SMALL])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["validate"]["ok"] is True
    assert body["target_vs_achieved"]["query_images"] == {"target": 36, "achieved": 36}
    assert body["eligibility"]["images"] == pq.read_metadata(out / "private/images.parquet").num_rows - 1
    mapping = pq.read_table(out / "private/release_map.parquet").to_pandas()
    excluded = (
        pq.read_table(out / "private/images.parquet").to_pandas().query("status == 'excluded'").image_id
    )
    assert not set(excluded) & set(mapping.source_image_id)


@pytest.mark.slow
def test_unsatisfiable_request_is_one_line_naming_the_largest_scale(tmp_path, run_opreid, expect_error):
    out = tmp_path / "rel"
    write_images_table(out)
    result = run_opreid("build-split", "-o", out, "--curated", "--scale", "0.5")
    message = expect_error(result, "opreid build-split", 1, "the pool holds 80 identities")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert message.startswith("cannot satisfy 'disjoint identities': need 3959")
    largest = float(message.split("the largest --scale that fits this pool is ")[1].split(";")[0])
    assert 0 < largest < 0.5
    assert run_opreid("build-split", "-o", out, "--curated", "--scale", largest).exit_code == 0
    assert run_opreid("build-split", "-o", out, "--curated", "--scale", largest * 1.05).exit_code == 1


def test_curated_refuses_raw_and_curation_options(tmp_path, run_opreid, expect_error):
    out = tmp_path / "rel"
    write_images_table(out, write_images=False)
    result = run_opreid(
        "build-split", "raw", "-o", out, "--curated", "--rule", "count", "--corrections", "c.csv"
    )
    expect_error(result, "opreid build-split", 1, "ignores RAW, --rule, --corrections")
    result = run_opreid("build-split", "-o", out)
    expect_error(result, "opreid build-split", 1, "Missing argument 'RAW'")


def test_bad_range_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(
        build_split, ["x", "-o", str(tmp_path), "--curated", "--distractor-images", "3-1"]
    )
    assert result.exit_code == 2 and "LOW <= HIGH" in result.output


@pytest.mark.slow
def test_synth_to_validated_release_byte_identical(tmp_path):
    from opreid_builder.synth.generator import SynthConfig, generate

    raw = tmp_path / "raw"
    generate(raw, SynthConfig(identities=40, cameras=4, images_per_identity=(10, 22), seed=1))
    # the same images listed in another order: files copied in reverse, keypoint rows shuffled
    raw2 = tmp_path / "raw2"
    raw2.mkdir()
    for path in sorted(raw.iterdir(), reverse=True):
        shutil.copy2(path, raw2 / path.name)
    kp = pq.read_table(raw2 / "keypoints.parquet")
    order = list(range(kp.num_rows))
    random.Random(4).shuffle(order)
    pq.write_table(kp.take(pa.array(order)), raw2 / "keypoints.parquet")

    outs = []
    for source in (raw, raw2):
        out = tmp_path / f"out-{source.name}"
        args = [str(source), "-o", str(out), "--keypoints", str(source / "keypoints.parquet"),
                "--preset", "opreid", "--scale", "0.004", "--seed", "7", "--no-progress"]  # fmt: skip
        result = CliRunner().invoke(build_split, args)
        assert result.exit_code == 0, result.output
        assert "validate: ok" in result.output
        outs.append(out)
    assert validate(outs[0]).ok
    released = sorted(
        p.relative_to(outs[0]) for p in outs[0].rglob("*")
        if p.is_file() and p.relative_to(outs[0]).parts[0] not in ("cache", "masked")
    )  # fmt: skip
    assert any(p.parts[0] == "images" for p in released)
    # the shuffled keypoints file has other bytes, so its recorded sha256 (curation record, card,
    # dataset.json) differs; every manifest and image is byte-identical
    records = {"README.md", "dataset.json", "private/curation.json"}
    for rel in released:
        if rel.as_posix() not in records:
            assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    infos = [json.loads((o / "dataset.json").read_text()) for o in outs]
    for info in infos:
        info["parameters"]["curation"]["keypoints"].pop("sha256")
        for rel in ("README.md", "private/curation.json"):
            info["checksums"].pop(rel)
    assert infos[0] == infos[1]
    info = json.loads((outs[0] / "dataset.json").read_text())
    assert info["target_vs_achieved"]["train_ids"] == {"target": 7, "achieved": 7}
    assert np.isclose(info["parameters"]["split"]["scale"], 0.004)
