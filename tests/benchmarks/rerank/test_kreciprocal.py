"""k-reciprocal re-ranking in blocks against a straightforward full-matrix implementation written here."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics.market import evaluate_distances
from benchmarks.rerank.kreciprocal import (
    RerankError,
    RerankSettings,
    rerank_distances,
    rerank_matrix,
    top_k_stable,
)


def reference_rerank(query, gallery, metric="cosine", k1=20, k2=6, lam=0.3, *, by_differences=False):
    """Zhong et al. as the paper states it, on full (Q+G)^2 matrices: every set built explicitly.
    `by_differences` sums (x_i - x_j)^2 instead of |x_i|^2 + |x_j|^2 - 2 x_i.x_j, which cancels to
    rounding noise for duplicate and near-duplicate images."""
    x = np.concatenate([query, gallery]).astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sq = (x**2).sum(axis=1)
    if by_differences:
        dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    else:
        dist = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    dist = dist / np.maximum(dist.max(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    n, nq = len(x), len(query)
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        return [int(j) for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        base = reciprocal(i, k1)
        expanded = set(base)
        for c in base:
            theirs = reciprocal(c, round(k1 / 2))
            if len(set(theirs) & set(base)) > 2 / 3 * len(theirs):
                expanded |= set(theirs)
        idx = sorted(expanded)
        if idx:
            w = np.exp(-dist[i, idx])
            v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.empty((nq, n - nq))
    for i in range(nq):
        shared = np.minimum(v[i], v[nq:]).sum(axis=1)
        jaccard[i] = 1 - shared / (2 - shared)
    return (1 - lam) * jaccard + lam * dist[:nq, nq:]


def clustered(num_ids, per_id, dim, seed, spread=0.6):
    """Identities as cluster centres, images as noisy copies: neighbourhoods like a ReID embedding's."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    pids = np.repeat(np.arange(num_ids), per_id)
    feats = centres[pids] + spread * rng.normal(size=(len(pids), dim))
    order = rng.permutation(len(pids))
    return feats[order], pids[order]


@pytest.mark.parametrize(
    ("metric", "k1", "k2", "lam", "memory_mb"),
    [
        ("cosine", 20, 6, 0.3, 1),
        ("euclidean", 20, 6, 0.3, 1),
        ("cosine", 5, 1, 0.0, 1),
        ("euclidean", 3, 3, 1.0, 64),
        ("cosine", 7, 9, 0.5, 1),
    ],
)
@pytest.mark.slow
def test_matches_the_full_matrix_implementation(metric, k1, k2, lam, memory_mb):
    feats, _ = clustered(120, 6, 24, seed=k1 + k2)
    q, g = feats[:150], feats[150:]
    settings = RerankSettings(k1=k1, k2=k2, lambda_value=lam, memory_mb=memory_mb)
    ours = rerank_matrix(q, g, metric, settings)
    assert ours.dtype == np.float64 and ours.shape == (150, 570)
    np.testing.assert_allclose(ours, reference_rerank(q, g, metric, k1, k2, lam), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_many_blocks_give_what_one_block_gives():
    """1 MiB forces the first pass into blocks of ~70 rows and the Jaccard step into many pieces."""
    feats, _ = clustered(300, 6, 16, seed=5)
    q, g = feats[:300], feats[300:]
    small = rerank_distances(q, g, "cosine", RerankSettings(memory_mb=1))
    large = rerank_matrix(q, g, "cosine", RerankSettings(memory_mb=4096))
    pieces = np.concatenate([small.rows(a, min(a + 37, 300)) for a in range(0, 300, 37)])
    np.testing.assert_allclose(pieces, large, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pieces, reference_rerank(q, g), rtol=0, atol=1e-12)


def test_exact_ties_are_broken_by_index_as_a_stable_sort():
    """Small integer features: many exactly equal distances and duplicate images, every one exact."""
    rng = np.random.default_rng(3)
    feats = rng.integers(0, 3, size=(160, 3)).astype(np.float64)
    q, g = feats[:40], feats[40:]
    for k1, k2 in ((20, 6), (4, 2)):
        ours = rerank_matrix(q, g, "euclidean", RerankSettings(k1=k1, k2=k2, memory_mb=1))
        np.testing.assert_allclose(ours, reference_rerank(q, g, "euclidean", k1, k2), rtol=0, atol=1e-12)


def test_top_k_matches_a_stable_argsort():
    rng = np.random.default_rng(0)
    block = rng.integers(0, 4, size=(50, 30)).astype(np.float32)  # ties everywhere, at the k-th place too
    for k in (1, 5, 17, 30):
        np.testing.assert_array_equal(top_k_stable(block, k), np.argsort(block, axis=1, kind="stable")[:, :k])


def test_float32_features_stay_float32_and_rank_as_float64():
    feats, pids = clustered(80, 5, 32, seed=9, spread=0.9)
    q, g = feats[:80], feats[80:]
    qp, gp = pids[:80], pids[80:]
    cams_q, cams_g = np.zeros(80, int), np.ones(len(gp), int)
    d32 = rerank_matrix(q.astype(np.float32), g.astype(np.float32))
    d64 = rerank_matrix(q, g)
    assert d32.dtype == np.float32
    assert np.median(np.abs(d32 - d64)) < 1e-5
    m32 = evaluate_distances(d32, qp, gp, cams_q, cams_g)
    m64 = evaluate_distances(d64, qp, gp, cams_q, cams_g)
    assert abs(m32.mAP - m64.mAP) < 1e-3


def test_reranking_helps_on_clustered_features():
    feats, pids = clustered(100, 8, 32, seed=2, spread=1.1)
    q, g, qp, gp = feats[:100], feats[100:], pids[:100], pids[100:]
    cams_q, cams_g = np.zeros(100, int), np.ones(len(gp), int)
    plain = evaluate_distances(1 - (q / np.linalg.norm(q, axis=1, keepdims=True)) @
                               (g / np.linalg.norm(g, axis=1, keepdims=True)).T, qp, gp, cams_q, cams_g)  # fmt: skip
    reranked = evaluate_distances(rerank_matrix(q, g), qp, gp, cams_q, cams_g)
    assert reranked.mAP > plain.mAP + 0.02


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (RerankSettings(k1=0), "k1 must be at least 1"),
        (RerankSettings(k2=0), "k2 must be at least 1"),
        (RerankSettings(lambda_value=1.5), "lambda must lie in [0, 1]"),
    ],
)
def test_bad_settings_are_user_errors(settings, message):
    with pytest.raises(RerankError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        rerank_matrix(np.ones((2, 3)), np.ones((3, 3)), settings=settings)
    assert info.value.exit_code == 1


def test_a_budget_below_one_row_is_refused_before_any_work():
    q, g = np.random.default_rng(0).normal(size=(10, 4)), np.random.default_rng(1).normal(size=(60_000, 4))
    with pytest.raises(RerankError, match="raise --rerank-memory-mb"):
        rerank_distances(q, g, settings=RerankSettings(memory_mb=1))


# ---- through the CLI: opreid score --rerank, opreid extract --rerank -------------------------------
def _features_for(release, dim=16, noise=0.9, seed=0):
    """Features of the release's query and gallery images drawn around per-identity centres."""
    from benchmarks.ground_truth import load_ground_truth

    gt = load_ground_truth(release)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(int(max(gt.q_pids.max(), gt.g_pids.max())) + 1, dim))
    q = (centres[gt.q_pids] + noise * rng.normal(size=(gt.num_query, dim))).astype(np.float32)
    g = (centres[gt.g_pids] + noise * rng.normal(size=(gt.num_gallery, dim))).astype(np.float32)
    return gt, q, g


