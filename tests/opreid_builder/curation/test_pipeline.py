"""`curate`: statuses, flags against synth truth, masking, caching, resume after kill -9, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image
from support.curation import CORRUPT_EXPECTED, FakePose, make_corrupt_corpus, make_synth
from support.paths import TESTS

import manifests
from opreid.cli import cli
from opreid_builder.curation import pose as pose_mod
from opreid_builder.curation.config import CurateConfig
from opreid_builder.curation.pipeline import curate
from opreid_builder.errors import CurationError, ModelFileError


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth") / "raw")


@pytest.fixture(scope="module")
def curated(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    result = curate(synth, out, CurateConfig(keypoints=str(synth / "keypoints.parquet")), progress=False)
    return out, result


def test_flags_agree_with_synth_truth(synth, curated):
    out, result = curated
    images = manifests.read_manifest(out / "private" / "images.parquet", manifests.IMAGES).to_pandas()
    truth = pq.read_table(synth / "truth.parquet").to_pandas()
    merged = images.merge(truth, left_on="source_path", right_on="file", validate="one_to_one")
    assert len(merged) == len(truth) == len(images)
    assert (merged["status"] == "ok").all()
    agree = (merged["occluded_x"] == merged["occluded_y"]).mean()
    assert agree >= 0.98, agree
    assert (merged["occlusion_source"] == "keypoints-file").all()
    parts_agree = (merged["missing_parts"].map(list) == merged["occluded_parts"].map(list)).mean()
    assert parts_agree >= 0.98
    assert result.counts["occluded"] == int(merged["occluded_x"].sum())


def test_images_table_columns_and_ids(synth, curated):
    out, result = curated
    rows = result.images.to_pylist()
    for row in rows[:20]:
        data = (synth / row["source_path"]).read_bytes()
        assert row["sha256"] == manifests.sha256_bytes(data) and row["image_id"] == row["sha256"][:16]
        assert len(row["keypoints"]) == 51 and row["n_persons"] == 1 and row["person_index"] == 0
        assert row["masked_path"] == f"masked/{row['image_id']}.jpg" and (out / row["masked_path"]).is_file()
        assert row["mask_method"] in ("fill", "none")
        assert (row["mask_method"] == "fill") == bool(row["face_boxes"])
    cur = result.curation
    assert cur["occlusion"]["rule"] == "coco18" and cur["occlusion"]["min_run"] == 3
    assert json.loads((out / "private" / "curation.json").read_text())["counts"] == result.counts


def test_faces_are_masked_where_a_face_is_drawn(synth, curated):
    out, result = curated
    truth = {r["file"]: r for r in pq.read_table(synth / "truth.parquet").to_pylist()}
    checked = 0
    for row in result.images.to_pylist():
        t = truth[row["source_path"]]
        if not t["face_visible"] or not row["face_boxes"]:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in t["face_box"])
        masked = np.asarray(Image.open(out / row["masked_path"]))
        centre = masked[(y1 + y2) // 2, (x1 + x2) // 2]
        assert centre.max() <= 12, row["source_path"]  # solid black fill (JPEG noise aside)
        checked += 1
    assert checked > 10
    # a visible face in the synth truth is (nearly) always covered by some box
    missed = [
        r
        for r in result.images.to_pylist()
        if truth[r["source_path"]]["face_visible"] and not r["face_boxes"]
    ]
    assert len(missed) <= 0.02 * len(truth)


def test_corrupt_corpus_statuses(tmp_path):
    raw = make_corrupt_corpus(tmp_path / "raw")
    out = tmp_path / "out"
    result = curate(
        raw, out, CurateConfig(keypoints=str(raw / "keypoints.parquet"), workers=0), progress=False
    )
    rows = {r["source_path"]: r for r in result.images.to_pylist()}
    assert {k: v["status"] for k, v in rows.items()} == {k: s for k, (s, _) in CORRUPT_EXPECTED.items()}
    assert result.counts["junk"] == 1 and result.counts["refused"] == 1
    dup = rows["0004_c3s1_000010_00.jpg"]
    assert (
        dup["duplicate_of"] == "0004_c2s1_000009_00.jpg"
        and dup["image_id"] == rows[dup["duplicate_of"]]["image_id"]
    )
    ids = [r["image_id"] for r in rows.values() if r["status"] != "duplicate"]
    assert len(ids) == len(set(ids))  # unreadable rows get path-based ids: no collisions
    assert rows["0001_c1s1_000001_00.jpg"]["status_detail"] == "zero-byte file"
    assert rows["0004_c1s1_000008_00.jpg"]["status_detail"] == "is a directory"
    assert "too small" in rows["0002_c1s1_000004_00.jpg"]["status_detail"]
    for name in ("0001_c2s1_000003_00.jpg", "0003_c1s1_000006_00.jpg", "0003_c2s1_000007_00.png"):
        assert rows[name]["status_detail"], name  # says what was converted
    exif_row = rows["0005_c1s1_000011_00.jpg"]
    with Image.open(raw / exif_row["source_path"]) as src:
        assert src.getexif()
    with Image.open(out / exif_row["masked_path"]) as img:
        assert not img.getexif() and "exif" not in img.info
    refused = json.loads((out / "private" / "curation.json").read_text())["refused"]
    assert refused == [{"path": "0006_c1s1_000013_00.jpg", "reason": "symlink leaves RAW"}]


def test_no_person_kept_occluded_by_default_or_excluded(tmp_path, synth):
    """Crops where pose finds nobody are kept and flagged occluded by default, marked `no-person`, and
    counted in curation.json; `--no-person exclude` leaves them out of the benchmark."""
    raw = tmp_path / "raw"
    raw.mkdir()
    names = sorted(p.name for p in synth.glob("*.jpg"))[:6]
    for n in names:
        (raw / n).write_bytes((synth / n).read_bytes())
    kp = pq.read_table(synth / "keypoints.parquet").to_pylist()
    keep = {r["file"]: r["keypoints"] for r in kp if r["file"] in names[:4]}
    from support.curation import write_keypoints

    kfile = write_keypoints(tmp_path, keep)
    r1 = curate(raw, tmp_path / "o1", CurateConfig(keypoints=str(kfile), workers=0), progress=False)
    st = {r["source_path"]: r for r in r1.images.to_pylist()}
    assert all(st[n]["status"] == "ok" and st[n]["occluded"] is True for n in names[4:])
    assert all(st[n]["n_persons"] == 0 and st[n]["masked_path"] for n in names[4:])
    assert all(
        st[n]["occlusion_source"] == "no-person" and st[n]["occlusion_score"] is None for n in names[4:]
    )
    assert all(st[n]["occlusion_source"] == "keypoints-file" for n in names[:4])
    assert r1.curation["no_person"] == {"policy": "occluded", "crops": 2}
    r2 = curate(
        raw,
        tmp_path / "o2",
        CurateConfig(keypoints=str(kfile), no_person="exclude", workers=0),
        progress=False,
    )
    st = {r["source_path"]: r for r in r2.images.to_pylist()}
    assert [st[n]["status"] for n in names[4:]] == ["no_person", "no_person"]
    assert st[names[4]]["masked_path"] is None and st[names[4]]["occluded"] is None
    assert r2.curation["no_person"] == {"policy": "exclude", "crops": 2}


def test_corrections_override_and_are_recorded(tmp_path, synth, curated):
    _, base = curated
    rows = base.images.to_pylist()
    target = rows[0]
    (tmp_path / "fix.csv").write_text(
        "image_id,occluded,note\n"
        f"{target['image_id']},{str(not target['occluded']).lower()},flip\n"
        f"{rows[1]['image_id']},,left blank\n"
        "ffffffffffffffff,true,unknown id\n"
    )
    out = tmp_path / "out"
    cfg = CurateConfig(keypoints=str(synth / "keypoints.parquet"), corrections=str(tmp_path / "fix.csv"))
    result = curate(synth, out, cfg, progress=False)
    got = {r["image_id"]: r for r in result.images.to_pylist()}
    assert got[target["image_id"]]["occluded"] is (not target["occluded"])
    assert got[target["image_id"]]["occlusion_source"] == "review"
    assert got[rows[1]["image_id"]]["occlusion_source"] == "keypoints-file"
    assert result.curation["corrections"]["applied"] == 1 and result.curation["corrections"]["unmatched"] == 1
    (tmp_path / "bad.csv").write_text("image_id,occluded\nabc,maybe\n")
    from opreid_builder.errors import CorrectionsError

    with pytest.raises(CorrectionsError, match="row 1"):
        curate(
            synth,
            out,
            CurateConfig(keypoints=str(synth / "keypoints.parquet"), corrections=str(tmp_path / "bad.csv")),
        )


def _snapshot(out: Path) -> dict:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "masked").iterdir()}
    files["images"] = pq.read_table(out / "private" / "images.parquet").to_pylist()
    files["curation"] = (out / "private" / "curation.json").read_text()
    return files


def test_rerun_skips_pose_and_rule_change_reruns_rule_only(tmp_path, synth, monkeypatch):
    monkeypatch.setattr(pose_mod, "PoseEstimator", FakePose)
    FakePose.calls, FakePose.kill_after = 0, None
    out = tmp_path / "out"
    cfg = CurateConfig(pose_model=str(synth / "keypoints.parquet"), workers=0)
    first = curate(synth, out, cfg, progress=False)
    n = FakePose.calls
    assert n == first.counts["status_ok"] > 0
    snap = _snapshot(out)
    curate(synth, out, cfg, progress=False)
    assert FakePose.calls == n  # everything cached
    assert _snapshot(out) == snap
    third = curate(
        synth,
        out,
        CurateConfig(pose_model=str(synth / "keypoints.parquet"), kpt_conf=0.3, min_run=1),
        progress=False,
    )
    assert FakePose.calls == n  # a rule change does not rerun pose
    assert third.curation["occlusion"]["min_run"] == 1
    assert third.counts["occluded"] >= first.counts["occluded"]


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from support.curation import FakePose
import opreid_builder.curation.pipeline as c
import opreid_builder.curation.stages as st
import opreid_builder.curation.pose as p
p.PoseEstimator = FakePose
stage, after = sys.argv[1], int(sys.argv[2])
if stage == "pose":
    FakePose.kill_after = after
else:
    import os, signal
    real, count = st.encode_jpeg, [0]
    def encode(*a, **k):
        count[0] += 1
        if count[0] > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    st.encode_jpeg = encode
c.curate(Path({raw!r}), Path({out!r}), c.CurateConfig(pose_model={kp!r}, workers=0, shard_size=8), progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage,after", [("pose", 70), ("faces", 40)])
def test_kill_9_then_rerun_gives_identical_outputs(tmp_path, synth, monkeypatch, stage, after):
    monkeypatch.setattr(pose_mod, "PoseEstimator", FakePose)
    FakePose.calls, FakePose.kill_after = 0, None
    cfg = CurateConfig(pose_model=str(synth / "keypoints.parquet"), workers=0, shard_size=8)
    clean = tmp_path / "clean"
    curate(synth, clean, cfg, progress=False)
    killed = tmp_path / "killed"
    script = KILL_SCRIPT.format(
        tests=str(TESTS), raw=str(synth), out=str(killed), kp=str(synth / "keypoints.parquet")
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, stage, str(after)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed / "private" / "images.parquet").exists()
    FakePose.calls = 0
    curate(synth, killed, cfg, progress=False)
    if stage == "pose":  # work flushed before the kill is not redone
        assert FakePose.calls <= clean_ok(clean) - 24
    assert _snapshot(killed) == _snapshot(clean)


def clean_ok(out: Path) -> int:
    return sum(
        1 for r in pq.read_table(out / "private" / "images.parquet").to_pylist() if r["status"] == "ok"
    )


def test_out_inside_raw_is_refused(tmp_path, synth):
    with pytest.raises(CurationError, match="inside RAW"):
        curate(synth, synth / "out", CurateConfig(keypoints=str(synth / "keypoints.parquet")), progress=False)


def test_missing_pose_model_is_one_clear_error(tmp_path, synth, monkeypatch):
    monkeypatch.delenv("OPREID_POSE_MODEL", raising=False)
    with pytest.raises(ModelFileError, match="--pose-model"):
        curate(synth, tmp_path / "out", CurateConfig(), progress=False)
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "curate",
            str(synth),
            "-o",
            str(tmp_path / "out"),
            "--pose-model",
            str(tmp_path / "yolo11n-pose.pt"),
        ],
    )
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("opreid curate: error: pose model not found")
    assert "yolo11n-pose.pt" in lines[0] and "--pose-model" in lines[0]
    assert not (tmp_path / "yolo11n-pose.pt").exists()  # nothing was downloaded


def test_cli_curate_json_and_summary(tmp_path, synth):
    runner = CliRunner()
    out = tmp_path / "out"
    args = [
        "curate",
        str(synth),
        "-o",
        str(out),
        "--keypoints",
        str(synth / "keypoints.parquet"),
        "--no-progress",
    ]
    res = runner.invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["occlusion"]["rule"] == "coco18" and body["counts"]["status_ok"] > 0
    res = runner.invoke(cli, [*args, "--rule", "count", "--min-run", "2"])
    assert res.exit_code == 0 and "occluded" in res.output
    res = runner.invoke(cli, [*args, "--pose-model", "x.pt"])
    assert res.exit_code == 1 and "not both" in res.output


def test_config_from_options_ignores_other_keys():
    from opreid_builder.cli.curate import config_from_options

    cfg = config_from_options(rule="body", face_models=["a.onnx"], seed=3, split_preset="paper")
    assert cfg.rule == "body" and cfg.face_models == ("a.onnx",)


def test_blur_warns(tmp_path, synth, caplog):
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in sorted(synth.glob("*.jpg"))[:3]:
        (raw / p.name).write_bytes(p.read_bytes())
    with caplog.at_level("WARNING"):
        curate(
            raw,
            tmp_path / "out",
            CurateConfig(keypoints=str(synth / "keypoints.parquet"), face_mask="blur"),
            progress=False,
        )
    assert any("reversed" in r.message for r in caplog.records)


def test_person_selection_prefers_the_box_covering_the_crop():
    from opreid_builder.curation.pose import crop_iou, select_person

    boxes = np.array([[0, 0, 64, 128], [30, 0, 64, 60], [-10, -10, 74, 138]], dtype=float)
    iou = crop_iou(boxes, 64, 128)
    assert iou[0] == pytest.approx(1.0) and iou[1] < 0.3 and iou[2] == pytest.approx(8192 / (84 * 148))
    assert select_person(boxes, np.array([0.3, 0.9, 0.9]), 64, 128) == 0
    same = np.array([[0, 0, 64, 128], [0, 0, 64, 128]], dtype=float)
    assert select_person(same, np.array([0.4, 0.8]), 64, 128) == 1  # tie on IoU: higher score
    assert select_person(np.zeros((0, 4)), np.zeros(0), 64, 128) is None


def test_out_beside_an_index_file_is_allowed_out_holding_listed_images_is_not(synth, tmp_path):
    """An index file lists its images, so only those paths matter, not the folder the file sits in."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in sorted(synth.glob("*.jpg"))[:12]:
        (raw / p.name).write_bytes(p.read_bytes())
    rows = [f"{p.name},{int(p.name[:4])},{int(p.name[6])}" for p in sorted(raw.glob("*.jpg"))]
    index = raw / "index.csv"
    index.write_text("path,pid,camid\n" + "\n".join(rows) + "\n")
    config = CurateConfig(layout="index", keypoints=str(synth / "keypoints.parquet"), workers=0)
    result = curate(index, raw / "out", config, progress=False)  # OUT beside the index file
    assert result.counts["status_ok"] == 12
    with pytest.raises(CurationError, match="holds images the index lists"):
        curate(index, raw, config, progress=False)
    index.unlink()  # a folder layout reads everything under RAW: OUT may not lie inside it
    with pytest.raises(CurationError, match="must not be inside RAW"):
        curate(
            raw,
            raw / "out2",
            CurateConfig(layout="market", keypoints=config.keypoints, workers=0),
            progress=False,
        )


def test_an_empty_raw_gives_an_empty_table(tmp_path, synth):
    (tmp_path / "raw").mkdir()
    result = curate(
        tmp_path / "raw",
        tmp_path / "out",
        CurateConfig(keypoints=str(synth / "keypoints.parquet")),
        progress=False,
    )
    assert result.images.num_rows == 0 and result.counts["images"] == 0
    assert (
        manifests.read_manifest(tmp_path / "out" / "private" / "images.parquet", manifests.IMAGES).num_rows
        == 0
    )
