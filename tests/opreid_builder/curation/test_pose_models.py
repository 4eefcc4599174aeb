"""The real pose model (OPREID_TEST_POSE_MODEL) on Ultralytics' bundled photos, and crops cut from them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.paths import ULTRALYTICS_ASSETS
from support.real_models import POSE_MODEL, needs_pose_model

from manifests import COCO17
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.pipeline import curate
from opreid_builder.curation.pose import PoseEstimator

FACE_MODEL = os.environ.get("OPREID_TEST_FACE_MODEL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    needs_pose_model,
]
I = {n: i for i, n in enumerate(COCO17)}  # noqa: E741


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection (a download) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def asset(name: str) -> np.ndarray:
    path = ULTRALYTICS_ASSETS / name
    if not path.is_file():
        pytest.skip(f"Ultralytics' bundled {path} is missing")
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def estimator() -> PoseEstimator:
    return PoseEstimator(POSE_MODEL, batch_size=4)


def people(estimator: PoseEstimator, rgb: np.ndarray):
    """Every person the model finds in a full photo: (box, score, keypoints)."""
    res = estimator._predict([rgb])[0]
    return list(zip(res.boxes.xyxy.numpy(), res.boxes.conf.numpy(), res.keypoints.data.numpy(), strict=True))


def plausible(box, kp) -> bool:
    """At least 5 confident keypoints, all near the box, head above shoulders above hips."""
    x1, y1, x2, y2 = box
    mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
    seen = kp[:, 2] >= 0.5
    near = (
        (kp[seen, 0] >= x1 - mx)
        & (kp[seen, 0] <= x2 + mx)
        & (kp[seen, 1] >= y1 - my)
        & (kp[seen, 1] <= y2 + my)
    )

    def y(*names):
        vals = [kp[I[n], 1] for n in names if kp[I[n], 2] >= 0.5]
        return float(np.mean(vals)) if vals else None

    head, shoulders, hips = (
        y("nose", "left_eye", "right_eye"),
        y("left_shoulder", "right_shoulder"),
        y("left_hip", "right_hip"),
    )
    ordered = all(a < b for a, b in ((head, shoulders), (shoulders, hips)) if a is not None and b is not None)
    return bool(seen.sum() >= 5 and near.all() and ordered and head is not None and shoulders is not None)


@pytest.mark.parametrize("name,at_least", [("bus.jpg", 3), ("zidane.jpg", 2)])
def test_real_photos_give_people_with_plausible_keypoints(estimator, name, at_least):
    found = people(estimator, asset(name))
    assert len(found) >= at_least
    good = [p for p in found if plausible(p[0], p[2])]
    assert len(good) >= at_least - (1 if name == "bus.jpg" else 0)


def test_batched_equals_one_by_one(estimator):
    imgs = [asset("bus.jpg"), asset("zidane.jpg"), asset("bus.jpg")[100:900, 0:400]]
    batched = [r for _, r in estimator.run(enumerate(imgs))]
    single = [estimator.predict_one(im) for im in imgs]
    for b, s in zip(batched, single, strict=True):
        assert b.n_persons == s.n_persons and b.person_index == s.person_index
        np.testing.assert_allclose(b.keypoints, s.keypoints, atol=1e-3)


def _crops(estimator) -> dict[str, np.ndarray]:
    out = {}
    for cam, name in ((1, "bus.jpg"), (2, "zidane.jpg")):
        img = asset(name)
        for k, (box, _, _) in enumerate(people(estimator, img)):
            x1, y1, x2, y2 = box
            w, h = x2 - x1, y2 - y1
            a = (max(0, int(x1 - 0.05 * w)), max(0, int(y1 - 0.05 * h)))
            b = (min(img.shape[1], int(x2 + 0.05 * w)), min(img.shape[0], int(y2 + 0.05 * h)))
            out[f"{k + 1:04d}_c{cam}s1_{k:06d}_00.jpg"] = img[a[1] : b[1], a[0] : b[0]]
    return out


@pytest.mark.slow
def test_person_crops_go_through_curation(estimator, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    crops = _crops(estimator)
    assert len(crops) >= 5
    for name, rgb in crops.items():
        Image.fromarray(rgb).save(raw / name, quality=95)
    (raw / "0099_c1s1_000001_00.jpg").write_bytes(b"\xff\xd8 a damaged crop")  # recorded, skipped
    faces = (FACE_MODEL,) if FACE_MODEL and Path(FACE_MODEL).is_file() else ()
    cfg = CurateConfig(pose_model=POSE_MODEL, batch_size=4, face_models=faces, workers=0)
    result = curate(raw, tmp_path / "out", cfg, progress=False)
    rows = result.images.to_pylist()
    assert [r["status"] for r in rows if r["source_path"].startswith("0099_")] == ["unreadable"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= len(crops) - 1
    for r in ok:
        assert r["n_persons"] >= 1 and r["occlusion_source"] == "pose" and len(r["keypoints"]) == 51
        kp = np.asarray(r["keypoints"]).reshape(17, 3)
        seen = kp[:, 2] >= 0.5
        if seen.sum() < 12:  # a person cut by the photo's edge or hidden: must be flagged
            assert r["occluded"] and r["longest_missing_run"] >= 3, r["source_path"]
        if not r["occluded"]:  # the person taken is the one the crop was cut around
            assert np.ptp(kp[seen, 1]) > 0.6 * r["height"]
        assert (tmp_path / "out" / r["masked_path"]).is_file()
    # the bus passengers stand whole in the frame; zidane.jpg cuts both men at the waist
    assert sum(r["occluded"] is False for r in ok) >= 2 and sum(r["occluded"] is True for r in ok) >= 2
    assert all(r["occluded"] for r in ok if "_c2" in r["source_path"])
    assert result.curation["keypoints"]["source"] == "pose"
    assert any(r["face_boxes"] for r in ok)  # a face is found in at least one of these crops
    # the rerun loads no model and gives the same table; a fresh build, in a process that has
    # loaded the model, still records the damaged crop and goes on
    again = curate(raw, tmp_path / "out", cfg, progress=False)
    assert again.images.to_pylist() == rows
    fresh = curate(raw, tmp_path / "fresh", cfg, progress=False)
    assert fresh.images.to_pylist() == rows