@pytest.mark.slow
def test_score_rerank_on_features(built_release, tmp_path, run_opreid, expect_error):
    import json

    gt, q, g = _features_for(built_release)
    np.savez(tmp_path / "f.npz", query=q, gallery=g)
    args = ["score", tmp_path / "f.npz", "--data", built_release, "--json"]
    result = run_opreid(*args, "--rerank", "--rerank-k1", 8, "--rerank-k2", 3, "--rerank-lambda", 0.2)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rerank"] == {"method": "k-reciprocal", "k1": 8, "k2": 3, "lambda": 0.2}
    assert report["distance_backend"].startswith("k-reciprocal re-ranking (k1=8, k2=3, lambda=0.2")
    expected = evaluate_distances(
        rerank_matrix(q, g, "cosine", RerankSettings(k1=8, k2=3, lambda_value=0.2)),
        gt.q_pids, gt.g_pids, gt.q_camids, gt.g_camids,
    )  # fmt: skip
    assert report["mAP"] == pytest.approx(expected.mAP, abs=1e-12)
    plain = json.loads(run_opreid(*args).stdout)
    assert "rerank" not in plain and plain["mAP"] != report["mAP"]
    table = run_opreid("score", tmp_path / "f.npz", "--data", built_release, "--rerank")
    assert "Re-ranked   k-reciprocal (k1=20, k2=6, lambda=0.3)" in table.stdout

    np.save(tmp_path / "d.npy", np.zeros((gt.num_query, gt.num_gallery), np.float32))
    result = run_opreid("score", tmp_path / "d.npy", "--data", built_release, "--rerank")
    expect_error(result, "opreid score", 1, "--rerank needs a feature submission")
    result = run_opreid(
        "score", tmp_path / "f.npz", "--data", built_release, "--rerank", "--rerank-memory-mb", 0
    )
    expect_error(result, "opreid score", 1, "--rerank-memory-mb")


