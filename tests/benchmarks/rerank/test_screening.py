"""Screening the neighbour search in bfloat16: the same answer, bit for bit, as screening in float32."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.rerank import screening
from benchmarks.rerank.array_ops import array_ops
from benchmarks.rerank.features import FeatureRows
from benchmarks.rerank.kreciprocal import KReciprocalReranker, RerankError, RerankSettings, rerank_matrix
from benchmarks.rerank.neighbours import canonical_distances, nearest_neighbours
from benchmarks.rerank.screening import Bf16Products, choose_precision

DEVICES = ("cpu", "torch-cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # torch on one thread (tests/conftest.py)


def both(q, g, metric, device="cpu", **kw):
    """The re-ranked matrix screened in float32 and in bfloat16 (forced: any CPU runs it)."""
    f32 = rerank_matrix(q, g, metric, RerankSettings(device=device, precision="float32", **kw))
    bf16 = rerank_matrix(q, g, metric, RerankSettings(device=device, precision="bfloat16", **kw))
    return f32, bf16


def assert_same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize(("device", "metric", "dtype", "memory_mb"), [
    ("cpu", "cosine", np.float32, 1), ("torch-cpu", "cosine", np.float32, 1),
    ("cpu", "euclidean", np.float32, 64), ("torch-cpu", "cosine", np.float64, 64),
])  # fmt: skip
@pytest.mark.slow
def test_random_features_give_the_same_bits(device, metric, dtype, memory_mb):
    rng = np.random.default_rng(11)
    scale = rng.uniform(0.2, 5, size=(900, 1))  # unequal norms: the euclidean bound is per row
    x = (rng.normal(size=(900, 48)) * scale).astype(dtype)
    f32, bf16 = both(x[:200], x[200:], metric, device, memory_mb=memory_mb)
    assert_same_bits(f32, bf16)


@pytest.mark.parametrize(
    ("device", "metric"), [("cpu", "cosine"), ("cpu", "euclidean"), ("torch-cpu", "cosine")]
)
@pytest.mark.slow
def test_duplicates_near_duplicates_and_exact_ties_give_the_same_bits(device, metric):
    """100 copies of one image (more than a float32 row keeps), 30 copies moved by 1e-7, and small
    integer features where distances tie exactly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    x[100:200] = x[5]
    x[300:330] = x[250] + 1e-7 * rng.normal(size=(30, 16)).astype(np.float32)
    assert_same_bits(*both(x[:120], x[120:], metric, device, memory_mb=1))
    ints = rng.integers(0, 3, size=(200, 3)).astype(np.float32)
    assert_same_bits(*both(ints[:50], ints[50:], "euclidean", device, k1=4, k2=2, memory_mb=1))


