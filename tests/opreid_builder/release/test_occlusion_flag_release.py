"""A release records the occlusion flag it was built with (the card and dataset.json), keeps a learned
flag's file, and `opreid validate` recomputes every machine flag from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest
from support.curation import SMALL_SPLIT, FakePose, make_synth

from manifests import IMAGES, read_manifest, write_manifest
from opreid_builder.curation import pose as pose_mod
from opreid_builder.curation.occlusion_flag import flag_bytes, load_flag
from opreid_builder.release.validate import validate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """The same crops built twice with a (stand-in) pose model: the default flag, and `paper`."""
    from click.testing import CliRunner

    from opreid.cli import cli

    base = tmp_path_factory.mktemp("flag-release")
    raw = make_synth(base / "raw", identities=60, cameras=4, seed=3)  # FakePose reads raw/keypoints.parquet
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pose_mod, "PoseEstimator", FakePose)
        for name, extra in (("learned", ()), ("paper", ("--occlusion-flag", "paper"))):
            out[name] = base / name
            res = CliRunner().invoke(
                cli,
                ["build-split", str(raw), "-o", str(out[name]), "--pose-model", str(raw / "keypoints.parquet"),
                 *SMALL_SPLIT, *extra, "--no-progress"],
                catch_exceptions=False,
            )  # fmt: skip
            assert res.exit_code == 0, res.output
    return out


def _curation(out: Path) -> dict:
    return json.loads((out / "dataset.json").read_text())["parameters"]["curation"]


def test_the_card_and_dataset_json_name_the_flag(builds):
    learned, paper = _curation(builds["learned"]), _curation(builds["paper"])
    bundled = load_flag("learned")
    assert learned["occlusion"]["flag"]["flag"] == "learned" and paper["occlusion"]["flag"]["flag"] == "paper"
    assert learned["occlusion"]["flag"]["sha256"] == bundled.sha256
    assert learned["occlusion"]["flag"]["threshold"] == bundled.threshold
    card = (builds["learned"] / "README.md").read_text()
    assert "**This build flagged images with a learned flag**" in card
    assert (
        bundled.sha256 in card and f"{bundled.threshold:.4f}" in card and f"version {bundled.version}" in card
    )
    assert "partial_ilids" in card and "occluded flagged (95% CI)" in card  # the cross-validated rates
    assert "(`--no-person occluded`): 0," in card
    other = (builds["paper"] / "README.md").read_text()
    assert "**This build flagged images by that rule** (`--occlusion-flag paper`)" in other
    assert "learned flag" not in other and bundled.sha256 not in other
    assert (builds["learned"] / "private" / "occlusion_flag.json").read_bytes() == bundled.data
    assert not (builds["paper"] / "private" / "occlusion_flag.json").exists()
    images = read_manifest(builds["learned"] / "private" / "images.parquet", IMAGES)
    ok = images.filter(pc.equal(images.column("status"), "ok"))
    assert ok.column("occlusion_score").null_count == 0 and ok.column("pose_box").null_count == 0


def test_validate_recomputes_the_flags_from_the_named_flag(builds, tmp_path):
    for name in ("learned", "paper"):
        assert validate(builds[name]).ok, validate(builds[name]).violations
    for name in ("learned", "paper"):
        out = tmp_path / name
        shutil.copytree(builds[name], out)
        path = out / "private" / "images.parquet"
        rows = read_manifest(path, IMAGES).to_pylist()
        i = next(i for i, r in enumerate(rows) if r["status"] == "ok" and r["occlusion_source"] == "pose")
        rows[i]["occluded"] = not rows[i]["occluded"]  # a flag edited by hand
        write_manifest({k: [r[k] for r in rows] for k in rows[0]}, path, IMAGES)
        codes = {v.code for v in validate(out).violations}
        assert "occlusion-flag" in codes, (name, codes)


def test_validate_refuses_another_flag_file_than_the_release_names(builds, tmp_path):
    out = tmp_path / "swapped"
    shutil.copytree(builds["learned"], out)
    body = json.loads((out / "private" / "occlusion_flag.json").read_text())
    (out / "private" / "occlusion_flag.json").write_bytes(flag_bytes({**body, "threshold": 0.01}))
    found = [v for v in validate(out).violations if v.code == "occlusion-flag-file"]
    assert found and "not the flag file the release was built with" in found[0].message
    (out / "private" / "occlusion_flag.json").unlink()
    found = [v for v in validate(out).violations if v.code == "occlusion-flag-file"]
    assert found and "is missing" in found[0].message


def test_curate_with_a_flag_file_records_it(builds, tmp_path, run_opreid):
    raw = builds["learned"].parent / "raw"
    flag_file = tmp_path / "my-flag.json"
    body = json.loads(load_flag("learned").data)
    flag_file.write_bytes(flag_bytes({**body, "name": "mine", "version": "3", "threshold": 0.5}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pose_mod, "PoseEstimator", FakePose)
        res = run_opreid("curate", raw, "-o", tmp_path / "out", "--pose-model", raw / "keypoints.parquet",
                         "--occlusion-flag", flag_file, "--face-model", "none", "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    flag = json.loads(res.stdout)["occlusion"]["flag"]
    assert (flag["name"], flag["version"], flag["file"], flag["bundled"]) == (
        "mine",
        "3",
        "my-flag.json",
        False,
    )
    assert (tmp_path / "out" / "private" / "occlusion_flag.json").read_bytes() == flag_file.read_bytes()
