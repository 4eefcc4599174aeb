"""The learned occlusion flag: its features, model, threshold choice, fitting, flag files and the
bundled flag; fitted on pose outputs built here (the real pose model's runs are in test_flag_real.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from manifests import COCO17, KEYPOINT_INDEX
from opreid_builder.curation.flag_features import FEATURE_NAMES, FEATURES_VERSION, flag_features
from opreid_builder.curation.flag_fitting import (
    CUT_WEIGHT,
    LabelledData,
    fit_flag,
    grouped_folds,
    nested_cv,
    source_weights,
    threshold_for,
    wilson_interval,
)
from opreid_builder.curation.labelled_crops import CUT_SIDES, LabelledCrop, PoseOutputs, apply_cut, cut_copies
from opreid_builder.curation.logistic import LogisticModel, fit_logistic
from opreid_builder.curation.occlusion import PAPER_RULE, OcclusionRule
from opreid_builder.curation.occlusion_flag import (
    BUNDLED_FLAG,
    DEFAULT_FLAG,
    FLAG_KIND,
    LEARNED,
    LearnedFlag,
    PaperFlag,
    flag_bytes,
    load_flag,
    read_flag_file,
    write_flag,
)
from opreid_builder.errors import CurationError, FlagFileError

W, H = 64, 128
#: A standing person filling a 64 x 128 crop (COCO-17 order), as fractions of the crop.
_Y = [0.10, 0.08, 0.08, 0.09, 0.09, 0.22, 0.22, 0.38, 0.38, 0.52, 0.52, 0.55, 0.55, 0.75, 0.75, 0.95, 0.95]
_X = [0.50, 0.45, 0.55, 0.40, 0.60, 0.35, 0.65, 0.30, 0.70, 0.28, 0.72, 0.40, 0.60, 0.40, 0.60, 0.40, 0.60]
_LEGS = [KEYPOINT_INDEX[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle")]


def person(rng: np.random.Generator, occluded: bool) -> tuple[np.ndarray, tuple]:
    """Keypoints and box of a holistic person, or one whose legs are hidden (low confidence, box cut)."""
    kp = np.zeros((len(COCO17), 3), dtype=np.float32)
    kp[:, 0] = np.array(_X) * W + rng.normal(0, 1.5, len(COCO17))
    kp[:, 1] = np.array(_Y) * H + rng.normal(0, 1.5, len(COCO17))
    kp[:, 2] = rng.uniform(0.75, 0.99, len(COCO17))
    bottom = H - rng.uniform(0, 4)
    if occluded:
        kp[_LEGS, 2] = rng.uniform(0.02, 0.45, len(_LEGS))
        bottom = H * rng.uniform(0.6, 0.75)
    return kp, (rng.uniform(8, 14), rng.uniform(2, 8), W - rng.uniform(8, 14), bottom)


def labelled(n_per_source: int = 40, seed: int = 0, sources=("cams_a", "cams_b")) -> LabelledData:
    """Two folder-pair sources of made-up pose outputs, a person's two crops sharing a group; one crop
    per source where pose found nobody."""
    rng = np.random.default_rng(seed)
    crops, kps, boxes = [], [], []
    for src in sources:
        for i in range(n_per_source):
            for occluded in (True, False):
                kp, box = person(rng, occluded)
                # a few crops go the other way, so the classes overlap as real ones do
                flip = rng.random() < 0.04
                kp2, box2 = person(rng, not occluded) if flip else (kp, box)
                crops.append(
                    LabelledCrop(Path(f"{src}/{occluded}/{i}.jpg"), f"{i}.jpg", occluded, src, f"{src}:{i}")
                )
                kps.append(kp2)
                boxes.append(box2)
    n = len(crops)
    pose = PoseOutputs(
        np.stack(kps), np.tile([W, H], (n, 1)).astype(np.float64), np.asarray(boxes, dtype=np.float64),
        rng.uniform(0.6, 0.95, n), np.ones(n, dtype=np.int64), np.ones(n, dtype=bool),
        [f"{i:016x}" for i in range(n)],
    )  # fmt: skip
    for first in range(0, n, 2 * n_per_source):  # in each source, one occluded crop where nobody was found
        pose.keypoints[first] = np.nan
        pose.boxes[first] = np.nan
        pose.n_persons[first] = 0
    return LabelledData.build(crops, pose)


# --- features -------------------------------------------------------------------------------------


def test_features_are_bounded_and_mirror_invariant():
    rng = np.random.default_rng(1)
    kp, box = person(rng, occluded=True)
    row = flag_features(kp[None], [[W, H]], [box], [0.8], [2])
    assert row.shape == (1, len(FEATURE_NAMES)) and np.isfinite(row).all()
    mirror = kp.copy()
    mirror[:, 0] = W - kp[:, 0]
    for name in ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
        left, right = KEYPOINT_INDEX[f"left_{name}"], KEYPOINT_INDEX[f"right_{name}"]
        mirror[[left, right]] = mirror[[right, left]]
    mirrored = flag_features(mirror[None], [[W, H]], [(W - box[2], box[1], W - box[0], box[3])], [0.8], [2])
    np.testing.assert_allclose(row, mirrored, atol=1e-9)
    named = dict(zip(FEATURE_NAMES, row[0], strict=True))
    assert named["several_people"] == 1.0 and named["conf_knees"] < 0.5 and named["gap_bottom"] > 0.2
    wild = kp.copy()
    wild[:, :2] *= 50  # far outside the crop: every keypoint missing, values still bounded
    assert np.isfinite(flag_features(wild[None], [[W, H]], [box], [0.8], [1])).all()


def test_features_refuse_a_keypoints_file_without_boxes():
    kp, _ = person(np.random.default_rng(2), occluded=False)
    with pytest.raises(CurationError, match="--occlusion-flag paper"):
        flag_features(kp[None], [[W, H]], [[np.nan] * 4], [np.nan], [1])


# --- model, folds, threshold, intervals -----------------------------------------------------------


def test_logistic_regression_fits_round_trips_and_refuses_one_class():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] - 0.5 * X[:, 1] + rng.normal(0, 0.5, 400)) > 0
    model = fit_logistic(X, y)
    assert model.coef[0] > 0 > model.coef[1] and abs(model.coef[2]) < 0.5 * model.coef[0]
    p = model.predict_proba(X)
    assert ((p >= 0.5) == y).mean() > 0.8
    again = LogisticModel.from_dict(model.as_dict(), 3)
    np.testing.assert_array_equal(again.predict_proba(X), p)
    assert np.array_equal(fit_logistic(X, y).coef, model.coef)  # deterministic
    heavy = fit_logistic(X, y, weights=np.where(y, 10.0, 1.0))
    assert heavy.predict_proba(X).mean() > p.mean()  # weights move the decision
    with pytest.raises(CurationError, match="both occluded and holistic"):
        fit_logistic(X, np.ones(400, dtype=bool))


def test_sign_constraints_hold_a_coefficient_at_zero_and_release_it_when_free():
    rng = np.random.default_rng(6)
    a = rng.normal(size=600)
    b = a + rng.normal(0, 0.3, 600)  # correlated with a: alone it says occluded, beside a the fit flips it
    y = (2 * a - 0.8 * b + rng.normal(0, 0.5, 600)) > 0
    X = np.stack([a, b], axis=1)
    free = fit_logistic(X, y)
    assert free.coef[1] < 0
    held = fit_logistic(X, y, signs=np.array([1, 1]))
    assert held.coef[1] == 0.0 and held.coef[0] > 0
    # a constraint the data agree with changes nothing
    np.testing.assert_allclose(fit_logistic(X, y, signs=np.array([1, -1])).coef, free.coef)
    # held at zero, then released: a feature the others no longer explain comes back
    c = -a + rng.normal(0, 0.3, 600)
    both = fit_logistic(np.stack([a, c], axis=1), y, signs=np.array([-1, -1]))
    assert both.coef[0] == 0.0 and both.coef[1] < 0


def test_cut_copies_keep_a_side_of_every_holistic_crop_in_its_group():
    crops = [LabelledCrop(Path(f"{i}.jpg"), f"{i}.jpg", i % 3 == 0, "cams", f"cams:{i}") for i in range(12)]
    copies = cut_copies(crops, seed=1)
    holistic = [c for c in crops if not c.occluded]
    assert len(copies) == len(holistic) and all(c.occluded and c.source == "cut:cams" for c in copies)
    assert [c.group for c in copies] == [c.group for c in holistic]
    assert [c.cut[0] for c in copies[:4]] == list(CUT_SIDES)
    assert copies == cut_copies(crops, seed=1)
    rgb = np.arange(128 * 64 * 3, dtype=np.uint8).reshape(128, 64, 3)
    assert apply_cut(rgb, ("left", 0.5)).shape == (128, 32, 3) and apply_cut(rgb, None) is rgb
    np.testing.assert_array_equal(apply_cut(rgb, ("right", 0.5)), rgb[:, 32:])
    assert apply_cut(rgb, ("bottom", 0.75)).shape == (96, 64, 3)
    np.testing.assert_array_equal(apply_cut(rgb, ("top", 0.75)), rgb[32:])
    assert apply_cut(rgb, ("left", 0.01)).shape[1] == 8  # never thinner than a sliver
    # a source's cut copies weigh half the source
    sources = ["cams", "cut:cams"]
    w = source_weights(np.array([0, 0, 0, 1, 1]), sources)
    assert w[:3].sum() == pytest.approx(1.0) and w[3:].sum() == pytest.approx(CUT_WEIGHT)


def test_grouped_folds_keep_groups_whole_and_are_seeded():
    groups = np.repeat(np.arange(30), 3)
    folds = grouped_folds(groups, 5, seed=4)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    assert all(len(set(folds[groups == g])) == 1 for g in range(30))
    assert np.array_equal(folds, grouped_folds(groups, 5, seed=4))
    assert not np.array_equal(folds, grouped_folds(groups, 5, seed=5))


def test_threshold_meets_the_target_on_average_over_sources():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.95, 0.1, 0.4, 0.5, 0.6, 0.99])
    labels = np.array([0, 0, 0, 1, 1, 0, 0, 0, 1, 1], dtype=bool)
    source = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    t = threshold_for(scores, labels, source, 0.0)
    assert 0.5 < t <= 0.6 and not (scores[~labels] >= t).any() and (scores[labels] >= t).all()
    # one third of source 1's holistic crops may be flagged if source 0 flags none: average 1/6
    t = threshold_for(scores, labels, source, 1 / 6)
    assert 0.4 < t <= 0.5
    assert threshold_for(scores, labels, source, 0.5) <= 0.3


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)


# --- fitting ---------------------------------------------------------------------------------------


def test_fit_flag_chooses_a_threshold_and_reports_nested_cross_validation(tmp_path):
    data = labelled()
    report = fit_flag(data, max_holistic_flagged=0.1, folds=5, seed=0, name="test", version="7")
    body = report.body
    assert body["kind"] == FLAG_KIND and body["features"] == {
        "version": FEATURES_VERSION, "names": list(FEATURE_NAMES), "missing_conf": 0.5,
    }  # fmt: skip
    names = [r.name for r in report.cv]
    assert names == ["cams_a", "cams_b", "all"]
    for r in report.cv:
        assert r.occluded_ci[0] <= r.occluded_flagged <= r.occluded_ci[1]
        assert r.holistic_ci[0] <= r.holistic_flagged <= r.holistic_ci[1]
    pooled = report.cv[-1]
    assert pooled.occluded == 80 and pooled.holistic == 80
    assert pooled.occluded_flagged > 0.7 and pooled.holistic_flagged < 0.25
    assert pooled.no_person == {"occluded": 2, "holistic": 0}  # counted as flagged
    assert body["training"]["digests"] == sorted(data.pose.digests)
    assert [s["name"] for s in body["training"]["sources"]] == ["cams_a", "cams_b"]
    flag = write_flag(body, tmp_path / "flag.json")
    assert isinstance(flag, LearnedFlag) and flag.threshold == report.threshold and flag.version == "7"
    assert read_flag_file(tmp_path / "flag.json").sha256 == flag.sha256
    # the written flag gives the in-sample rates the report printed
    found = data.found
    flags = np.ones(len(data.crops), dtype=bool)
    flags[found] = flag.decide(data.pose.evidence(found, 0.5))[0]
    occ = data.labels & data.readable
    assert flags[occ].mean() == pytest.approx(report.in_sample[-1].occluded_flagged, abs=1e-4)


def test_nested_cv_leaves_each_fold_out_of_the_fit_and_the_threshold():
    data = labelled(seed=5)
    flags, probs = nested_cv(data, 0.05, folds=4, seed=0, l2=1.0)
    assert np.isnan(probs[~data.found]).all() and flags[~data.found].all()
    # a model fitted on everything scores its own crops more confidently than the held-out ones
    fitted = fit_logistic(data.features[data.found], data.labels[data.found])
    own = fitted.predict_proba(data.features[data.found])
    lab = data.labels[data.found]
    margin_in = np.mean(np.where(lab, own, 1 - own))
    margin_out = np.mean(np.where(lab, probs[data.found], 1 - probs[data.found]))
    assert margin_out < margin_in


def test_fit_refuses_what_it_cannot_fit():
    data = labelled(n_per_source=3, sources=("only",))
    with pytest.raises(CurationError, match="too few"):
        fit_flag(data, folds=10)
    with pytest.raises(CurationError, match="max-holistic-flagged"):
        fit_flag(labelled(), max_holistic_flagged=1.5)


# --- flag files and the named flags ----------------------------------------------------------------


def test_flag_files_are_refused_with_a_reason(tmp_path):
    body = fit_flag(labelled(), folds=5).body
    cases = {
        "not json": b"{oops",
        "kind": flag_bytes({**body, "kind": "something else"}),
        "schema": flag_bytes({**body, "schema_version": 99}),
        "features version": flag_bytes({**body, "features": {**body["features"], "version": 0}}),
        "threshold": flag_bytes({**body, "threshold": 1.5}),
        "coef": flag_bytes({**body, "model": {**body["model"], "coef": [1.0, 2.0]}}),
    }
    for why, data in cases.items():
        path = tmp_path / f"{why}.json"
        path.write_bytes(data)
        with pytest.raises(FlagFileError) as err:
            read_flag_file(path)
        assert err.value.exit_code == 2, why
    with pytest.raises(CurationError, match="not found"):
        read_flag_file(tmp_path / "absent.json")


def test_named_flags_and_defaults(tmp_path):
    assert isinstance(load_flag("paper"), PaperFlag) and load_flag("paper").rule == PAPER_RULE
    assert load_flag("paper", OcclusionRule("count", 0.4, 5)).rule.rule == "count"
    bundled = load_flag(LEARNED)
    assert isinstance(bundled, LearnedFlag) and bundled.bundled and bundled.file == BUNDLED_FLAG
    assert type(load_flag(None)) is type(load_flag(DEFAULT_FLAG))
    assert isinstance(load_flag(None, from_keypoints_file=True), PaperFlag)  # a keypoints file has no boxes
    with pytest.raises(CurationError, match="--occlusion-flag paper with --keypoints"):
        load_flag(LEARNED, from_keypoints_file=True)
    described = bundled.describe()
    assert (
        described["flag"] == LEARNED
        and described["sha256"] == bundled.sha256
        and "digests" not in json.dumps(described)
    )


def test_bundled_flag_records_what_it_was_fitted_on():
    flag = load_flag(LEARNED)
    sources = {s["name"]: s for s in flag.body["training"]["sources"]}
    assert set(sources) == {"partial_ilids", "synthetic", "cut:partial_ilids", "cut:synthetic"}
    assert sources["partial_ilids"]["occluded"] == 119 and sources["partial_ilids"]["holistic"] == 119
    assert flag.body["training"]["keypoints"]["model"] == "yolo26n-pose-int8-256.onnx"
    assert len(flag.fitted_on()) == 238  # the real crops, by content digest (never the crops themselves)
    assert 0.0 < flag.threshold < 1.0 and flag.body["operating_point"]["max_holistic_flagged"] == 0.05
    cv = {r["name"]: r for r in flag.body["cv"]["sources"]}
    assert cv["partial_ilids"]["occluded_ci"][0] <= cv["partial_ilids"]["occluded_flagged"]


@pytest.mark.slow
def test_fit_cli_refuses_unpaired_folders_and_a_keypoints_file(tmp_path, run_opreid, expect_error):
    from support.curation import make_synth

    raw = make_synth(tmp_path / "raw", identities=4, cameras=2, seed=2)
    occ, hol = tmp_path / "occ", tmp_path / "hol"
    occ.mkdir()
    hol.mkdir()
    for i, f in enumerate(sorted(raw.glob("*.jpg"))):
        (occ if i % 2 else hol).joinpath(f.name).write_bytes(f.read_bytes())
    out = tmp_path / "flag.json"
    res = run_opreid("occlusion", "fit", "--occluded", occ, "-o", out)
    expect_error(res, "opreid occlusion fit", 1, "in pairs")
    res = run_opreid("occlusion", "fit", "--occluded", occ, "--holistic", hol, "--keypoints",
                     raw / "keypoints.parquet", "-o", out, "--no-progress")  # fmt: skip
    expect_error(res, "opreid occlusion fit", 1, "needs the person box")
    assert not out.exists()
