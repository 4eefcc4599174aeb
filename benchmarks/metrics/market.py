"""Market-1501 metrics (CMC, mAP, mINP) as fast-reid's `eval_market1501` defines them, in O(Q x G).

Protocol: for each query, gallery entries with the same pid AND the same camid are removed; the
remaining same-pid entries are its positives. Queries without a positive are reported
(`invalid_query_indices`) and excluded from every average. CMC@k is the fraction of valid queries
whose first positive is within the top k; AP is the non-interpolated mean, over all positives, of
precision at each positive's rank; INP = (number of positives) / (rank of the last positive).
Ties in distance are broken by gallery order (what a stable sort gives); `ties="pessimistic"`
puts every tied non-positive ahead instead (the worst case).

Ranked lists (Q x K gallery indices) are scored on the list as given: a positive absent from the
list counts as never retrieved, so AP sums precision over the retrieved positives and divides by
all positives, INP is 0 unless the last positive is in the list, and CMC@k for k beyond the list's
valid length is a lower bound. Such metrics carry `truncated_at = K`.

How: see `positive_ranks` — only the number of entries that beat each positive is counted; no row
is sorted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from benchmarks.metrics.array_checks import nonfinite_problems, ranked_index_problems
from benchmarks.metrics.distances import FeatureDistances, feature_distances
from benchmarks.metrics.positive_ranks import (
    TIES,
    IdentityPairs,
    PositiveRanks,
    check_inputs,
    identity_pairs,
    rank_positives_in_lists,
    rank_positives_in_rows,
)

#: The CMC ranks reported unless asked otherwise (fast-reid's and torchreid's tables).
DEFAULT_RANKS = (1, 5, 10)


@dataclass
class MarketMetrics:
    """Averages over the valid queries plus the per-query values behind them.

    Per-query arrays have one entry per query (length Q): `ap`/`inp` are NaN and `first_hit_rank`
    is 0 for a query outside `query_mask` or without a positive; `first_hit_rank` is also 0 when
    a truncated list holds no positive.
    """

    mAP: float
    mINP: float
    cmc: dict[int, float]
    num_queries: int
    num_valid_queries: int
    invalid_query_indices: np.ndarray
    ap: np.ndarray = field(repr=False)
    inp: np.ndarray = field(repr=False)
    first_hit_rank: np.ndarray = field(repr=False)
    num_positives: np.ndarray = field(repr=False)
    query_mask: np.ndarray = field(repr=False)
    ties: str = "stable"
    truncated_at: int | None = None

    @property
    def valid(self) -> np.ndarray:
        return self.query_mask & (self.num_positives > 0)

    def cmc_curve(self, max_rank: int) -> np.ndarray:
        """CMC at ranks 1..max_rank (fractions of valid queries)."""
        hits = self.first_hit_rank[self.valid]
        if len(hits) == 0:
            return np.full(max_rank, np.nan)
        found = np.bincount(hits[hits > 0], minlength=max_rank + 1)[1 : max_rank + 1]
        return np.cumsum(found) / len(hits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `mAP`, `mINP`, one `rankK` per requested rank (fractions), query counts."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        out: dict[str, Any] = {"mAP": num(self.mAP), "mINP": num(self.mINP)}
        out.update({f"rank{k}": num(v) for k, v in sorted(self.cmc.items())})
        out.update(
            num_queries=self.num_queries,
            num_valid_queries=self.num_valid_queries,
            invalid_query_indices=[int(i) for i in self.invalid_query_indices],
            ties=self.ties,
            truncated_at=self.truncated_at,
        )
        return out


def check_ranks(ranks: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in ranks}))
    if not out or out[0] < 1:
        raise ValueError(f"ranks must be positive integers, got {tuple(ranks)}")
    return out


def metrics_from_positive_ranks(
    pr: PositiveRanks,
    ranks: Iterable[int] = DEFAULT_RANKS,
    *,
    query_mask: np.ndarray | None = None,
    positive_mask: np.ndarray | None = None,
) -> MarketMetrics:
    """Turn per-positive counts into metrics, for all queries or a subset.

    `positive_mask` (one bool per positive pair) keeps only some positives — e.g. only occluded
    gallery images; the other positives are then removed from the ranking like same-camera entries.
    """
    ranks = check_ranks(ranks)
    nq = pr.num_queries
    considered = np.ones(nq, dtype=bool) if query_mask is None else np.asarray(query_mask, dtype=bool).copy()
    if considered.shape != (nq,):
        raise ValueError(f"query_mask has shape {considered.shape}, expected ({nq},)")
    qs = pr.query_of_pair
    ahead = pr.negatives_ahead
    if positive_mask is not None:
        keep = np.asarray(positive_mask, dtype=bool)
        qs, ahead = qs[keep], ahead[keep]
    num_pos = np.bincount(qs, minlength=nq).astype(np.int64)
    valid = considered & (num_pos > 0)
    keep = valid[qs]
    qs, ahead = qs[keep], ahead[keep]
    if pr.truncated_at is None and np.any(ahead < 0):
        raise ValueError("a positive of a scored query was not counted (rows missing from the computation)")
    retrieved = ahead >= 0
    big = np.iinfo(np.int64).max // 4
    ahead_key = np.where(retrieved, ahead, big)
    order = np.lexsort((ahead_key, qs))
    qs, ahead_key, retrieved = qs[order], ahead_key[order], retrieved[order]
    kept = np.where(valid, num_pos, 0)
    group_start = np.cumsum(kept) - kept  # pairs are now grouped by query, in query order
    nth = np.arange(len(qs), dtype=np.int64) - group_start[qs] + 1  # i: 1-based order among positives
    rank = np.where(retrieved, nth + ahead_key, 0)

    ap = np.full(nq, np.nan)
    inp = np.full(nq, np.nan)
    first_hit = np.zeros(nq, dtype=np.int64)
    precision = np.where(retrieved, nth / np.where(retrieved, rank, 1), 0.0)
    ap_sum = np.bincount(qs, weights=precision, minlength=nq)
    ap[valid] = ap_sum[valid] / num_pos[valid]
    last = nth == num_pos[qs]
    inp[valid] = 0.0
    inp[qs[last]] = np.where(retrieved[last], num_pos[qs[last]] / np.maximum(rank[last], 1), 0.0)
    first = nth == 1
    first_hit[qs[first]] = rank[first]

    n_valid = int(valid.sum())
    hits = first_hit[valid]
    if n_valid:
        m_ap, m_inp = float(np.mean(ap[valid])), float(np.mean(inp[valid]))
        cmc = {k: float(np.count_nonzero((hits > 0) & (hits <= k)) / n_valid) for k in ranks}
    else:
        m_ap = m_inp = math.nan
        cmc = {k: math.nan for k in ranks}
    return MarketMetrics(
        mAP=m_ap,
        mINP=m_inp,
        cmc=cmc,
        num_queries=int(considered.sum()),
        num_valid_queries=n_valid,
        invalid_query_indices=np.flatnonzero(considered & (num_pos == 0)),
        ap=ap,
        inp=inp,
        first_hit_rank=first_hit,
        num_positives=num_pos,
        query_mask=considered,
        ties=pr.ties,
        truncated_at=pr.truncated_at,
    )


def _labels(q_pids, g_pids, q_camids, g_camids, shape) -> IdentityPairs:
    check_inputs(shape[0], shape[1], q_pids, g_pids, q_camids, g_camids)
    return identity_pairs(q_pids, g_pids, q_camids, g_camids)


def evaluate_distances(
    distmat: np.ndarray,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    *,
    ranks: Iterable[int] = DEFAULT_RANKS,
    ties: str = "stable",
    query_mask: np.ndarray | None = None,
    similarity: bool = False,
    check_finite: bool = True,
) -> MarketMetrics:
    """Score a Q x G distance matrix (float16/32/64; lower is closer, or higher with `similarity`).

    A memory-mapped matrix is read in chunks of rows. Raises ValueError on NaN/Inf (unless
    `check_finite=False`, for callers that validated already) or on mismatched shapes.
    """
    if ties not in TIES:
        raise ValueError(f"unknown tie rule {ties!r}; expected one of {TIES}")
    if np.ndim(distmat) != 2:
        raise ValueError(f"distmat must be 2-D, got shape {np.shape(distmat)}")
    ranks = check_ranks(ranks)
    pairs = _labels(q_pids, g_pids, q_camids, g_camids, distmat.shape)
    if check_finite and (problems := nonfinite_problems(distmat, "distance matrix")):
        raise ValueError(problems[0])
    pr = rank_positives_in_rows(
        lambda a, b: distmat[a:b], distmat.shape[1], pairs, ties=(ties,), similarity=similarity,
        query_mask=query_mask,
    )[ties]  # fmt: skip
    return metrics_from_positive_ranks(pr, ranks, query_mask=query_mask)


def evaluate_ranked(
    ranked_indices: np.ndarray,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    *,
    ranks: Iterable[int] = DEFAULT_RANKS,
    query_mask: np.ndarray | None = None,
    check: bool = True,
) -> MarketMetrics:
    """Score Q x K ranked gallery indices (best first); mAP/mINP are truncated at K (`truncated_at`)."""
    ranked_indices = (
        np.asarray(ranked_indices) if not isinstance(ranked_indices, np.ndarray) else ranked_indices
    )
    if ranked_indices.ndim != 2 or ranked_indices.dtype.kind not in "iu":
        raise ValueError(
            f"ranked_indices must be a 2-D integer array, got {ranked_indices.dtype} {ranked_indices.shape}"
        )
    ranks = check_ranks(ranks)
    num_gallery = len(g_pids)
    pairs = _labels(q_pids, g_pids, q_camids, g_camids, (ranked_indices.shape[0], num_gallery))
    if check:
        if not 1 <= ranked_indices.shape[1] <= num_gallery:
            raise ValueError(
                f"K = {ranked_indices.shape[1]} ranked entries per query; expected 1..{num_gallery}"
            )
        if problems := ranked_index_problems(ranked_indices, num_gallery):
            raise ValueError("; ".join(problems))
    pr = rank_positives_in_lists(
        ranked_indices, pairs, np.asarray(g_pids), np.asarray(g_camids), np.asarray(q_pids),
        np.asarray(q_camids), query_mask=query_mask,
    )  # fmt: skip
    return metrics_from_positive_ranks(pr, ranks, query_mask=query_mask)


def evaluate_features(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    *,
    metric: str = "cosine",
    ranks: Iterable[int] = DEFAULT_RANKS,
    ties: str = "stable",
    query_mask: np.ndarray | None = None,
    backend: str = "auto",
) -> MarketMetrics:
    """Score Q x D / G x D features; distances are computed chunk by chunk, never held whole."""
    if ties not in TIES:
        raise ValueError(f"unknown tie rule {ties!r}; expected one of {TIES}")
    ranks = check_ranks(ranks)
    source = finite_rows(feature_distances(query_features, gallery_features, metric, backend=backend))
    pairs = _labels(q_pids, g_pids, q_camids, g_camids, (source.num_query, source.num_gallery))
    pr = rank_positives_in_rows(
        source.rows,
        source.num_gallery,
        pairs,
        ties=(ties,),
        similarity=source.similarity,
        query_mask=query_mask,
    )[ties]
    return metrics_from_positive_ranks(pr, ranks, query_mask=query_mask)


def finite_rows(source: FeatureDistances) -> FeatureDistances:
    """Guard computed distances: a non-finite value (float overflow) raises instead of mis-ranking."""

    def rows(a: int, b: int) -> np.ndarray:
        block = source.rows(a, b)
        if not np.isfinite(np.sum(block, dtype=np.float64)):
            raise ValueError(f"computed distances of query rows {a}..{b - 1} are not all finite")
        return block

    return replace(source, rows=rows)
