"""Privacy by default: the bundled YuNet masks a bystander's face on the default build-split path, the
head of every person the pose model finds is masked, weakening the masking always says so (every
run, and in the card), and `validate` catches a release whose crops were masked by fewer detectors
than it claims.

The bystander crop is cut from Ultralytics' bundled `assets/bus.jpg` (shipped with a runtime
dependency): two people side by side, the target on the left and a passer-by's face on the right.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from support.curation import SMALL_SPLIT, make_synth, person_keypoints, write_keypoints
from support.paths import ULTRALYTICS_ASSETS

import manifests
from opreid_builder.release.validate import validate
from opreid_builder.release.writer import RELEASE_MAP

CROP = "0001_c1s1_000099_00.jpg"  # named like the synth crops, so it joins identity 1's pool
BYSTANDER_FACE = (46.6, 8.4, 55.0, 19.8)  # YuNet's box on the crop below; the target's face is at x 15-24
POSE_MODEL = os.environ.get("OPREID_TEST_POSE_MODEL")


def bus_crop() -> Image.Image:
    path = ULTRALYTICS_ASSETS / "bus.jpg"
    if not path.is_file():
        pytest.skip(f"Ultralytics' bundled {path} is missing")
    with Image.open(path) as im:
        return im.convert("RGB").crop((40, 380, 350, 1000)).resize((64, 128), Image.BICUBIC)


def target_keypoints() -> list[float]:
    """A standing person in the left half of the crop (the target; the bystander is on the right)."""
    kp = np.asarray(person_keypoints(64, 128), dtype=np.float32).reshape(17, 3)
    kp[:, 0] *= 0.55
    return kp.reshape(-1).tolist()


def face_is_filled(image: Path, box=BYSTANDER_FACE) -> bool:
    x1, y1, x2, y2 = box
    with Image.open(image) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int32)
    inner = rgb[int(y1) + 2 : int(y2) - 1, int(x1) + 2 : int(x2) - 1]
    return bool(inner.max() <= 16)  # a solid fill (JPEG noise aside)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    raw = make_synth(tmp_path_factory.mktemp("privacy") / "raw", identities=60, cameras=4, seed=3)
    bus_crop().save(raw / CROP, quality=95)
    entries = {
        r["file"]: r["keypoints"]
        for r in manifests.read_manifest(raw / "keypoints.parquet", manifests.KEYPOINTS_FILE).to_pylist()
    }
    entries[CROP] = target_keypoints()
    write_keypoints(raw, entries)
    return raw


def _build(run_opreid, raw: Path, out: Path, *extra):
    result = run_opreid(
        "build-split",
        raw,
        "-o",
        out,
        "--keypoints",
        raw / "keypoints.parquet",
        *SMALL_SPLIT,
        "--no-progress",
        *extra,
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    rows = {
        r["source_path"]: r
        for r in manifests.read_manifest(out / "private" / "images.parquet", manifests.IMAGES).to_pylist()
    }
    return result, rows


@pytest.mark.slow
def test_default_build_masks_a_bystander_and_weakening_always_says_so(raw, tmp_path, run_opreid):
    out = tmp_path / "rel"
    # the README's build-split: --keypoints, no face option -> the bundled YuNet runs
    result, rows = _build(run_opreid, raw, out)
    row = rows[CROP]
    assert row["status"] == "ok" and row["face_detectors"] == 2
    assert {b["detector"] for b in row["face_boxes"]} == {"yunet", "pose-head"}
    assert face_is_filled(out / row["masked_path"])  # the passer-by's face, found by YuNet alone
    assert "face" not in result.stderr  # no warning about faces
    card = (out / "README.md").read_text()
    assert (
        "Face detectors that ran on every released image (2)" in card and "face_detection_yunet.onnx" in card
    )
    assert "bundled with opreid (MIT licence)" in card and "no face detector model ran" not in card
    faces = json.loads((out / "dataset.json").read_text())["parameters"]["curation"]["faces"]
    assert faces["detectors"] == ["yunet", "pose-head"] and faces["detector_count"] == 2
    assert validate(out).ok

    # switching the detector off: a warning on this run (and that the cached masks change) ...
    result, rows = _build(run_opreid, raw, out, "--face-model", "none")
    assert "warning: no face detector model runs (--face-model none)" in result.stderr
    assert "the face detectors differ from those of the cached masks" in result.stderr
    row = rows[CROP]
    assert row["face_detectors"] == 1 and {b["detector"] for b in row["face_boxes"]} == {"pose-head"}
    assert not face_is_filled(out / row["masked_path"])  # the head box of the target alone misses it
    card = (out / "README.md").read_text()
    assert "**Warning: no face detector model ran for this build (`--face-model none`).**" in card
    assert "Faces are masked by the pose head box alone" in card
    # ... and on every run, cached or not
    result, _ = _build(run_opreid, raw, out, "--face-model", "none")
    assert "warning: no face detector model runs" in result.stderr and "differ" not in result.stderr
    # back to the default: said again, masked again
    result, rows = _build(run_opreid, raw, out)
    assert "the face detectors differ from those of the cached masks" in result.stderr
    assert face_is_filled(out / rows[CROP]["masked_path"])


@pytest.mark.slow
def test_validate_fails_when_a_released_crop_had_fewer_detectors_than_claimed(raw, tmp_path, run_opreid):
    out = tmp_path / "rel"
    _build(run_opreid, raw, out)
    released = manifests.read_manifest(out / "private" / "release_map.parquet", RELEASE_MAP).to_pylist()
    victim = released[0]["source_image_id"]
    table = manifests.read_manifest(out / "private" / "images.parquet", manifests.IMAGES).to_pylist()
    for row in table:
        if row["image_id"] == victim:
            row["face_detectors"] = 1  # as if a stale mask from a head-box-only run had been released
    manifests.write_manifest(
        pa.Table.from_pylist(table, schema=manifests.IMAGES.schema),
        out / "private" / "images.parquet",
        manifests.IMAGES,
    )
    report = validate(out)
    found = [v for v in report.violations if v.code == "face-detectors"]
    assert len(found) == 1 and victim in found[0].message and "claims 2" in found[0].message


@pytest.mark.integration
@pytest.mark.skipif(not POSE_MODEL or not Path(POSE_MODEL).is_file(), reason="set OPREID_TEST_POSE_MODEL")
def test_the_head_of_every_person_the_pose_model_finds_is_masked(tmp_path):
    from opreid_builder.curation.config import CurateConfig
    from opreid_builder.curation.pipeline import curate

    raw = tmp_path / "raw"
    raw.mkdir()
    bus_crop().save(raw / CROP, quality=95)
    config = CurateConfig(pose_model=POSE_MODEL, face_models=("none",), workers=0)
    row = curate(raw, tmp_path / "out", config, progress=False).images.to_pylist()[0]
    heads = [b for b in row["face_boxes"] if b["detector"] == "pose-head"]
    assert row["n_persons"] == 2 and len(heads) == 2  # the target's head and the bystander's
    assert face_is_filled(tmp_path / "out" / row["masked_path"])
