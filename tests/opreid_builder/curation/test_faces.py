"""Faces: the pose head box, detector selection, masking, EXIF-free encoding, YuNet on real faces."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.curation import person_keypoints

from manifests import COCO17, DEFAULT_KPT_CONF, missing_keypoints, sha256_file
from opreid_builder.curation.faces import (
    BUNDLED_YUNET,
    FaceBox,
    FaceConfig,
    FaceDetectors,
    YuNetDetector,
    pose_head_box,
)
from opreid_builder.curation.masking import MaskSettings, encode_jpeg, enlarged, mask_faces
from opreid_builder.curation.occlusion import OcclusionRule
from opreid_builder.curation.stages import MaskStage
from opreid_builder.errors import FaceDetectorError, ModelFileError

I = {n: i for i, n in enumerate(COCO17)}  # noqa: E741
FACE_MODEL = os.environ.get("OPREID_TEST_FACE_MODEL")
needs_face_model = pytest.mark.skipif(
    not FACE_MODEL or not Path(FACE_MODEL).is_file(),
    reason="set OPREID_TEST_FACE_MODEL to a YuNet .onnx to run",
)


def t1_image() -> np.ndarray:
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    if not path.is_file():
        pytest.skip(f"insightface's bundled {path} is missing")
    return np.asarray(Image.open(path).convert("RGB"))


def kps(conf=1.0):
    return np.asarray(person_keypoints(64, 128, conf), dtype=np.float32).reshape(17, 3)


def test_head_box_covers_the_head_keypoints():
    kp = kps()
    box = pose_head_box(kp, 64, 128)
    assert box is not None and box.detector == "pose-head"
    for name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"):
        x, y, _ = kp[I[name]]
        assert box.x1 <= x <= box.x2 and box.y1 <= y <= box.y2
    # at least a head-sized box even from a single point
    only_nose = kp.copy()
    only_nose[[I["left_eye"], I["right_eye"], I["left_ear"], I["right_ear"]], 2] = 0
    small = pose_head_box(only_nose, 64, 128)
    assert small is not None and small.y2 - small.y1 >= 128 / 10


def test_head_box_needs_a_face_keypoint():
    kp = kps()
    kp[[I["nose"], I["left_eye"], I["right_eye"]], 2] = 0.0  # seen from behind: ears only
    assert pose_head_box(kp, 64, 128) is None
    assert pose_head_box(None, 64, 128) is None


def test_detector_selection(tmp_path, monkeypatch):
    monkeypatch.delenv("OPREID_FACE_MODEL", raising=False)
    empty_root = tmp_path / "ifroot"
    d = FaceDetectors(FaceConfig(insightface_root=str(empty_root)))  # the default: the bundled YuNet
    assert d.names == ("yunet", "pose-head") and d.detector_count == 2
    assert [m.path for m in d.models] == [BUNDLED_YUNET] and d.describe()["models"][0]["bundled"] is True
    off = FaceDetectors(FaceConfig(models=("none",), insightface_root=str(empty_root)))
    assert off.names == ("pose-head",) and off.models == [] and off.detector_count == 1
    monkeypatch.setenv("OPREID_FACE_MODEL", "none")
    assert FaceDetectors(FaceConfig(insightface_root=str(empty_root))).models == []
    monkeypatch.delenv("OPREID_FACE_MODEL")
    with pytest.raises(FaceDetectorError, match="--face-model none"):  # the only way to switch it off
        FaceDetectors(FaceConfig(detectors=("pose-head",), insightface_root=str(empty_root)))
    with pytest.raises(FaceDetectorError, match="cannot be combined"):
        FaceDetectors(FaceConfig(models=("none", str(BUNDLED_YUNET))))
    with pytest.raises(FaceDetectorError, match="'none'"):
        FaceDetectors(FaceConfig(detectors=("yunet",), models=("none",)))
    with pytest.raises(ModelFileError, match="--face-model"):
        FaceDetectors(FaceConfig(detectors=("insightface",), insightface_root=str(empty_root)))
    with pytest.raises(ModelFileError, match="missing.onnx"):
        FaceDetectors(FaceConfig(models=(str(tmp_path / "missing.onnx"),)))
    with pytest.raises(FaceDetectorError, match="unknown"):
        FaceDetectors(FaceConfig(detectors=("dlib",)))
    bad = tmp_path / "scrfd_bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(FaceDetectorError):
        FaceDetectors(FaceConfig(models=(str(bad),)))


def test_bundled_yunet_ships_with_its_licence():
    assert sha256_file(BUNDLED_YUNET) == "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
    notice = (BUNDLED_YUNET.parent / "LICENSE-face_detection_yunet.txt").read_text()
    assert "MIT License" in notice and "Shiqi Yu" in notice and BUNDLED_YUNET.name in notice


def test_head_boxes_of_every_person():
    near, far = kps(), kps()
    far[:, 0] = far[:, 0] / 4  # a second, smaller person on the left
    far[:, 1] = far[:, 1] / 4
    boxes = MaskStage(MaskSettings()).boxes(
        [], [near.reshape(-1).tolist(), far.reshape(-1).tolist()], 64, 128
    )
    assert len(boxes) == 2 and all(b["detector"] == "pose-head" for b in boxes)
    assert boxes[1]["x2"] < boxes[0]["x2"]


@pytest.mark.parametrize("conf,x", [(0.49, 30.0), (0.5, 30.0), (np.nan, 30.0), (0.9, -1.0), (0.9, 64.0)])
def test_head_box_sees_a_face_keypoint_exactly_when_the_occlusion_rule_does(conf, x):
    """One test of a missing keypoint serves both: a face the rule calls hidden is not masked by the
    head box, and a face it calls seen is (no band of confidences where the two disagree)."""
    kp = kps(conf=0.0)
    kp[I["nose"]] = (x, 12.0, conf)
    missing = missing_keypoints(kp, 64, 128, DEFAULT_KPT_CONF)[I["nose"]]
    assert (pose_head_box(kp, 64, 128) is None) == bool(missing)
    assert MaskSettings().kpt_conf == OcclusionRule().kpt_conf == DEFAULT_KPT_CONF


def test_fill_pixelate_blur():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (128, 64, 3), dtype=np.uint8)
    box = FaceBox(20, 10, 40, 30, 0.9, "yunet")
    x1, y1, x2, y2 = enlarged(box, 1.3, 64, 128)
    assert (x1, y1, x2, y2) == (17, 7, 43, 33)
    filled = mask_faces(img, [box], "fill", 1.3)
    assert (filled[y1:y2, x1:x2] == 0).all()
    assert np.array_equal(filled[60:], img[60:])  # nothing else touched
    pix = mask_faces(img, [box], "pixelate", 1.3)
    assert len(np.unique(pix[y1:y2, x1:x2].reshape(-1, 3), axis=0)) <= 16
    blur = mask_faces(img, [box], "blur", 1.3)
    assert blur[y1:y2, x1:x2].std() < img[y1:y2, x1:x2].std() / 2
    head = FaceBox(20, 10, 40, 30, 0.9, "pose-head")  # already enlarged: used as is
    assert (mask_faces(img, [head], "fill", 1.3)[10:30, 20:40] == 0).all()
    assert not (mask_faces(img, [head], "fill", 1.3)[7:10, 17:20] == 0).all()


def test_encode_jpeg_has_no_metadata():
    data = encode_jpeg(np.zeros((16, 8, 3), np.uint8))
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and not im.getexif() and "exif" not in im.info and im.size == (8, 16)
    assert data == encode_jpeg(np.zeros((16, 8, 3), np.uint8))  # deterministic


@pytest.mark.integration
@needs_face_model
def test_yunet_masks_all_six_faces_of_t1():
    img = t1_image()
    det = YuNetDetector(FACE_MODEL, 0.6, 512)
    boxes = det.detect(img)
    assert len(boxes) == 6
    masked = mask_faces(img, boxes, "fill", 1.3)
    assert det.detect(masked) == []
    # the same through the encoder used for releases
    again = np.asarray(Image.open(io.BytesIO(encode_jpeg(masked))).convert("RGB"))
    assert det.detect(again) == []


@pytest.mark.integration
@needs_face_model
def test_upscaling_finds_reid_sized_faces():
    img = t1_image()
    det = YuNetDetector(FACE_MODEL, 0.6, 512)
    box = det.detect(img)[0]
    # a ReID-like crop around one person, shrunk so the face is ~10 px high
    cx = (box.x1 + box.x2) / 2
    h = (box.y2 - box.y1) * 8
    crop = img[
        int(max(0, box.y1 - h * 0.1)) : int(min(img.shape[0], box.y1 + h)),
        int(max(0, cx - h / 4)) : int(cx + h / 4),
    ]
    scale = 10.0 / (box.y2 - box.y1)
    small = np.asarray(
        Image.fromarray(crop).resize(
            (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        )
    )
    assert YuNetDetector(FACE_MODEL, 0.6, upscale_to=1).detect(small) == []  # too small as it is
    assert len(YuNetDetector(FACE_MODEL, 0.6, upscale_to=512).detect(small)) >= 1