def reordered_by_bfloat16(seed=3, n=300, dim=64):
    """Images around a centre at distances (0.01 j)^2, j = 1..n: steps float32 resolves and bfloat16
    cannot, so that screened in bfloat16 the centre's neighbours come out of order."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim).astype(np.float32)
    direction = rng.normal(size=(n, dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    around = centre + 0.01 * np.arange(1, n + 1)[:, None] * direction
    return np.concatenate([centre[None], around]).astype(np.float32)


@pytest.mark.slow
def test_merges_and_the_exact_phase_in_pieces_give_the_same_bits(monkeypatch):
    from benchmarks.rerank import neighbours

    rng = np.random.default_rng(12)
    x = rng.normal(size=(1200, 24)).astype(np.float32)
    x[500:560] = x[9]  # duplicates: rows redone whole, in more than one piece
    whole = both(x[:300], x[300:], "cosine", memory_mb=1)
    monkeypatch.setattr(neighbours, "_EXACT_ROWS", 97)
    monkeypatch.setattr(neighbours, "_MERGE_ROWS", 50)
    pieces = both(x[:300], x[300:], "cosine", memory_mb=1)
    for a, b in zip(whole, pieces, strict=True):
        assert_same_bits(a, b)
    assert_same_bits(*pieces)


def test_a_case_where_bfloat16_reorders_the_neighbours_gives_the_exact_order():
    x = reordered_by_bfloat16()
    q, g = x[:1], x[1:]
    exact = ((x.astype(np.float64)[1:] - x[0]) ** 2).sum(1)
    assert (np.diff(exact) > 0).all()  # the exact order from the centre is the image order
    ops = array_ops("cpu")
    feats = FeatureRows(ops, q, g, np.dtype(np.float32), "euclidean")
    screen = Bf16Products(feats, array_ops("torch-cpu"))
    screened = screen.product(screen.left(0, 1), 0, 1, 0, len(x), np.empty((1, len(x)), np.float32))[0, 1:]
    assert (np.diff(screened[:21]) < 0).any()  # bfloat16 scrambles it among the 21 nearest already
    for s in (None, screen):
        lists = nearest_neighbours(feats, 126, (6, 11, 21), 1 << 20, screen=s)
        # the centre's 21 nearest are itself and images 1..20, each tier in image order
        np.testing.assert_array_equal(lists.index[0, :21], np.arange(21))
    assert_same_bits(*both(q, g, "euclidean"))
    assert_same_bits(*both(q, g, "cosine"))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_bfloat16_products_stay_inside_their_bound(metric):
    import torch

    rng = np.random.default_rng(4)
    for dim in (16, 512, 2048):
        x = (rng.normal(size=(300, dim)) * rng.uniform(0.1, 10, size=(300, 1))).astype(np.float32)
        x[:50] = rng.uniform(0, 1, size=(50, dim))  # non-negative rows: no cancellation in their products
        feats = FeatureRows(array_ops("cpu"), x[:100], x[100:], np.dtype(np.float32), metric)
        screen = Bf16Products(feats, array_ops("torch-cpu"))
        values = screen.product(screen.left(0, 300), 0, 300, 0, 300, np.empty((300, 300), np.float32))
        x64 = x.astype(np.float64)
        if metric == "cosine":
            x64 /= np.linalg.norm(x64, axis=1, keepdims=True)
        sq = (x64**2).sum(1)
        exact = sq[:, None] + sq[None, :] - 2 * x64 @ x64.T  # float64: 1e-12 of the bound at most
        error = np.abs(values.astype(np.float64) + feats.shift - exact)
        bound = screen.row_error[:, None] + screen.out_factor * np.abs(values)
        assert (error <= bound).all(), (dim, float((error / bound).max()))
        assert float((error / bound).max()) > 1e-3  # a bound, not a wall far away from every error
    # float32 accumulation: a sum whose partial values bfloat16 could not hold (1028) is returned whole
    a = torch.tensor([[1.0078125] * 512 + [1.0] * 512 + [-1.0] * 1024], dtype=torch.bfloat16)
    ones = torch.ones((32, 2048), dtype=torch.bfloat16)
    assert float(torch.matmul(a.repeat(32, 1), ones.T)[0, 0]) == 4.0


@pytest.mark.parametrize("device", DEVICES)
def test_canonical_distances_do_not_depend_on_their_company(device):
    """A pair's value is the same alone, in any batch, in either orientation: the float32 and the
    bfloat16 runs ask for different sets of pairs."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(700, 40)).astype(np.float32)
    ops = array_ops(device)
    feats = FeatureRows(ops, x[:100], x[100:], np.dtype(np.float32), "cosine")
    rows, cols = rng.integers(0, 700, 3000), rng.integers(0, 700, 3000)
    everything = ops.to_numpy(canonical_distances(feats, ops.asarray(rows), ops.asarray(cols)))
    for pick in (np.arange(5), rng.permutation(3000)[:257], np.arange(2999, 2000, -1)):
        some = canonical_distances(feats, ops.asarray(cols[pick]), ops.asarray(rows[pick]))
        np.testing.assert_array_equal(ops.to_numpy(some), everything[pick])


def test_auto_takes_bfloat16_only_where_it_pays(monkeypatch):
    big, dim = 45_214, 2048  # OPReID's size
    assert choose_precision("auto", "cpu", 500, 64, 1 << 30).reason == "too few products for a screen to pay"
    assert choose_precision("float32", "cpu", big, dim, 1 << 30).reason == "asked for"
    monkeypatch.setattr(screening, "cpu_has_bf16_units", lambda: False)
    assert "no AMX" in choose_precision("auto", "cpu", big, dim, 1 << 30).reason
    monkeypatch.setattr(screening, "cpu_has_bf16_units", lambda: True)
    # Market's size, its query-gallery blocks in float32 either way: the screen's own work outweighs
    market = 19_281**2 * dim - 2 * 3368 * 15913 * dim
    assert "outweigh" in choose_precision("auto", "torch-cpu", 19_281, dim, 1 << 30, market).reason
    monkeypatch.setattr(screening, "measured_speedup", lambda device, dim: 1.2)
    choice = choose_precision("auto", "torch-cpu", big, dim, 1 << 30)
    assert choice.precision == "float32" and "1.2x" in choice.reason
    monkeypatch.setattr(screening, "measured_speedup", lambda device, dim: 3.5)
    assert choose_precision("auto", "torch-cpu", big, dim, 1 << 30).precision == "bfloat16"
    # on the numpy path torch must fit in the budget beside the working arrays
    monkeypatch.setattr(screening, "_TORCH_BYTES", [600 << 20])
    assert "too little of the budget" in choose_precision("auto", "cpu", big, dim, 700 << 20).reason
    assert choose_precision("auto", "cpu", big, dim, 1 << 30).precision == "bfloat16"


def test_the_precision_that_ran_is_recorded_and_bad_ones_are_user_errors():
    x = np.random.default_rng(6).normal(size=(300, 8)).astype(np.float32)
    reranker = KReciprocalReranker(x[:50], x[50:], "cosine", RerankSettings(precision="bfloat16"))
    assert reranker.precision.precision == "bfloat16" and "screened in bfloat16" in reranker.backend
    with pytest.raises(RerankError, match="precision must be one of auto, float32, bfloat16") as info:
        rerank_matrix(x[:50], x[50:], settings=RerankSettings(precision="float16"))
    assert info.value.exit_code == 1


def test_score_takes_the_precision_option(tmp_path, run_opreid, expect_error):
    result = run_opreid(
        "score", tmp_path / "f.npz", "--data", tmp_path, "--rerank", "--rerank-precision", "fp8"
    )
    expect_error(result, "opreid score", 1, "--rerank-precision")
