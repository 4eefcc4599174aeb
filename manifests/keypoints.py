"""Keypoint topology of the data contract: COCO-17 names, the OpenPose COCO-18 order, body parts.

Every `keypoints` column holds COCO-17 keypoints in `COCO17` order, three values each (x, y and a
confidence or visibility). The paper's occlusion rule walks OpenPose's COCO-18 order instead, which
runs along the limbs and has a neck: the midpoint of the shoulders, so present only when both
shoulders are. The rule itself is in opreid_builder/curation/occlusion.py; the facts it rests on are here,
once, for the schema, the generator, curation, face masking and the review sheet alike: the names and
orders, the body parts, and when a keypoint counts as missing (`missing_keypoints`, `DEFAULT_KPT_CONF`).
"""

from __future__ import annotations

import numpy as np

#: COCO-17 keypoint names in index order (the order of every `keypoints` column).
COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
#: COCO-17 index of each keypoint name.
KEYPOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(COCO17)}
#: Values per person in a `keypoints` column: x, y, confidence for each COCO-17 keypoint.
KEYPOINT_VALUES = 3 * len(COCO17)
#: A keypoint below this confidence is missing: the default of the occlusion rule's `--kpt-conf`, and of
#: the pose head box, which must see the face keypoints the rule sees.
DEFAULT_KPT_CONF = 0.5

#: COCO-17 indices of the shoulders (OpenPose's neck is their midpoint; their span gives a body scale).
SHOULDERS = (KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"])
NECK = -1  # marker in an order: the neck, derived from both shoulders
#: OpenPose COCO-18 keypoint names in its order: along the limbs, then eyes and ears.
COCO18 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
#: The COCO-18 order in COCO-17 indices (NECK where the neck is derived).
COCO18_ORDER: tuple[int, ...] = tuple(NECK if name == "neck" else KEYPOINT_INDEX[name] for name in COCO18)

#: COCO-17 keypoints of each body part, in the order of `missing_parts` / `occluded_parts` values.
#: A part is missing (occluded) when any of its keypoints is.
PART_KEYPOINTS: dict[str, tuple[int, ...]] = {
    part: tuple(KEYPOINT_INDEX[name] for name in names)
    for part, names in (
        ("head", ("nose", "left_eye", "right_eye", "left_ear", "right_ear")),
        ("torso", ("left_shoulder", "right_shoulder", "left_hip", "right_hip")),
        ("left_arm", ("left_shoulder", "left_elbow", "left_wrist")),
        ("right_arm", ("right_shoulder", "right_elbow", "right_wrist")),
        ("left_leg", ("left_hip", "left_knee", "left_ankle")),
        ("right_leg", ("right_hip", "right_knee", "right_ankle")),
    )
}
#: Body parts used by `missing_parts` / `occluded_parts`.
BODY_PARTS = tuple(PART_KEYPOINTS)
#: The head's keypoints (a pose head box spans them).
HEAD_POINTS = PART_KEYPOINTS["head"]
#: The head keypoints seen only when the face is towards the camera.
FACE_POINTS = tuple(KEYPOINT_INDEX[name] for name in ("nose", "left_eye", "right_eye"))

#: Limbs drawn between keypoints (COCO-17 index pairs).
SKELETON: tuple[tuple[int, int], ...] = tuple(
    (KEYPOINT_INDEX[a], KEYPOINT_INDEX[b])
    for a, b in (
        ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
        ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
    )
)  # fmt: skip


def in_order(missing: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """A (..., 17) bool mask of COCO-17 keypoints laid out in `order` (..., len(order)).

    NECK entries are missing when either shoulder is (the neck is their midpoint).
    """
    missing = np.asarray(missing, dtype=bool)
    idx = np.asarray(order, dtype=np.int64)
    out = missing[..., np.where(idx == NECK, 0, idx)]
    out[..., idx == NECK] = (missing[..., SHOULDERS[0]] | missing[..., SHOULDERS[1]])[..., None]
    return out


def missing_keypoints(keypoints: np.ndarray, width, height, kpt_conf: float = DEFAULT_KPT_CONF) -> np.ndarray:
    """(..., 17) bool: confidence below `kpt_conf`, not finite, or outside [0, width) x [0, height).

    `keypoints` is (..., 17, 3) or (..., 51); `width` and `height` are numbers or (...,) arrays.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    kp = kp.reshape(*kp.shape[:-1], len(COCO17), 3) if kp.shape[-1] != 3 else kp
    w = np.asarray(width, dtype=np.float64)[..., None]
    h = np.asarray(height, dtype=np.float64)[..., None]
    x, y, c = kp[..., 0], kp[..., 1], kp[..., 2]
    finite = np.isfinite(kp).all(axis=-1)
    with np.errstate(invalid="ignore"):
        inside = (x >= 0) & (y >= 0) & (x < w) & (y < h)
        confident = c >= kpt_conf
    return ~(finite & inside & confident)
