"""Where each query's positives land in its ranking, found without sorting the gallery.

Every Market-1501 metric (CMC, AP, INP) depends only on the ranks of a query's positives among its
*valid* gallery entries (same pid and same camid removed). If the positives, ordered by rank, are
p_1..p_R and N_i is the number of valid non-positive entries ranked ahead of p_i, then
rank(p_i) = i + N_i. So all we need per positive is N: a count of entries that beat it, which is
one vectorised comparison of the query's row against the positive's distance — O(G) per positive,
O(Q x G) for a matrix with few positives per query (OPReID has two).

Tie rule ("stable"): entry j beats positive p when d_j < d_p, or d_j == d_p and j < p — exactly the
order a stable sort of the row gives. "pessimistic": every non-positive with d_j <= d_p is put
ahead of p (the worst order a tie-breaking could produce for every metric at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

TIES = ("stable", "pessimistic")
#: Queries with more positives than this use the candidate path (filter + sort of the few entries
#: that can beat a positive) instead of one full-row comparison per positive.
DIRECT_MAX_POSITIVES = 16
#: Elements per chunk of rows held at once (as float32/float64 working copies when needed).
CHUNK_ELEMENTS = 1 << 22

RowChunks = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class IdentityPairs:
    """Every (query, gallery entry of the same pid) pair, grouped by query, gallery index ascending."""

    offsets: np.ndarray  # (Q+1,) pairs of query q are [offsets[q], offsets[q+1])
    query: np.ndarray  # (P,) query index of each pair
    gallery: np.ndarray  # (P,) gallery index
    positive: np.ndarray  # (P,) bool: different camera (a positive); False: same camera (removed, "junk")

    @property
    def num_queries(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class PositiveRanks:
    """For every (query, positive) pair: how many valid non-positive gallery entries rank ahead of it.

    `negatives_ahead` is -1 for a positive that a truncated ranked list does not contain.
    """

    num_queries: int
    offsets: np.ndarray  # (Q+1,) positives of query q are [offsets[q], offsets[q+1])
    gallery_index: np.ndarray  # (P,) int64
    negatives_ahead: np.ndarray  # (P,) int64
    ties: str
    truncated_at: int | None = None

    @property
    def query_of_pair(self) -> np.ndarray:
        return np.repeat(np.arange(self.num_queries), np.diff(self.offsets))

    @property
    def num_positives(self) -> np.ndarray:
        return np.diff(self.offsets)


def identity_pairs(q_pids, g_pids, q_camids, g_camids) -> IdentityPairs:
    """Pair each query with the gallery entries of its pid (vectorised through one sort of the gallery)."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[order]
    left = np.searchsorted(sorted_pids, q_pids, side="left")
    right = np.searchsorted(sorted_pids, q_pids, side="right")
    counts = (right - left).astype(np.int64)
    offsets = np.zeros(len(q_pids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    query = np.repeat(np.arange(len(q_pids), dtype=np.int64), counts)
    within = np.arange(offsets[-1], dtype=np.int64) - offsets[query]
    gallery = order[left[query] + within].astype(np.int64)
    positive = g_camids[gallery] != q_camids[query]
    return IdentityPairs(offsets, query, gallery, positive)


def _positive_subset(pairs: IdentityPairs) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and gallery indices of the positives alone."""
    counts = np.bincount(pairs.query[pairs.positive], minlength=pairs.num_queries)
    offsets = np.zeros(pairs.num_queries + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, pairs.gallery[pairs.positive]


def check_inputs(num_queries: int, num_gallery: int, q_pids, g_pids, q_camids, g_camids) -> None:
    for name, arr, n in (
        ("q_pids", q_pids, num_queries), ("q_camids", q_camids, num_queries),
        ("g_pids", g_pids, num_gallery), ("g_camids", g_camids, num_gallery),
    ):  # fmt: skip
        shape = np.shape(arr)
        if shape != (n,):
            raise ValueError(f"{name} has shape {shape}, expected ({n},)")


def _lower_is_closer(block: np.ndarray, similarity: bool) -> np.ndarray:
    """A chunk as float32/float64 where smaller means closer; exact (float16 widening and negation are)."""
    block = np.asarray(block)
    if block.dtype == np.float16:
        block = block.astype(np.float32)
    elif block.dtype not in (np.float32, np.float64):
        raise ValueError(f"distances must be float16/32/64, got {block.dtype}")
    return np.negative(block) if similarity else block


def _beaten_by_candidates(row: np.ndarray, pos_g: np.ndarray, pos_v: np.ndarray, ties: str) -> np.ndarray:
    """For many positives: how many entries j != p of the row beat each positive p. Only entries no
    farther than the farthest positive can beat any of them; sort those few (by distance, then
    gallery index) and binary-search each positive, instead of one full-row pass per positive."""
    cand = np.flatnonzero(row <= pos_v.max())
    cand_v = row[cand]
    order = np.argsort(cand_v, kind="stable")  # cand ascends, so ties stay in gallery order
    sorted_v, sorted_g = cand_v[order], cand[order]
    left = np.searchsorted(sorted_v, pos_v, side="left")
    right = np.searchsorted(sorted_v, pos_v, side="right")
    if ties == "pessimistic":
        return (right - 1).astype(np.int64)
    out = left.astype(np.int64)
    for i in np.flatnonzero(right - left > 1).tolist():
        out[i] += np.searchsorted(sorted_g[left[i] : right[i]], pos_g[i])
    return out


def _group_ahead(query: np.ndarray, gallery: np.ndarray, values: np.ndarray, ties: str) -> np.ndarray:
    """For each same-pid pair: how many other pairs of its query (positives and removed same-camera
    entries) beat it. These are taken back out of whole-row counts so only valid non-positives remain.
    One lexsort for a whole chunk: the position inside the query's (distance, index) order."""
    n = len(query)
    order = np.lexsort((gallery, values, query))
    qs, vs = query[order], values[order]
    idx = np.arange(n, dtype=np.int64)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = qs[1:] != qs[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0))
    if ties == "stable":
        ahead = idx - group_start
    else:  # every other pair with a distance <= its own
        new_run = new_group.copy()
        new_run[1:] |= vs[1:] != vs[:-1]
        run_id = np.cumsum(new_run) - 1
        run_end = np.append(idx[new_run][1:], n)
        ahead = run_end[run_id] - group_start - 1
    out = np.empty(n, dtype=np.int64)
    out[order] = ahead
    return out


def rank_positives_in_rows(
    row_chunks: RowChunks,
    num_gallery: int,
    pairs: IdentityPairs,
    *,
    ties: Sequence[str] = ("stable",),
    similarity: bool = False,
    query_mask: np.ndarray | None = None,
    direct_max_positives: int = DIRECT_MAX_POSITIVES,
) -> dict[str, PositiveRanks]:
    """Count, for each positive, the valid non-positive entries ranked ahead of it, for each tie rule.

    `row_chunks(a, b)` returns rows a..b-1 of the Q x G distance matrix (any float dtype; it may
    compute them on the fly), so the matrix itself never needs to sit in memory whole. Distances
    must be finite (callers check).
    """
    for rule in ties:
        if rule not in TIES:
            raise ValueError(f"unknown tie rule {rule!r}; expected one of {TIES}")
    num_queries = pairs.num_queries
    pos_offsets, pos_gallery = _positive_subset(pairs)
    pos_slot = np.cumsum(pairs.positive) - 1  # pair index -> index among positives
    num_pos = np.diff(pos_offsets)
    counts = {rule: np.full(len(pos_gallery), -1, dtype=np.int64) for rule in ties}
    needed = num_pos > 0
    if query_mask is not None:
        needed &= np.asarray(query_mask, dtype=bool)
    buf = np.empty(num_gallery, dtype=bool)
    chunk_rows = max(1, CHUNK_ELEMENTS // max(num_gallery, 1))
    for start in range(0, num_queries, chunk_rows):
        stop = min(start + chunk_rows, num_queries)
        if not needed[start:stop].any():
            continue
        block = _lower_is_closer(row_chunks(start, stop), similarity)
        if block.shape != (stop - start, num_gallery):
            raise ValueError(
                f"rows {start}..{stop} have shape {block.shape}, expected ({stop - start}, {num_gallery})"
            )
        lo, hi = pairs.offsets[start], pairs.offsets[stop]
        chunk_q = pairs.query[lo:hi]
        keep = needed[chunk_q]
        chunk_q, chunk_g = chunk_q[keep], pairs.gallery[lo:hi][keep]
        chunk_pos = pairs.positive[lo:hi][keep]
        chunk_slot = pos_slot[lo:hi][keep]
        values = block[chunk_q - start, chunk_g]
        is_direct = chunk_pos & (num_pos[chunk_q] <= direct_max_positives)
        direct = (chunk_q[is_direct] - start).tolist(), chunk_g[is_direct].tolist(), values[is_direct]
        for rule in ties:
            beaten = np.zeros(len(chunk_q), dtype=np.int64)
            out = np.empty(len(direct[0]), dtype=np.int64)
            if rule == "stable":  # j beats p: d_j < d_p, or d_j == d_p and j < p
                for i, (r, p, v) in enumerate(zip(*direct, strict=True)):
                    row = block[r]
                    np.less_equal(row[:p], v, out=buf[:p])
                    np.less(row[p:], v, out=buf[p:])
                    out[i] = np.count_nonzero(buf)
            else:  # every j != p with d_j <= d_p
                for i, (r, v) in enumerate(zip(direct[0], direct[2], strict=True)):
                    np.less_equal(block[r], v, out=buf)
                    out[i] = np.count_nonzero(buf) - 1
            beaten[is_direct] = out
            for q in np.unique(chunk_q[chunk_pos & ~is_direct]).tolist():
                a, b = np.searchsorted(chunk_q, [q, q + 1])  # chunk_q ascends
                sel = np.flatnonzero(chunk_pos[a:b]) + a
                beaten[sel] = _beaten_by_candidates(block[q - start], chunk_g[sel], values[sel], rule)
            ahead = beaten - _group_ahead(chunk_q, chunk_g, values, rule)
            counts[rule][chunk_slot[chunk_pos]] = ahead[chunk_pos]
    return {rule: PositiveRanks(num_queries, pos_offsets, pos_gallery, counts[rule], rule) for rule in ties}


def rank_positives_in_lists(
    ranked: np.ndarray,
    pairs: IdentityPairs,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    *,
    query_mask: np.ndarray | None = None,
) -> PositiveRanks:
    """Negatives ahead of each positive in Q x K ranked gallery lists (indices in range, distinct).

    A positive absent from its query's list gets -1 (rank beyond K).
    """
    num_queries, k = ranked.shape
    num_gallery = len(g_pids)
    pos_offsets, pos_gallery = _positive_subset(pairs)
    pos_query = np.repeat(np.arange(num_queries, dtype=np.int64), np.diff(pos_offsets))
    pos_key = pos_query * num_gallery + pos_gallery  # ascending: by query, then gallery index
    counts = np.full(len(pos_gallery), -1, dtype=np.int64)
    needed = np.diff(pos_offsets) > 0
    if query_mask is not None:
        needed &= np.asarray(query_mask, dtype=bool)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
    chunk_rows = max(1, CHUNK_ELEMENTS // (4 * k))
    for start in range(0, num_queries, chunk_rows):
        stop = min(start + chunk_rows, num_queries)
        rows = np.flatnonzero(needed[start:stop])
        if len(rows) == 0:
            continue
        lists = np.asarray(ranked[start:stop])[rows].astype(np.int64)
        qi = rows + start
        same_pid = g_pids[lists] == q_pids[qi, None]
        positive = same_pid & (g_camids[lists] != q_camids[qi, None])
        negatives_before = np.cumsum(~same_pid, axis=1)  # at a positive slot this counts only earlier slots
        r, c = np.nonzero(positive)
        key = qi[r] * num_gallery + lists[r, c]
        counts[np.searchsorted(pos_key, key)] = negatives_before[r, c]
    return PositiveRanks(num_queries, pos_offsets, pos_gallery, counts, "stable", truncated_at=k)