@pytest.mark.slow
def test_extract_rerank_writes_the_reranked_matrix(built_release, tmp_path, run_opreid, expect_error):
    import json

    import torch

    from reid_model.config import load_config
    from reid_model.engine.checkpoint import save_checkpoint
    from reid_model.modeling.model import ReidModel

    torch.manual_seed(0)
    cfg = load_config("tiny", ["input.height=64", "input.width=32", "test.batch_size=32"])
    ckpt = save_checkpoint(tmp_path / "untrained.pt", {
        "config": cfg.to_dict(), "num_classes": 8, "model": ReidModel(cfg, 8).eval().state_dict(),
    })  # fmt: skip
    common = ["extract", "--checkpoint", ckpt, "--data", built_release, "--num-workers", 0, "--no-progress"]
    out, feats = tmp_path / "rr.npy", tmp_path / "f.npz"
    result = run_opreid(*common, "-o", out, "--features", feats, "--rerank", "--rerank-k1", 6,
                        "--rerank-memory-mb", 2, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rerank"] == {"method": "k-reciprocal", "k1": 6, "k2": 6, "lambda": 0.3}
    with np.load(feats) as z:
        expected = rerank_matrix(z["query"], z["gallery"], summary["metric"], RerankSettings(k1=6))
    got = np.load(out, allow_pickle=False)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    expect_error(run_opreid(*common, "--features", feats, "--rerank"), "opreid extract", 1,
                 "--rerank re-ranks the distance matrix: give -o")  # fmt: skip


# ---- the torch code (--rerank-device), run on the CPU ------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "k1", "k2", "lam", "memory_mb"),
    [("cosine", 20, 6, 0.3, 1), ("euclidean", 3, 3, 1.0, 64), ("cosine", 7, 9, 0.5, 64)],
)
@pytest.mark.slow
def test_the_torch_code_matches_the_full_matrix_implementation(
    metric, k1, k2, lam, memory_mb, one_torch_thread
):
    feats, _ = clustered(120, 6, 24, seed=k1 + k2)
    q, g = feats[:150], feats[150:]
    settings = RerankSettings(k1=k1, k2=k2, lambda_value=lam, memory_mb=memory_mb, device="torch-cpu")
    ours = rerank_matrix(q, g, metric, settings)
    assert ours.dtype == np.float64 and ours.shape == (150, 570)
    np.testing.assert_allclose(ours, reference_rerank(q, g, metric, k1, k2, lam), rtol=0, atol=1e-12)


def test_the_torch_code_breaks_exact_ties_as_numpy_does(one_torch_thread):
    rng = np.random.default_rng(3)
    feats = rng.integers(0, 3, size=(160, 3)).astype(np.float64)
    q, g = feats[:40], feats[40:]
    ours = rerank_matrix(q, g, "euclidean", RerankSettings(k1=4, k2=2, memory_mb=1, device="torch-cpu"))
    np.testing.assert_allclose(ours, reference_rerank(q, g, "euclidean", 4, 2), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_float32_features_give_the_same_result_on_numpy_and_torch(one_torch_thread):
    feats, _ = clustered(80, 5, 64, seed=4, spread=0.9)
    q, g = feats[:80].astype(np.float32), feats[80:].astype(np.float32)
    on_numpy = rerank_matrix(q, g, "cosine", RerankSettings(memory_mb=2))
    on_torch = rerank_matrix(q, g, "cosine", RerankSettings(memory_mb=2, device="torch-cpu"))
    assert on_numpy.dtype == on_torch.dtype == np.float32
    np.testing.assert_allclose(on_torch, on_numpy, rtol=0, atol=2e-6)
    np.testing.assert_allclose(on_numpy, reference_rerank(q, g), rtol=0, atol=2e-6)


@pytest.mark.parametrize("device", ["cpu", "torch-cpu"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.slow
def test_duplicate_and_near_duplicate_images(device, metric, one_torch_thread):
    """100 copies of one image (more than a row keeps: those rows are redone whole) and 30 copies of
    another moved by 1e-7: float32 features, each near-tie decided in float64 from the differences."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    x[100:200] = x[5]
    x[300:330] = x[250] + 1e-7 * rng.normal(size=(30, 16)).astype(np.float32)
    q, g = x[:120], x[120:]
    ours = rerank_matrix(q, g, metric, RerankSettings(memory_mb=1, device=device))
    expected = reference_rerank(q, g, metric, by_differences=True)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=5e-7)


def test_devices_that_cannot_run_are_user_errors():
    q, g = np.ones((2, 3)), np.ones((3, 3))
    with pytest.raises(RerankError, match="device must be") as info:
        rerank_matrix(q, g, settings=RerankSettings(device="gpu"))
    assert info.value.exit_code == 1
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RerankError, match="no CUDA device is available"):
            rerank_matrix(q, g, settings=RerankSettings(device="cuda"))


def test_score_refuses_an_unknown_device_before_reading_anything(tmp_path, run_opreid, expect_error):
    result = run_opreid("score", tmp_path / "f.npz", "--data", tmp_path, "--rerank", "--rerank-device", "tpu")
    expect_error(result, "opreid score", 1, "--rerank-device", "cuda")


def test_a_global_reduced_precision_setting_does_not_reach_the_products(one_torch_thread):
    import torch

    feats, _ = clustered(60, 5, 32, seed=6)
    q, g = feats[:60].astype(np.float32), feats[60:].astype(np.float32)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        on_torch = rerank_matrix(q, g, "cosine", RerankSettings(device="torch-cpu"))
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    np.testing.assert_allclose(on_torch, rerank_matrix(q, g, "cosine"), rtol=0, atol=2e-6)
