"""`opreid synth`: names, manifests, determinism, keypoint visibility vs occluders, truth vs the rule."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import manifests
from opreid_builder.cli.synth import synth as synth_command
from opreid_builder.curation.occlusion import PAPER_RULE, OcclusionRule, evaluate
from opreid_builder.synth.generator import (
    SUPERSAMPLE,
    SynthConfig,
    SynthConfigError,
    SynthOutputError,
    generate,
    plan,
    render_crop,
)

MARKET = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.jpg$")
SMALL = SynthConfig(identities=6, cameras=3, images_per_identity=(5, 7), occluded_fraction=0.4, seed=7)

# COCO-17 -> OpenPose COCO-18 (None = neck, present only when both shoulders are), written here
# independently of the generator: the paper's rule is "a run of >= 3 consecutive missing keypoints".
COCO17_TO_18 = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]


def paper_rule_occluded(kps: np.ndarray, width: int, height: int) -> bool:
    kps = kps.reshape(17, 3)
    present = (
        (kps[:, 2] > 0.5) & (kps[:, 0] >= 0) & (kps[:, 0] < width) & (kps[:, 1] >= 0) & (kps[:, 1] < height)
    )
    seq = [bool(present[5] and present[6]) if i is None else bool(present[i]) for i in COCO17_TO_18]
    longest = run = 0
    for ok in seq:
        run = 0 if ok else run + 1
        longest = max(longest, run)
    return longest >= 3


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate(out, SMALL)
    return out


def _tables(out: Path) -> tuple[list[dict], list[dict]]:
    kps = manifests.read_manifest(out / "keypoints.parquet", manifests.KEYPOINTS_FILE).to_pylist()
    truth = manifests.read_manifest(out / "truth.parquet", manifests.SYNTH_TRUTH).to_pylist()
    return kps, truth


def test_writes_market_named_crops_and_both_manifests(raw: Path):
    jpgs = sorted(p.name for p in raw.glob("*.jpg"))
    assert sorted(p.name for p in raw.iterdir()) == sorted(jpgs + ["keypoints.parquet", "truth.parquet"])
    kps, truth = _tables(raw)
    assert [r["file"] for r in kps] == jpgs == [r["file"] for r in truth]
    seen = set()
    for row in truth:
        pid, cam, frame = map(int, MARKET.match(row["file"]).groups())
        assert (row["pid"], row["camid"]) == (pid, cam) and pid >= 1 and 1 <= cam <= SMALL.cameras
        assert (pid, cam, frame) not in seen
        seen.add((pid, cam, frame))
        assert set(row["occluded_parts"]) <= set(manifests.BODY_PARTS)
    assert {r["pid"] for r in truth} == set(range(1, SMALL.identities + 1))
    for row in kps:
        assert len(row["keypoints"]) == 51
    with Image.open(raw / jpgs[0]) as im:
        assert im.format == "JPEG" and im.size == (SMALL.width, SMALL.height)


def test_each_identity_has_cross_camera_occluded_and_holistic_matches(raw: Path):
    _, truth = _tables(raw)
    by_pid: dict[int, list[dict]] = defaultdict(list)
    for row in truth:
        by_pid[row["pid"]].append(row)
    for pid, rows in by_pid.items():
        lo, hi = SMALL.images_per_identity
        assert lo <= len(rows) <= hi
        assert len({r["camid"] for r in rows}) >= 2, pid
        # any occluded image (a possible query) has an occluded and a holistic image from other cameras
        for q in (r for r in rows if r["occluded"]):
            others = [r for r in rows if r["camid"] != q["camid"]]
            assert any(r["occluded"] for r in others) and any(not r["occluded"] for r in others), pid


def test_truth_flag_agrees_with_the_coco18_run_rule_on_every_image(raw: Path):
    kps, truth = _tables(raw)
    for k, t in zip(kps, truth, strict=True):
        kp = np.asarray(k["keypoints"], dtype=np.float32)
        assert paper_rule_occluded(kp, SMALL.width, SMALL.height) == t["occluded"], t["file"]
        if not t["occluded"]:  # holistic: every keypoint lies inside the crop
            xy = kp.reshape(17, 3)[:, :2]
            assert (xy[:, 0] >= 0).all() and (xy[:, 0] < SMALL.width).all()
            assert (xy[:, 1] >= 0).all() and (xy[:, 1] < SMALL.height).all()
        else:
            assert t["occluder"] in {"cart", "shelf", "sign", "pedestrian"} and t["occluded_parts"]
    flags = [t["occluded"] for t in truth]
    assert any(flags) and not all(flags)


def test_truth_agrees_with_the_curation_rule_through_the_shared_topology(raw: Path):
    """Curating the synth keypoints with the default rule gives back the truth flag and parts."""
    kps, truth = _tables(raw)
    assert OcclusionRule() == PAPER_RULE
    for k, t in zip(kps, truth, strict=True):
        occ = evaluate(np.asarray(k["keypoints"], dtype=np.float32), SMALL.width, SMALL.height, PAPER_RULE)
        assert occ.occluded == t["occluded"], t["file"]
        assert list(occ.missing_parts) == t["occluded_parts"], t["file"]


def test_keypoints_under_the_occluder_are_invisible_and_the_occluder_is_drawn_there():
    hidden_changed = hidden_total = 0
    visible_same = visible_total = 0
    for spec in plan(SMALL)[:24]:
        crop = render_crop(SMALL, spec)
        bare = render_crop(SMALL, spec, draw_occluders=False)
        kp = crop.keypoints
        assert np.array_equal(kp, bare.keypoints)
        mask = crop.occluder_mask
        for x, y, v in kp:
            inside = 0 <= x < SMALL.width and 0 <= y < SMALL.height
            covered = inside and bool(mask[int(y * SUPERSAMPLE), int(x * SUPERSAMPLE)])
            assert v == (1.0 if inside and not covered else 0.0)
            if not inside:
                continue
            diff = np.abs(
                crop.image[int(y), int(x)].astype(int) - bare.image[int(y), int(x)].astype(int)
            ).max()
            if covered:
                hidden_total += 1
                hidden_changed += diff > 0
            else:
                visible_total += 1
                visible_same += diff == 0
        if spec.occluded:
            assert (kp[:, 2] == 0).sum() >= 3 and mask.any()
        # the occluder mask is what was painted: pixels away from the mask are untouched
        changed = np.abs(crop.image.astype(int) - bare.image.astype(int)).max(axis=2) > 0
        near = mask.reshape(SMALL.height, SUPERSAMPLE, SMALL.width, SUPERSAMPLE).any(axis=(1, 3))
        padded = np.pad(near, 3)  # camera blur spreads an edge by up to 3 pixels
        near = np.zeros_like(near)
        for dy in range(7):
            for dx in range(7):
                near |= padded[dy : dy + SMALL.height, dx : dx + SMALL.width]
        assert not (changed & ~near).any()
    assert hidden_total > 10 and hidden_changed / hidden_total > 0.9
    assert visible_same / visible_total > 0.9


def test_face_boxes_lie_inside_the_crop(raw: Path):
    _, truth = _tables(raw)
    with_face = 0
    for row in truth:
        box = row["face_box"]
        if box is None:
            assert not row["face_visible"]
            continue
        with_face += 1
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= SMALL.width and 0 <= y1 < y2 <= SMALL.height
    assert with_face > 0 and any(r["face_visible"] for r in truth)


def test_face_is_hidden_in_back_views_and_when_covered():
    views = set()
    for spec in plan(SMALL):
        crop = render_crop(SMALL, spec)
        views.add(crop.view)
        if crop.view == "back":
            assert crop.face_box is None and not crop.face_visible
        elif crop.face_box is not None and crop.face_visible:
            x1, y1, x2, y2 = (int(v * SUPERSAMPLE) for v in crop.face_box)
            assert crop.occluder_mask[y1:y2, x1:x2].mean() < 0.5
    assert len(views) >= 3


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path):
    cfg = SynthConfig(identities=3, cameras=2, images_per_identity=(4, 5), seed=11)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, cfg)
    generate(b, SynthConfig(**{**cfg.__dict__, "workers": 2}))
    generate(c, SynthConfig(**{**cfg.__dict__, "seed": 12}))
    tree_a, tree_b, tree_c = (manifests.sha256_tree(p) for p in (a, b, c))
    assert tree_a == tree_b  # worker count does not matter
    assert "keypoints.parquet" in tree_a and len(tree_a) > 8
    common = set(tree_a) & set(tree_c)
    assert tree_a["truth.parquet"] != tree_c["truth.parquet"]
    assert all(tree_a[f] != tree_c[f] for f in common if f.endswith(".jpg"))


def test_rerun_into_the_same_folder_is_allowed_but_foreign_crops_are_refused(tmp_path: Path):
    cfg = SynthConfig(identities=2, cameras=2, images_per_identity=(2, 3), seed=1)
    generate(tmp_path, cfg)
    before = manifests.sha256_tree(tmp_path)
    generate(tmp_path, cfg)
    assert manifests.sha256_tree(tmp_path) == before
    (tmp_path / "0099_c1s1_000001_00.jpg").write_bytes(b"stale")
    with pytest.raises(SynthOutputError, match="0099_c1s1_000001_00.jpg"):
        generate(tmp_path, cfg)


@pytest.mark.parametrize(
    "changes",
    [{"identities": 0}, {"cameras": 10}, {"images_per_identity": (5, 2)}, {"occluded_fraction": 1.5},
     {"height": 0, "width": 0}, {"workers": 0}, {"seed": -1}],
)  # fmt: skip
def test_bad_config_is_a_typed_error(changes):
    with pytest.raises(SynthConfigError):
        plan(SynthConfig(**{**SMALL.__dict__, **changes}))


def test_edge_fractions_and_single_camera():
    specs = plan(SynthConfig(identities=4, cameras=1, images_per_identity=(1, 3), occluded_fraction=0.0))
    assert specs and not any(s.occluded for s in specs) and {s.camid for s in specs} == {1}
    specs = plan(SynthConfig(identities=4, cameras=2, images_per_identity=(3, 3), occluded_fraction=1.0))
    assert all(s.occluded for s in specs)


def test_cli_json_summary(tmp_path: Path):
    out = tmp_path / "raw"
    result = CliRunner().invoke(
        synth_command,
        [str(out), "--identities", "3", "--cameras", "2", "--images-per-identity", "4-5", "--size", "96x48",
         "--seed", "5", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["identities"] == 3 and summary["images"] == len(list(out.glob("*.jpg")))
    assert summary["occluded"] + summary["holistic"] == summary["images"]
    with Image.open(next(out.glob("*.jpg"))) as im:
        assert im.size == (48, 96)


def test_cli_runs_under_the_opreid_group(tmp_path: Path):
    from opreid.cli import cli

    result = CliRunner().invoke(
        cli, ["synth", str(tmp_path / "r"), "--identities", "2", "--images-per-identity", "2-2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 4
    result = CliRunner().invoke(
        cli, ["synth", str(tmp_path / "t"), "--identities", "2", "--images-per-identity", "2-2"]
    )
    assert result.stdout.startswith("wrote 4 crops") and result.stderr == ""  # the summary is on stdout


@pytest.mark.parametrize(
    "args",
    [["--size", "0x0"], ["--size", "big"], ["--images-per-identity", "5-2"], ["--identities", "0"],
     ["--occluded-fraction", "2"], ["--cameras", "12"]],
)  # fmt: skip
def test_cli_bad_options_are_one_line_errors(tmp_path: Path, args, run_opreid):
    result = run_opreid("synth", tmp_path / "r", *args)
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("opreid synth: error: "), result.stderr
    assert not list(tmp_path.glob("r/*.jpg"))


@pytest.mark.parametrize("size", [(32, 16), (128, 32), (64, 64), (256, 128)])
def test_other_crop_sizes_keep_keypoints_in_the_crop_and_agree_with_the_rule(size):
    height, width = size
    cfg = SynthConfig(
        identities=5,
        cameras=2,
        images_per_identity=(4, 6),
        occluded_fraction=0.5,
        height=height,
        width=width,
        seed=2,
    )
    for spec in plan(cfg):
        crop = render_crop(cfg, spec)
        assert crop.image.shape == (height, width, 3)
        kp = crop.keypoints
        assert ((kp[:, 0] >= 0) & (kp[:, 0] < width) & (kp[:, 1] >= 0) & (kp[:, 1] < height)).all()
        assert paper_rule_occluded(kp.reshape(-1), width, height) == spec.occluded
