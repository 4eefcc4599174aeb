"""What the learned occlusion flag sees of a crop: numbers taken from the pose stage's output alone.

One row per crop whose pose model found a person, from the person taken (pose.select_person):

- the confidence of each body region's keypoints (mean and, for paired joints, the weaker side): an
  occluder or the crop's edge lowers them before it removes them;
- the pattern of missing keypoints: their share, the longest run in the paper's COCO-18 order and
  in the body order (nose, shoulders ... ankles);
- the person box against the crop: the gap at the nearer and the farther side, at the top and at
  the bottom, its area, height and aspect, and its detection score;
- the vertical extent of the confident keypoints, and how far they reach below the shoulders in
  torso lengths (about 2.3 for a whole body, about 1 when the legs are hidden);
- where the model puts the ankles even when unsure (a body cut off by the crop's edge puts them
  at or past the bottom), the share of keypoints placed outside the crop and of unsure keypoints
  at the bottom edge;
- whether several people were found.

Left and right are pooled (near/far side, mean/min of a pair) so a mirrored crop gives the same
row. Every value is bounded, so a strange crop cannot push the score past what training saw by
much. `FEATURES_VERSION` names this list; a flag file records it and is refused by another.
"""

from __future__ import annotations

import numpy as np

from manifests import COCO17, COCO18_ORDER, KEYPOINT_INDEX, in_order
from opreid_builder.curation.occlusion import BODY_ORDER, longest_runs
from opreid_builder.errors import CurationError

