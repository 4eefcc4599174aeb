"""The blocked neighbour search against a float64 stable argsort of the full distance matrix."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.rerank.array_ops import array_ops
from benchmarks.rerank.features import FeatureRows
from benchmarks.rerank.neighbours import error_bound, nearest_neighbours

DEVICES = ("cpu", "torch-cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # torch on one thread (tests/conftest.py)


def exact_order(q, g, metric):
    """Every row's images by (float64 distance, index): the order re-ranking's neighbours must have."""
    x = np.concatenate([q, g]).astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sq = (x**2).sum(axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    return np.argsort(d, axis=1, kind="stable"), d


def search(device, q, g, metric, capacity, boundaries, budget):
    ops = array_ops(device)
    lists = nearest_neighbours(
        FeatureRows(ops, q, g, np.dtype(q.dtype), metric), capacity, boundaries, budget
    )
    return lists, ops.to_numpy(lists.index), ops.to_numpy(lists.rowmax)


@pytest.mark.parametrize(  # blocks of 18, 147 and all 700 rows
    ("device", "budget"), [("cpu", 1 << 14), ("cpu", 1 << 20), ("torch-cpu", 1 << 20), ("cpu", 1 << 30)]
)
@pytest.mark.slow
def test_every_position_is_exact_when_every_boundary_is_asked(device, budget):
    """float32 features of near-equal distances: the float32 pass must defer to float64 at each place."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(700, 64)).astype(np.float32)
    q, g = x[:100], x[100:]
    order, d = exact_order(q, g, "cosine")
    lists, index, rowmax = search(device, q, g, "cosine", 30, tuple(range(1, 30)), budget)
    np.testing.assert_array_equal(index[:, :29], order[:, :29])
    np.testing.assert_allclose(rowmax, d.max(axis=1), rtol=1e-5)
    assert lists.rechecked > 0  # float32 near-ties did reach the float64 re-check


@pytest.mark.parametrize("device", DEVICES)
def test_duplicates_beyond_the_capacity_are_redone_exactly(device):
    """40 copies of one image tie at distance 0: more than the 12 candidates a row keeps."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x[50:90] = x[7]
    q, g = x[:60], x[60:]
    order, _ = exact_order(q, g, "euclidean")
    lists, index, _ = search(device, q, g, "euclidean", 12, (3, 6, 11), 1 << 16)
    assert lists.full_rows >= 41  # the copies, the original and its query neighbours
    for p in (3, 6, 11):
        np.testing.assert_array_equal(np.sort(index[:, :p], axis=1), np.sort(order[:, :p], axis=1))


@pytest.mark.parametrize("device", DEVICES)
def test_integer_features_tie_exactly_and_break_ties_by_index(device):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(200, 3)).astype(np.float32)
    order, _ = exact_order(x[:50], x[50:], "euclidean")
    _, index, _ = search(device, x[:50], x[50:], "euclidean", 42, (6, 11, 21), 1 << 15)
    for p in (6, 11, 21):
        np.testing.assert_array_equal(np.sort(index[:, :p], axis=1), np.sort(order[:, :p], axis=1))


def test_float32_errors_stay_inside_the_bound():
    rng = np.random.default_rng(4)
    for dim in (16, 512, 2048):
        x = (rng.normal(size=(600, dim)) * rng.uniform(0.1, 10, size=(600, 1))).astype(np.float32)
        feats = FeatureRows(array_ops("cpu"), x[:200], x[200:], np.dtype(np.float32), "euclidean")
        approx = feats.block(feats.left(0, 600), 0, 600, 0, 600)
        x64 = x.astype(np.float64)
        sq = (x64**2).sum(axis=1)
        exact = sq[:, None] + sq[None, :] - 2 * x64 @ x64.T
        worst = np.abs(approx - exact).max()
        bound = error_bound(dim, np.dtype(np.float32), sq.max())
        assert worst < bound / 5, (dim, worst, bound)
