"""`opreid score`: JSON contract, exit codes (2 invalid submission, 1 bad dataset or usage), one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from support.submissions import bad_submissions, opreid_like, write_dataset

from benchmarks.errors import DatasetError
from benchmarks.ground_truth import load_ground_truth
from benchmarks.metrics.reference import reference_distances
from benchmarks.scoring import SCORER_VERSION, score_submission
from manifests import GROUND_TRUTH, DatasetLayout, read_manifest, sha256_file, write_manifest
from opreid.cli import cli

REQUIRED_KEYS = {
    "mAP", "mINP", "rank1", "rank5", "rank10", "num_queries", "num_valid_queries", "truncated_at", "breakdown",
    "protocol", "scorer_version", "submission_sha256", "manifests_sha256",
}  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(5)
    q_pids, q_cams, g_pids, g_cams, g_occ = opreid_like(rng, num_query=12, distractors=30)
    q_pids[-1] = 999  # a query without any match in the gallery
    root = write_dataset(tmp_path_factory.mktemp("ds") / "OUT", q_pids, q_cams, g_pids, g_cams, g_occ=g_occ)
    return root, (q_pids, g_pids, q_cams, g_cams, g_occ)


def _run(args):
    result = CliRunner().invoke(cli, ["score", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_json_report_matches_reference(dataset, tmp_path):
    root, (q_pids, g_pids, q_cams, g_cams, g_occ) = dataset
    d = np.random.default_rng(0).integers(0, 6, (len(q_pids), len(g_pids))).astype(np.float16)
    np.save(tmp_path / "d.npy", d)
    result = _run([tmp_path / "d.npy", "--data", root, "--json", "--ranks", "1,5,10"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= REQUIRED_KEYS
    ref = reference_distances(d, q_pids, g_pids, q_cams, g_cams)
    assert report["mAP"] == pytest.approx(ref["mAP"], abs=1e-9)
    assert report["mINP"] == pytest.approx(ref["mINP"], abs=1e-9)
    assert report["rank5"] == pytest.approx(ref["cmc"][5], abs=1e-12)
    assert report["num_queries"] == 12 and report["num_valid_queries"] == 11
    assert report["invalid_query_ids"] == ["q00011x"]
    assert report["truncated_at"] is None
    assert report["scorer_version"] == SCORER_VERSION
    assert report["submission_sha256"] == sha256_file(tmp_path / "d.npy")
    assert report["manifests_sha256"]["ground_truth"] == sha256_file(DatasetLayout(root).ground_truth)
    occ = reference_distances(d, q_pids, g_pids, q_cams, g_cams, target_mask=g_occ)
    hol = reference_distances(d, q_pids, g_pids, q_cams, g_cams, target_mask=~g_occ)
    by_target = report["breakdown"]["by_target"]
    assert by_target["occluded->occluded"]["mAP"] == pytest.approx(occ["mAP"], abs=1e-9)
    assert by_target["occluded->holistic"]["rank1"] == pytest.approx(hol["cmc"][1], abs=1e-12)
    assert "by_query" not in report["breakdown"]  # all queries are occluded


@pytest.mark.slow
def test_similarity_pessimistic_ranks_table_csv_and_plot(dataset, tmp_path):
    root, (q_pids, g_pids, q_cams, g_cams, _) = dataset
    s = np.random.default_rng(1).integers(0, 4, (len(q_pids), len(g_pids))).astype(np.float32)
    np.save(tmp_path / "s.npy", s)
    args = [tmp_path / "s.npy", "--data", root, "--similarity", "--ties", "pessimistic", "--ranks", "1,3"]
    result = _run([*args, "--json"])
    report = json.loads(result.stdout)
    assert {"rank1", "rank3"} <= set(report) and "rank5" not in report
    worst = reference_distances(
        s, q_pids, g_pids, q_cams, g_cams, ranks=(1, 3), ties="pessimistic", similarity=True
    )
    assert report["pessimistic"]["mAP"] == pytest.approx(worst["mAP"], abs=1e-9)
    assert report["pessimistic"]["mAP"] <= report["mAP"]
    csv_path, png_path = tmp_path / "pq.csv", tmp_path / "cmc.png"
    result = _run([*args, "--per-query", csv_path, "--plot", png_path])
    assert result.exit_code == 0 and "worst-case ties" in result.stdout and "R-3" in result.stdout
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("query_index,image_id") and len(lines) == 1 + len(q_pids)
    assert "pid" not in lines[0].split(",")  # per-query files carry public ids only
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ranked_submission_is_labelled_truncated(dataset, tmp_path):
    root, (q_pids, *_rest) = dataset
    ranked = np.stack([np.random.default_rng(i).permutation(54)[:7] for i in range(len(q_pids))])
    np.save(tmp_path / "r.npy", ranked)
    report = json.loads(_run([tmp_path / "r.npy", "--data", root, "--json"]).stdout)
    assert report["truncated_at"] == 7 and "truncated" in report["protocol"]


def test_features_submission(dataset, tmp_path):
    root, (q_pids, g_pids, q_cams, g_cams, _) = dataset
    rng = np.random.default_rng(2)
    q, g = rng.standard_normal((len(q_pids), 6)), rng.standard_normal((len(g_pids), 6))
    np.savez_compressed(tmp_path / "f.npz", query=q, gallery=g)
    report = json.loads(_run([tmp_path / "f.npz", "--data", root, "--json", "--metric", "euclidean"]).stdout)
    dist = ((q[:, None] - g[None]) ** 2).sum(-1)
    assert report["mAP"] == pytest.approx(
        reference_distances(dist, q_pids, g_pids, q_cams, g_cams)["mAP"], abs=1e-9
    )
    assert report["format"] == "features"


def test_query_subsets(dataset, tmp_path):
    root, (q_pids, g_pids, q_cams, g_cams, _) = dataset
    d = np.random.default_rng(3).random((len(q_pids), len(g_pids)))
    np.save(tmp_path / "d.npy", d)
    public = np.arange(len(q_pids)) % 2 == 0
    report = score_submission(
        tmp_path / "d.npy", root, query_subsets={"public": public, "private": ~public}
    ).to_json()
    ref = reference_distances(d[public], q_pids[public], g_pids, q_cams[public], g_cams)
    assert report["subsets"]["public"]["mAP"] == pytest.approx(ref["mAP"], abs=1e-9)
    assert report["subsets"]["private"]["num_queries"] == int((~public).sum())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, dataset):
    _, (q_pids, g_pids, *_rest) = dataset
    return bad_submissions(tmp_path_factory.mktemp("bad"), len(q_pids), len(g_pids))


@pytest.mark.slow
def test_every_bad_submission_exits_2_with_one_line(dataset, corpus):
    root = dataset[0]
    for name, (path, phrase) in corpus.items():
        result = _run([path, "--data", root, "--json"])
        assert result.exit_code == 2, (name, result.output)
        assert result.stdout == "", name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("opreid score: error: invalid submission"), (
            name,
            lines,
        )
        assert phrase in lines[0], (name, lines[0])


def test_bad_dataset_directory_exits_1(dataset, tmp_path):
    root = dataset[0]
    np.save(tmp_path / "d.npy", np.zeros((12, 54), np.float32))
    for args in (
        ["--data", tmp_path / "nowhere"],
        ["--data", tmp_path],  # a folder without manifests
        ["--data", root, "--truth", tmp_path / "missing.parquet"],
    ):
        result = _run([tmp_path / "d.npy", *args])
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("opreid score: error: "), lines


def test_ground_truth_inconsistencies_are_dataset_errors(dataset, tmp_path):
    root = dataset[0]
    table = read_manifest(DatasetLayout(root).ground_truth, GROUND_TRUTH).to_pydict()
    cases = {
        "no ground-truth row": lambda t: {k: v[1:] for k, v in t.items()},
        "recorded with split": lambda t: {
            **t,
            "split": ["gallery" if s == "query" else s for s in t["split"]],
        },
        "camid of": lambda t: {**t, "camid": [c + 1 for c in t["camid"]]},
        "more than once": lambda t: {k: v + v[:1] for k, v in t.items()},
    }
    for phrase, change in cases.items():
        truth = tmp_path / f"{len(phrase)}.parquet"
        write_manifest(change(dict(table)), truth, GROUND_TRUTH)
        with pytest.raises(DatasetError, match=phrase):
            load_ground_truth(root, truth)
    gt = load_ground_truth(root)
    assert gt.num_query == 12 and gt.num_gallery == 54 and gt.has_occlusion_flags
    assert gt.query_ids[0] == "q00000x"


def test_bad_options_are_usage_errors(dataset, tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((12, 54), np.float32))
    result = _run([tmp_path / "d.npy", "--data", dataset[0], "--ranks", "0,x"])
    assert result.exit_code == 1 and result.stderr.startswith(
        "opreid score: error: Invalid value for '--ranks'"
    )


@pytest.mark.slow
def test_subprocess_no_traceback(dataset, tmp_path):
    root = dataset[0]
    bad = tmp_path / "bad.npy"
    bad.write_text("not numpy")
    cmd = [
        sys.executable,
        "-c",
        "from opreid.cli import main; main()",
        "score",
        str(bad),
        "--data",
        str(root),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "not a .npy or .npz file" in proc.stderr
