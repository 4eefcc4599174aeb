"""The fast O(QxG) evaluator against the deliberately simple per-query reference, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics.market import (
    evaluate_distances,
    evaluate_features,
    evaluate_ranked,
    metrics_from_positive_ranks,
)
from benchmarks.metrics.positive_ranks import identity_pairs, rank_positives_in_rows
from benchmarks.metrics.reference import reference_distances, reference_ranked

RANKS = (1, 2, 5, 10)


def _labels(rng, nq, ng, npid, ncam):
    return (
        rng.integers(0, npid, nq),
        rng.integers(0, npid, ng),
        rng.integers(0, ncam, nq),
        rng.integers(0, ncam, ng),
    )


def _assert_same(fast, ref, nq):
    assert fast.num_valid_queries == ref["num_valid_queries"]
    assert list(fast.invalid_query_indices) == ref["invalid_query_indices"]
    assert fast.num_queries == nq
    if ref["num_valid_queries"] == 0:
        assert np.isnan(fast.mAP) and np.isnan(fast.mINP)
        return
    assert fast.mAP == pytest.approx(ref["mAP"], abs=1e-9)
    assert fast.mINP == pytest.approx(ref["mINP"], abs=1e-9)
    for k in ref["cmc"]:
        assert fast.cmc[k] == pytest.approx(ref["cmc"][k], abs=1e-12)
    np.testing.assert_allclose(fast.ap, ref["ap"], atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(fast.inp, ref["inp"], atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(fast.first_hit_rank, ref["first_hit_rank"])


def test_hand_computed_example():
    # Gallery: 0 same pid same cam (removed), 1 positive, 2 negative, 3 positive, 4 negative.
    d = np.array([[0.0, 0.3, 0.1, 0.5, 0.9]])
    m = evaluate_distances(d, [7], [7, 7, 1, 7, 2], [0], [0, 1, 1, 2, 0], ranks=(1, 2, 3))
    # kept order: g2 (neg), g1 (pos, rank 2), g3 (pos, rank 3), g4
    assert m.cmc == {1: 0.0, 2: 1.0, 3: 1.0}
    assert m.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m.mINP == pytest.approx(2 / 3)
    assert m.first_hit_rank.tolist() == [2]


def test_ties_stable_and_pessimistic_by_hand():
    d = np.array([[0.5, 0.5, 0.5, 0.2]])  # g0 negative, g1 positive, g2 negative tie, g3 negative
    args = ([3], [1, 3, 2, 4], [0], [1, 1, 1, 1])
    stable = evaluate_distances(d, *args, ranks=(1, 2, 3))
    worst = evaluate_distances(d, *args, ranks=(1, 2, 3), ties="pessimistic")
    assert stable.first_hit_rank.tolist() == [3]  # g3, g0 (earlier index), then g1
    assert worst.first_hit_rank.tolist() == [4]  # both tied negatives first
    assert stable.mAP == pytest.approx(1 / 3) and worst.mAP == pytest.approx(1 / 4)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("ties", ["stable", "pessimistic"])
def test_distances_match_reference_random(seed, ties):
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(1, 15)), int(rng.integers(1, 60))
    q_pids, g_pids, q_cams, g_cams = _labels(rng, nq, ng, int(rng.integers(1, 8)), int(rng.integers(1, 4)))
    dtype = [np.float16, np.float32, np.float64][seed % 3]
    levels = int(rng.integers(2, 30))  # few distinct values: many ties
    d = (rng.integers(0, levels, (nq, ng)) / levels).astype(dtype)
    similarity = bool(seed % 2)
    fast = evaluate_distances(
        d, q_pids, g_pids, q_cams, g_cams, ranks=RANKS, ties=ties, similarity=similarity
    )
    ref = reference_distances(
        d, q_pids, g_pids, q_cams, g_cams, ranks=RANKS, ties=ties, similarity=similarity
    )
    _assert_same(fast, ref, nq)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("direct_max", [0, 1, 3, 1000])
def test_both_counting_paths_match_reference_with_many_positives(seed, direct_max):
    rng = np.random.default_rng(100 + seed)
    nq, ng = 9, 120
    q_pids, g_pids, q_cams, g_cams = _labels(rng, nq, ng, 3, 6)  # ~40 same-pid entries per query
    d = rng.integers(0, 25, (nq, ng)).astype(np.float32)
    for ties in ("stable", "pessimistic"):
        pairs = identity_pairs(q_pids, g_pids, q_cams, g_cams)
        pr = rank_positives_in_rows(
            lambda a, b: d[a:b], ng, pairs, ties=(ties,), direct_max_positives=direct_max
        )
        fast = metrics_from_positive_ranks(pr[ties], RANKS)
        _assert_same(fast, reference_distances(d, q_pids, g_pids, q_cams, g_cams, ranks=RANKS, ties=ties), nq)


def test_queries_without_positive_and_same_camera_only():
    q_pids, q_cams = np.array([1, 2, 3]), np.array([0, 0, 0])
    g_pids, g_cams = np.array([1, 1, 2, 4, 5]), np.array([1, 0, 0, 0, 1])  # pid 2 only on the same camera
    d = np.random.default_rng(0).random((3, 5))
    fast = evaluate_distances(d, q_pids, g_pids, q_cams, g_cams)
    assert fast.invalid_query_indices.tolist() == [1, 2]
    assert fast.num_valid_queries == 1 and fast.num_queries == 3
    assert np.isnan(fast.ap[1]) and fast.first_hit_rank[2] == 0
    _assert_same(fast, reference_distances(d, q_pids, g_pids, q_cams, g_cams), 3)


def test_no_valid_query_gives_nan_not_crash():
    fast = evaluate_distances(np.zeros((2, 3)), [1, 2], [3, 4, 5], [0, 0], [1, 1, 1])
    assert fast.num_valid_queries == 0 and np.isnan(fast.mAP)
    assert fast.to_dict()["mAP"] is None


@pytest.mark.parametrize("seed", range(15))
def test_query_mask_and_target_mask(seed):
    rng = np.random.default_rng(200 + seed)
    nq, ng = 12, 50
    q_pids, g_pids, q_cams, g_cams = _labels(rng, nq, ng, 5, 3)
    g_occ = rng.random(ng) < 0.5
    d = rng.integers(0, 10, (nq, ng)).astype(np.float64)
    mask = rng.random(nq) < 0.5
    fast = evaluate_distances(d, q_pids, g_pids, q_cams, g_cams, ranks=RANKS, query_mask=mask)
    ref = reference_distances(d[mask], q_pids[mask], g_pids, q_cams[mask], g_cams, ranks=RANKS)
    assert fast.num_queries == int(mask.sum())
    assert fast.num_valid_queries == ref["num_valid_queries"]
    if ref["num_valid_queries"]:
        assert fast.mAP == pytest.approx(ref["mAP"], abs=1e-9)
        assert fast.mINP == pytest.approx(ref["mINP"], abs=1e-9)
        np.testing.assert_allclose(fast.ap[mask], ref["ap"], atol=1e-9, equal_nan=True)
    assert np.isnan(fast.ap[~mask]).all()
    # target type: only occluded gallery positives count, holistic same-pid entries removed
    pairs = identity_pairs(q_pids, g_pids, q_cams, g_cams)
    pr = rank_positives_in_rows(lambda a, b: d[a:b], ng, pairs)["stable"]
    occ = metrics_from_positive_ranks(pr, RANKS, positive_mask=g_occ[pr.gallery_index])
    _assert_same(
        occ, reference_distances(d, q_pids, g_pids, q_cams, g_cams, ranks=RANKS, target_mask=g_occ), nq
    )


@pytest.mark.parametrize("seed", range(25))
def test_ranked_lists_match_reference(seed):
    rng = np.random.default_rng(300 + seed)
    nq, ng = int(rng.integers(1, 12)), int(rng.integers(1, 50))
    q_pids, g_pids, q_cams, g_cams = _labels(rng, nq, ng, int(rng.integers(1, 6)), 3)
    k = int(rng.integers(1, ng + 1))
    ranked = np.stack([rng.permutation(ng)[:k] for _ in range(nq)]).astype(
        [np.int32, np.int64, np.uint16][seed % 3]
    )
    fast = evaluate_ranked(ranked, q_pids, g_pids, q_cams, g_cams, ranks=RANKS)
    assert fast.truncated_at == k
    _assert_same(fast, reference_ranked(ranked, q_pids, g_pids, q_cams, g_cams, ranks=RANKS), nq)


def test_full_ranked_list_equals_distance_matrix():
    rng = np.random.default_rng(7)
    q_pids, g_pids, q_cams, g_cams = _labels(rng, 10, 40, 4, 3)
    d = rng.integers(0, 8, (10, 40)).astype(np.float32)
    by_dist = evaluate_distances(d, q_pids, g_pids, q_cams, g_cams, ranks=RANKS)
    by_list = evaluate_ranked(
        np.argsort(d, axis=1, kind="stable"), q_pids, g_pids, q_cams, g_cams, ranks=RANKS
    )
    assert by_list.mAP == pytest.approx(by_dist.mAP, abs=1e-12)
    assert by_list.mINP == pytest.approx(by_dist.mINP, abs=1e-12)
    assert by_list.cmc == by_dist.cmc


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize(
    ("backend", "dtype"),
    # faiss computes float32 only; float64 features always use numpy
    [
        ("numpy", np.float16),
        ("numpy", np.float32),
        ("numpy", np.float64),
        ("faiss", np.float16),
        ("faiss", np.float32),
    ],
)
def test_features_match_reference(metric, backend, dtype):
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(11)
    q_pids, g_pids, q_cams, g_cams = _labels(rng, 20, 70, 8, 3)
    q = rng.standard_normal((20, 16)).astype(dtype)
    g = rng.standard_normal((70, 16)).astype(dtype)
    fast = evaluate_features(
        q, g, q_pids, g_pids, q_cams, g_cams, metric=metric, ranks=RANKS, backend=backend
    )
    q64, g64 = q.astype(np.float64), g.astype(np.float64)
    if metric == "cosine":
        q64 /= np.linalg.norm(q64, axis=1, keepdims=True)
        g64 /= np.linalg.norm(g64, axis=1, keepdims=True)
        ref = reference_distances(q64 @ g64.T, q_pids, g_pids, q_cams, g_cams, ranks=RANKS, similarity=True)
    else:
        dist = ((q64[:, None, :] - g64[None, :, :]) ** 2).sum(-1)
        ref = reference_distances(dist, q_pids, g_pids, q_cams, g_cams, ranks=RANKS)
    _assert_same(fast, ref, 20)  # random features: no near-ties that float32 rounding could flip


def test_evaluate_distances_rejects_nan_and_bad_shapes():
    d = np.zeros((2, 3))
    d[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_distances(d, [1, 2], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_distances(np.zeros((2, 3)), [1, 2], [1, 2], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="repeat"):
        evaluate_ranked(np.array([[0, 0]]), [1], [1, 2, 3], [0], [1, 1, 1])


def test_cmc_curve_and_to_dict():
    rng = np.random.default_rng(3)
    q_pids, g_pids, q_cams, g_cams = _labels(rng, 30, 80, 10, 3)
    m = evaluate_distances(rng.random((30, 80)), q_pids, g_pids, q_cams, g_cams, ranks=(1, 5, 10))
    curve = m.cmc_curve(20)
    assert curve.shape == (20,) and np.all(np.diff(curve) >= 0)
    assert curve[0] == pytest.approx(m.cmc[1]) and curve[9] == pytest.approx(m.cmc[10])
    d = m.to_dict()
    assert {"mAP", "mINP", "rank1", "rank5", "rank10", "num_queries", "num_valid_queries"} <= set(d)
