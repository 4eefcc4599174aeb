"""The occlusion rule: missing keypoints, orders, runs, parts, and the calibration grid."""

from __future__ import annotations

import numpy as np
import pytest

from manifests import COCO17, COCO18_ORDER, NECK
from opreid_builder.curation.occlusion import (
    RULES,
    OcclusionRule,
    evaluate,
    evaluate_grid,
    longest_run,
    longest_runs,
    missing_keypoints,
    missing_parts,
    ordered_missing,
)
from opreid_builder.errors import CurationError

I = {n: i for i, n in enumerate(COCO17)}  # noqa: E741


def person(conf: float = 0.9, w: int = 64, h: int = 128) -> np.ndarray:
    kp = np.zeros((17, 3), dtype=np.float32)
    kp[:, 0] = np.linspace(10, w - 10, 17)
    kp[:, 1] = np.linspace(10, h - 10, 17)
    kp[:, 2] = conf
    return kp


def hide(kp: np.ndarray, *names: str) -> np.ndarray:
    kp = kp.copy()
    for n in names:
        kp[I[n], 2] = 0.1
    return kp


def test_coco18_order_is_openpose_along_the_limbs():
    names = ["neck" if i == NECK else COCO17[i] for i in COCO18_ORDER]
    assert names == [
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
    ]  # fmt: skip


def test_batched_masks_match_one_at_a_time():
    rng = np.random.default_rng(1)
    masks = rng.random((50, 17)) < 0.3
    for rule in RULES:
        batch = ordered_missing(masks, rule)
        assert [longest_run(row) for row in batch] == longest_runs(batch).tolist()
        assert all((ordered_missing(m, rule) == b).all() for m, b in zip(masks, batch, strict=True))
    kps = rng.uniform(-5, 70, (50, 17, 3))
    sizes = rng.integers(32, 64, (50, 2))
    batch = missing_keypoints(kps, sizes[:, 0], sizes[:, 1], 0.5)
    for kp, (w, h), b in zip(kps, sizes, batch, strict=True):
        assert (missing_keypoints(kp.reshape(-1), w, h, 0.5) == b).all()


def test_neck_present_only_when_both_shoulders_are():
    m = missing_keypoints(hide(person(), "left_shoulder"), 64, 128, 0.5)
    assert ordered_missing(m, "coco18")[1]
    m = missing_keypoints(person(), 64, 128, 0.5)
    assert not ordered_missing(m, "coco18")[1]


def test_missing_means_low_confidence_outside_or_not_finite():
    kp = person()
    kp[0, 2] = 0.49  # below threshold
    kp[1, 0] = -1.0  # left of the crop
    kp[2, 1] = 128.0  # at the bottom edge: outside [0, h)
    kp[3, 0] = np.nan
    m = missing_keypoints(kp, 64, 128, 0.5)
    assert m[:4].all() and not m[4:].any()
    kp[0, 2] = 0.5
    assert not missing_keypoints(kp, 64, 128, 0.5)[0]


def test_longest_run():
    assert longest_run(np.array([0, 1, 1, 0, 1, 1, 1, 0], bool)) == 3
    assert longest_run(np.zeros(5, bool)) == 0
    assert longest_run(np.ones(4, bool)) == 4


def test_default_rule_flags_a_hidden_leg_but_not_scattered_misses():
    rule = OcclusionRule()
    leg = evaluate(hide(person(), "right_hip", "right_knee", "right_ankle"), 64, 128, rule)
    assert leg.occluded and leg.longest_run == 3 and "right_leg" in leg.missing_parts
    # three misses that are far apart in the COCO-18 order: no run of 3
    scattered = evaluate(hide(person(), "right_wrist", "left_knee", "right_ear"), 64, 128, rule)
    assert not scattered.occluded and scattered.longest_run == 1 and scattered.n_missing == 3


def test_wrist_then_hip_run_crosses_limbs_in_coco18_order():
    # R wrist is followed by L shoulder in COCO-18 order; in COCO-17 index order they are far apart.
    kp = hide(person(), "right_elbow", "right_wrist", "left_shoulder")
    assert evaluate(kp, 64, 128, OcclusionRule("coco18")).occluded
    assert not evaluate(kp, 64, 128, OcclusionRule("coco17")).occluded


def test_body_rule_ignores_eyes_and_ears_order():
    kp = hide(person(), "left_eye", "right_eye", "left_ear")  # consecutive in COCO-17 index order
    assert evaluate(kp, 64, 128, OcclusionRule("coco17")).occluded
    assert not evaluate(kp, 64, 128, OcclusionRule("body")).occluded


def test_count_rule():
    kp = hide(person(), "right_wrist", "left_knee", "right_ear")
    assert evaluate(kp, 64, 128, OcclusionRule("count", 0.5, 3)).occluded
    assert not evaluate(kp, 64, 128, OcclusionRule("count", 0.5, 4)).occluded


def test_parts_any_missing_keypoint():
    m = missing_keypoints(hide(person(), "nose", "left_ankle"), 64, 128, 0.5)
    assert missing_parts(m) == ("head", "left_leg")


def test_bad_parameters_raise():
    with pytest.raises(CurationError):
        OcclusionRule("openpose")
    with pytest.raises(CurationError):
        OcclusionRule(kpt_conf=1.5)
    with pytest.raises(CurationError):
        OcclusionRule(min_run=0)


def test_describe_records_the_order_and_parameters():
    d = OcclusionRule().describe()
    assert d["rule"] == "coco18" and d["kpt_conf"] == 0.5 and d["min_run"] == 3 and d["order"][1] == "neck"


@pytest.mark.slow
def test_grid_agrees_with_evaluate_on_random_people():
    rng = np.random.default_rng(0)
    n = 300
    kps = rng.uniform(0, 1, (n, 17, 3)).astype(np.float32)
    kps[..., 0] = rng.uniform(-10, 74, (n, 17))
    kps[..., 1] = rng.uniform(-10, 138, (n, 17))
    sizes = np.tile([64, 128], (n, 1))
    grid = evaluate_grid(kps, sizes, RULES, (0.3, 0.5, 0.7), (2, 3, 4))
    for (rule, conf, run), flags in grid.items():
        expect = [evaluate(kps[i], 64, 128, OcclusionRule(rule, conf, run)).occluded for i in range(n)]
        assert flags.tolist() == expect, (rule, conf, run)
