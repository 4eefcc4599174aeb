"""The occlusion rule: which keypoints are missing, the longest run of them, and the decision.

The paper flags "images that miss at least three sequential key-points" from OpenPose, whose
COCO-18 order runs along the limbs (nose, neck, R shoulder-elbow-wrist, L shoulder-elbow-wrist,
R hip-knee-ankle, L hip-knee-ankle, R eye, L eye, R ear, L ear). A run of missing keypoints in that
order therefore means a whole limb or a body region is hidden. Our pose models give COCO-17, so
the default rule maps COCO-17 onto that order, with the neck present only when both shoulders are.

Rules (`--rule`):
- `coco18`: the paper's OpenPose order (default); occluded when the longest run >= `min_run`.
- `coco17`: COCO-17 index order; same run test.
- `body`: COCO-17 order without eyes and ears (nose, shoulders, ..., ankles); same run test.
- `count`: occluded when at least `min_run` of the 17 keypoints are missing, wherever they are.

A keypoint is missing when its confidence is below `kpt_conf`, it is not finite, or it lies
outside the crop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from manifests import BODY_PARTS, COCO17
from opreid_builder.errors import CurationError

RULES = ("coco18", "coco17", "body", "count")
NECK = -1  # marker in an order: the neck, derived from both shoulders
_I = {name: i for i, name in enumerate(COCO17)}

#: OpenPose COCO-18 order expressed in COCO-17 indices (NECK = derived).
COCO18_ORDER: tuple[int, ...] = (
    _I["nose"], NECK,
    _I["right_shoulder"], _I["right_elbow"], _I["right_wrist"],
    _I["left_shoulder"], _I["left_elbow"], _I["left_wrist"],
    _I["right_hip"], _I["right_knee"], _I["right_ankle"],
    _I["left_hip"], _I["left_knee"], _I["left_ankle"],
    _I["right_eye"], _I["left_eye"], _I["right_ear"], _I["left_ear"],
)  # fmt: skip
COCO18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
BODY_ORDER: tuple[int, ...] = (_I["nose"], *range(_I["left_shoulder"], len(COCO17)))
ORDERS: dict[str, tuple[int, ...]] = {
    "coco18": COCO18_ORDER,
    "coco17": tuple(range(len(COCO17))),
    "body": BODY_ORDER,
    "count": tuple(range(len(COCO17))),
}

#: COCO-17 keypoints of each body part; a part is missing when any of them is (as the synth truth counts).
PART_KEYPOINTS: dict[str, tuple[int, ...]] = {
    "head": tuple(_I[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")),
    "torso": tuple(_I[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")),
    "left_arm": tuple(_I[n] for n in ("left_shoulder", "left_elbow", "left_wrist")),
    "right_arm": tuple(_I[n] for n in ("right_shoulder", "right_elbow", "right_wrist")),
    "left_leg": tuple(_I[n] for n in ("left_hip", "left_knee", "left_ankle")),
    "right_leg": tuple(_I[n] for n in ("right_hip", "right_knee", "right_ankle")),
}
assert tuple(PART_KEYPOINTS) == BODY_PARTS


@dataclass(frozen=True)
class OcclusionRule:
    """The rule and its parameters; `asdict` of it goes into dataset.json."""

    rule: str = "coco18"
    kpt_conf: float = 0.5
    min_run: int = 3

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise CurationError(f"unknown occlusion rule {self.rule!r} (choose one of {', '.join(RULES)})")
        if not 0.0 <= self.kpt_conf <= 1.0:
            raise CurationError(f"--kpt-conf must be in [0, 1], got {self.kpt_conf}")
        if self.min_run < 1:
            raise CurationError(f"--min-run must be >= 1, got {self.min_run}")

    def describe(self) -> dict:
        body = asdict(self)
        body["order"] = (
            [COCO18_NAMES[i] for i in range(18)]
            if self.rule == "coco18"
            else [COCO17[i] for i in ORDERS[self.rule]]
        )
        body["test"] = (
            f"at least {self.min_run} of 17 keypoints missing"
            if self.rule == "count"
            else f"a run of at least {self.min_run} consecutive missing keypoints in this order"
        )
        body["missing"] = f"confidence < {self.kpt_conf}, not finite, or outside the crop"
        return body


@dataclass(frozen=True)
class Occlusion:
    """The evidence for one image and the decision."""

    missing: np.ndarray  # (17,) bool, COCO-17 order
    longest_run: int  # in the rule's order
    n_missing: int  # of the 17
    missing_parts: tuple[str, ...]
    occluded: bool


def missing_keypoints(keypoints: np.ndarray, width: int, height: int, kpt_conf: float) -> np.ndarray:
    """(17,) bool: confidence below the threshold, not finite, or outside [0, width) x [0, height)."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(len(COCO17), 3)
    x, y, c = kp[:, 0], kp[:, 1], kp[:, 2]
    finite = np.isfinite(kp).all(axis=1)
    with np.errstate(invalid="ignore"):
        inside = (x >= 0) & (y >= 0) & (x < width) & (y < height)
        confident = c >= kpt_conf
    return ~(finite & inside & confident)


