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
outside the crop. That test, the keypoint names, the COCO-18 order and the body parts are the data
contract's (manifests/keypoints.py), shared with face masking; the generator (`opreid synth`) checks
its occluders against PAPER_RULE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from manifests import (
    COCO17,
    COCO18,
    COCO18_ORDER,
    DEFAULT_KPT_CONF,
    KEYPOINT_INDEX,
    PART_KEYPOINTS,
    in_order,
    missing_keypoints,
)
from opreid_builder.errors import CurationError

RULES = ("coco18", "coco17", "body", "count")
#: COCO-17 order without eyes and ears: the nose, then shoulders to ankles.
BODY_ORDER: tuple[int, ...] = (KEYPOINT_INDEX["nose"], *range(KEYPOINT_INDEX["left_shoulder"], len(COCO17)))
ORDERS: dict[str, tuple[int, ...]] = {
    "coco18": COCO18_ORDER,
    "coco17": tuple(range(len(COCO17))),
    "body": BODY_ORDER,
    "count": tuple(range(len(COCO17))),
}


@dataclass(frozen=True)
class OcclusionRule:
    """The rule and its parameters; `asdict` of it goes into dataset.json."""

    rule: str = "coco18"
    kpt_conf: float = DEFAULT_KPT_CONF
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
        body["order"] = list(COCO18) if self.rule == "coco18" else [COCO17[i] for i in ORDERS[self.rule]]
        body["test"] = (
            f"at least {self.min_run} of 17 keypoints missing"
            if self.rule == "count"
            else f"a run of at least {self.min_run} consecutive missing keypoints in this order"
        )
        body["missing"] = f"confidence < {self.kpt_conf}, not finite, or outside the crop"
        return body

    def decide(self, missing17: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longest run in the rule's order and the decision, for (..., 17) missing masks."""
        run = longest_runs(ordered_missing(missing17, self.rule))
        evidence = np.asarray(missing17, dtype=bool).sum(axis=-1) if self.rule == "count" else run
        return run, evidence >= self.min_run


#: The paper's rule (the default): a run of >= 3 missing keypoints in OpenPose's COCO-18 order.
PAPER_RULE = OcclusionRule()


@dataclass(frozen=True)
class Occlusion:
    """The evidence for one image and the decision."""

    missing: np.ndarray  # (17,) bool, COCO-17 order
    longest_run: int  # in the rule's order
    n_missing: int  # of the 17
    missing_parts: tuple[str, ...]
    occluded: bool


def ordered_missing(missing17: np.ndarray, rule: str) -> np.ndarray:
    """The missing mask laid out in the rule's order (the neck derived for coco18)."""
    return in_order(missing17, ORDERS[rule])


def longest_runs(mask: np.ndarray) -> np.ndarray:
    """Length of the longest stretch of True values along the last axis of a (..., L) mask."""
    mask = np.asarray(mask, dtype=bool)
    count = np.cumsum(mask, axis=-1, dtype=np.int64)  # True values so far
    at_last_false = np.maximum.accumulate(np.where(mask, 0, count), axis=-1)
    return (count - at_last_false).max(axis=-1, initial=0)  # run ending at each position, longest


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest stretch of True values."""
    return int(longest_runs(mask))


def missing_parts(missing17: np.ndarray) -> tuple[str, ...]:
    """Body parts (BODY_PARTS order) with at least one missing keypoint."""
    return tuple(part for part, idx in PART_KEYPOINTS.items() if bool(np.any(missing17[list(idx)])))


def evaluate(keypoints: np.ndarray, width: int, height: int, rule: OcclusionRule) -> Occlusion:
    """Apply the rule to one person's 17 keypoints (x, y, conf in crop pixels)."""
    missing = missing_keypoints(np.reshape(keypoints, (len(COCO17), 3)), width, height, rule.kpt_conf)
    run, occluded = rule.decide(missing)
    return Occlusion(missing, int(run), int(missing.sum()), missing_parts(missing), bool(occluded))


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
    size = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    out: dict[tuple[str, float, int], np.ndarray] = {}
    for conf in confs:
        missing = missing_keypoints(kp, size[:, 0], size[:, 1], conf)
        for name in rules:
            for k in runs:
                out[(name, conf, k)] = OcclusionRule(name, conf, k).decide(missing)[1]
    return out