FEATURES_VERSION = 1
#: A keypoint below this confidence, not finite or outside the crop counts as missing (the paper rule's).
MISSING_CONF = 0.5
#: Keypoints pooled per body region (COCO-17 indices); paired joints also give their weaker side.
REGIONS: dict[str, tuple[int, ...]] = {
    "head": tuple(KEYPOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")),
    **{
        region: (KEYPOINT_INDEX[f"left_{joint}"], KEYPOINT_INDEX[f"right_{joint}"])
        for region, joint in (
            ("shoulders", "shoulder"), ("elbows", "elbow"), ("wrists", "wrist"),
            ("hips", "hip"), ("knees", "knee"), ("ankles", "ankle"),
        )
    },
}  # fmt: skip
_PAIRS = tuple(r for r in REGIONS if r != "head")
FEATURE_NAMES: tuple[str, ...] = (
    *(f"conf_{r}" for r in REGIONS),
    *(f"min_conf_{r}" for r in _PAIRS),
    "missing_share", "run_coco18", "run_body",
    "gap_near_side", "gap_far_side", "gap_top", "gap_bottom",
    "box_area", "box_height", "box_aspect", "box_score",
    "visible_top", "visible_bottom", "visible_extent", "torso_found", "depth_below_shoulders",
    "ankles_at", "ankles_below_shoulders", "unsure_at_bottom", "outside_share",
    "several_people",
)  # fmt: skip
#: The direction each piece of keypoint evidence may move P(occluded) (flag_fitting fits under these
#: signs): a keypoint seen more surely, or more of the body seen (from higher up, down to lower), never
#: raises it; more keypoints missing never lowers it. The box, the ankles' place and the number of
#: people are left free.
EVIDENCE_SIGNS: dict[str, int] = {
    **{name: -1 for name in FEATURE_NAMES if name.startswith(("conf_", "min_conf_"))},
    **dict.fromkeys(("missing_share", "run_coco18", "run_body", "unsure_at_bottom", "outside_share"), 1),
    **dict.fromkeys(("visible_extent", "visible_bottom", "torso_found", "depth_below_shoulders"), -1),
    "visible_top": 1,
}
_SHOULDERS = REGIONS["shoulders"]
_HIPS = REGIONS["hips"]
_ANKLES = REGIONS["ankles"]


def flag_features(
    keypoints: np.ndarray,
    sizes: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    n_persons: np.ndarray,
) -> np.ndarray:
    """(N, len(FEATURE_NAMES)) float64 features of N crops with a person found.

    `keypoints` (N, 17, 3) or (N, 51): x, y, confidence in crop pixels; `sizes` (N, 2) width, height;
    `boxes` (N, 4) x1, y1, x2, y2 of the person taken; `scores` (N,) its detection score;
    `n_persons` (N,) how many people the pose model found.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    kp = kp.reshape(len(kp), len(COCO17), 3)
    n = len(kp)
    size = np.asarray(sizes, dtype=np.float64).reshape(n, 2)
    box = np.asarray(boxes, dtype=np.float64).reshape(n, 4)
    score = np.asarray(scores, dtype=np.float64).reshape(n)
    people = np.asarray(n_persons, dtype=np.float64).reshape(n)
    if n and not (np.isfinite(box).all() and np.isfinite(score).all()):
        raise CurationError(
            "the learned occlusion flag needs the person box and its score, which only a pose model gives "
            "(a keypoints file has neither): use --occlusion-flag paper with --keypoints"
        )
    w = np.clip(size[:, 0], 1.0, None)
    h = np.clip(size[:, 1], 1.0, None)
    x, y, c = (np.nan_to_num(kp[..., i], nan=0.0, posinf=0.0, neginf=0.0) for i in range(3))
    inside = np.isfinite(kp).all(axis=-1) & (x >= 0) & (y >= 0) & (x < w[:, None]) & (y < h[:, None])
    conf = np.where(inside, np.clip(c, 0.0, 1.0), 0.0)
    seen = conf >= MISSING_CONF
    missing = ~seen

    cols: list[np.ndarray] = [conf[:, list(idx)].mean(axis=1) for idx in REGIONS.values()]
    cols += [conf[:, list(REGIONS[r])].min(axis=1) for r in _PAIRS]
    cols += [
        missing.mean(axis=1),
        longest_runs(in_order(missing, COCO18_ORDER)) / len(COCO18_ORDER),
        longest_runs(missing[:, list(BODY_ORDER)]) / len(BODY_ORDER),
    ]

    left, top = box[:, 0] / w, box[:, 1] / h
    right, bottom = (w - box[:, 2]) / w, (h - box[:, 3]) / h
    bw = np.clip(box[:, 2] - box[:, 0], 1e-3, None)
    bh = np.clip(box[:, 3] - box[:, 1], 1e-3, None)
    cols += [np.minimum(left, right), np.maximum(left, right), top, bottom]
    cols = [np.clip(v, 0.0, 1.0) for v in cols]
    cols += [
        np.clip(bw * bh / (w * h), 0.0, 1.0),
        np.clip(bh / h, 0.0, 1.0),
        np.clip(np.log(bh / bw), -2.0, 3.0),
        np.clip(score, 0.0, 1.0),
    ]

    any_seen = seen.any(axis=1)
    ys = np.where(seen, y, np.nan)
    with np.errstate(all="ignore"):
        lowest = np.where(any_seen, np.nanmax(np.where(any_seen[:, None], ys, 0.0), axis=1), 0.0)
        highest = np.where(any_seen, np.nanmin(np.where(any_seen[:, None], ys, 0.0), axis=1), 0.0)
    shoulder_y = y[:, list(_SHOULDERS)].mean(axis=1)
    torso = y[:, list(_HIPS)].mean(axis=1) - shoulder_y
    torso_found = seen[:, list(_SHOULDERS + _HIPS)].all(axis=1) & (torso > 1.0)
    depth = np.where(torso_found, (lowest - shoulder_y) / np.where(torso_found, torso, 1.0), 0.0)
    cols += [
        np.where(any_seen, np.clip(highest / h, 0.0, 1.0), 1.0),
        np.where(any_seen, np.clip(lowest / h, 0.0, 1.0), 0.0),
        np.where(any_seen, np.clip((lowest - highest) / h, 0.0, 1.0), 0.0),
        torso_found.astype(np.float64),
        np.clip(depth, 0.0, 4.0),
    ]

    ankles_y = y[:, list(_ANKLES)].mean(axis=1)
    cols += [
        np.clip(ankles_y / h, -0.5, 2.0),
        np.clip((ankles_y - shoulder_y) / h, -0.5, 2.0),
        ((c < MISSING_CONF) & (y > 0.95 * h[:, None])).mean(axis=1),
        (~inside).mean(axis=1),
        (people >= 2).astype(np.float64),
    ]
    out = np.stack(cols, axis=1) if n else np.zeros((0, len(FEATURE_NAMES)))
    assert out.shape[1] == len(FEATURE_NAMES)
    return out