def ordered_missing(missing17: np.ndarray, rule: str) -> np.ndarray:
    """The missing mask laid out in the rule's order (the neck derived for coco18)."""
    neck = bool(missing17[_I["left_shoulder"]] or missing17[_I["right_shoulder"]])
    return np.array([neck if i == NECK else bool(missing17[i]) for i in ORDERS[rule]], dtype=bool)


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest stretch of True values."""
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best


def missing_parts(missing17: np.ndarray) -> tuple[str, ...]:
    """Body parts (BODY_PARTS order) with at least one missing keypoint."""
    return tuple(part for part, idx in PART_KEYPOINTS.items() if bool(np.any(missing17[list(idx)])))


def evaluate(keypoints: np.ndarray, width: int, height: int, rule: OcclusionRule) -> Occlusion:
    """Apply the rule to one person's 17 keypoints (x, y, conf in crop pixels)."""
    missing = missing_keypoints(keypoints, width, height, rule.kpt_conf)
    run = longest_run(ordered_missing(missing, rule.rule))
    n = int(missing.sum())
    occluded = n >= rule.min_run if rule.rule == "count" else run >= rule.min_run
    return Occlusion(missing, run, n, missing_parts(missing), bool(occluded))


def evaluate_grid(
    keypoints: np.ndarray,
    sizes: np.ndarray,
    rules: tuple[str, ...],
    confs: tuple[float, ...],
    runs: tuple[int, ...],
) -> dict[tuple[str, float, int], np.ndarray]:
    """Decisions of every (rule, kpt_conf, min_run) for N images at once, for calibration.

    `keypoints` is (N, 17, 3), `sizes` (N, 2) as width, height. Returns a bool (N,) array per combination.
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, len(COCO17), 3)
    w = np.asarray(sizes, dtype=np.float64)[:, 0:1]
    h = np.asarray(sizes, dtype=np.float64)[:, 1:2]
    finite = np.isfinite(kp).all(axis=2)
    with np.errstate(invalid="ignore"):
        inside = (kp[..., 0] >= 0) & (kp[..., 1] >= 0) & (kp[..., 0] < w) & (kp[..., 1] < h) & finite
    out: dict[tuple[str, float, int], np.ndarray] = {}
    for conf in confs:
        with np.errstate(invalid="ignore"):
            missing = ~(inside & (kp[..., 2] >= conf))
        neck = missing[:, _I["left_shoulder"]] | missing[:, _I["right_shoulder"]]
        for name in rules:
            if name == "count":
                n = missing.sum(axis=1)
                for k in runs:
                    out[(name, conf, k)] = n >= k
                continue
            cols = [neck if i == NECK else missing[:, i] for i in ORDERS[name]]
            run = np.zeros(len(kp), dtype=np.int64)
            best = np.zeros(len(kp), dtype=np.int64)
            for col in cols:
                run = np.where(col, run + 1, 0)
                best = np.maximum(best, run)
            for k in runs:
                out[(name, conf, k)] = best >= k
    return out
