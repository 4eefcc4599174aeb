"""The learned occlusion flag with the real pose model (OPREID_TEST_POSE_MODEL): `opreid occlusion fit`
and `calibrate` on Partial-iLIDS (../shared/data), and curation of synthetic crops with the bundled flag."""

from __future__ import annotations

import json

import pytest
from support.curation import make_synth
from support.paths import SHARED_DATA
from support.real_models import POSE_MODEL, needs_pose_model

from manifests import IMAGES, read_manifest
from opreid_builder.curation.occlusion_flag import load_flag, read_flag_file
from opreid_builder.curation.pipeline import CurateConfig, curate

PARTIAL_ILIDS = SHARED_DATA / "partial_ilids" / "Partial_iLIDS"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    needs_pose_model,
]
needs_partial_ilids = pytest.mark.skipif(
    not (PARTIAL_ILIDS / "Probe").is_dir(),
    reason=f"no Partial-iLIDS at {PARTIAL_ILIDS} (../shared/data is absent)",
)


@needs_partial_ilids
def test_fit_and_calibrate_on_partial_ilids(tmp_path, run_opreid):
    occluded, holistic = PARTIAL_ILIDS / "Probe", PARTIAL_ILIDS / "Gallery"
    flag_file = tmp_path / "flag.json"
    res = run_opreid("occlusion", "fit", "--occluded", occluded, "--holistic", holistic, "--pose-model", POSE_MODEL,
                     "--max-holistic-flagged", "0.05", "-o", flag_file, "--json", "--no-progress")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    body = json.loads(res.stdout)
    (cv,) = body["cv"]
    assert cv["name"] == "Partial_iLIDS" and cv["occluded"] == cv["holistic"] == 119
    # the paper's rule flags 63% of these partial crops and 35% of the whole-body ones
    assert cv["occluded_flagged"] >= 0.75 and cv["holistic_flagged"] <= 0.15
    flag = read_flag_file(flag_file)
    assert flag.sha256 == body["sha256"] and len(flag.fitted_on()) == 238

    res = run_opreid("occlusion", "calibrate", "--occluded", occluded, "--holistic", holistic, "--pose-model",
                     POSE_MODEL, "--json", "--no-progress")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    rows = report["rows"]
    paper = next(r for r in rows if (r["rule"], r["kpt_conf"], r["min_run"]) == ("coco18", 0.5, 3))
    learned = [r for r in rows if r["rule"] == "learned"]
    bundled = next(r for r in learned if "bundled" in r["name"])
    fitted = next(r for r in learned if r["rates"] == "cross-validated")
    assert bundled["rates"] == "in-sample"  # the bundled flag was fitted on these crops, and says so
    assert (
        fitted["occluded_flagged"] > paper["occluded_flagged"]
        and fitted["holistic_flagged"] < paper["holistic_flagged"]
    )
    assert report["selection"]["rates"] == "cross-validated"
    assert all(r["occluded_ci"][0] <= r["occluded_flagged"] <= r["occluded_ci"][1] for r in rows)


def test_curate_synthetic_crops_with_the_bundled_flag(tmp_path):
    raw = make_synth(tmp_path / "raw", identities=4, cameras=2, seed=9)
    result = curate(raw, tmp_path / "out", CurateConfig(pose_model=POSE_MODEL, face_models=("none",), workers=0),
                    progress=False)  # fmt: skip
    flag = result.curation["occlusion"]["flag"]
    assert flag["flag"] == "learned" and flag["sha256"] == load_flag("learned").sha256
    rows = read_manifest(tmp_path / "out" / "private" / "images.parquet", IMAGES).to_pylist()
    for r in rows:
        if r["occlusion_source"] == "pose":
            assert len(r["pose_box"]) == 4 and 0 < r["pose_score"] <= 1 and 0 <= r["occlusion_score"] <= 1
            assert r["occluded"] is (r["occlusion_score"] >= flag["threshold"])
        else:
            assert r["occlusion_source"] == "no-person" and r["occluded"] is True and r["n_persons"] == 0
