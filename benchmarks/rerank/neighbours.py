"""Every image's nearest neighbours among all N images: blocked matrix products in the features' dtype,
with the order re-checked exactly (float64) wherever a boundary the algorithm reads is in doubt.

One pass goes over the upper triangle of the N x N squared distances, a block of rows against a block
of columns at a time. Each product serves its rows and, transposed, its columns: half the products of
a row-by-row pass. Per row the pass keeps the `capacity` smallest distances seen so far and the row's
maximum. After a row's first block only entries below its current capacity-th smallest are candidates,
so a block's selection is one comparison and a few sparse entries per row instead of a partition.

A float32 product of D-dimensional features is not exact: `error_bound` bounds the difference from
the exact distance (a probabilistic bound, 65 times the largest error measured). Re-ranking reads, for
a few p (k2, round(k1/2) + 1 and k1 + 1), the set of each row's p nearest images, ties broken by image
index as a stable sort breaks them. Only an image whose distance lies within twice the bound of the
p-th or (p+1)-th one can fall on either side of that boundary: those distances, and only those, are
computed again in float64 from the differences (x_i - x_j) and decide it. A row whose kept candidates
do not reach past the doubtful zone (many near-exact ties: duplicate images) is redone whole, with
float64 products.

faiss is not used here: its k-NN search computes each product twice (no symmetry), keeps no row
maximum and breaks ties its own way; its block product measured slower than numpy's BLAS.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.rerank.features import FeatureRows
from manifests import progress_bar

log = logging.getLogger(__name__)

#: Bytes per element of one block of the pass beyond the block itself: a comparison mask, and where a
#: row meets its first block, a partition's int64 indices and a copy of the block.
_BLOCK_OVERHEAD = 16
#: Largest block side: 1024-row products ran a third slower than 2048-row ones, 3072 and 4096 about 10%
#: faster than 2048 (OpenBLAS, 2 cores); the budget's share for a step sets the side below that.
MAX_BLOCK = 4096


@dataclass
class NeighbourLists:
    """Row i's `capacity` nearest candidates: `index[i, :p]` is the exact set of its p nearest images for
    every p in the boundaries asked for; `distance` holds max(d, 0), unnormalised (float64-exact where
    re-checked); `rowmax` is each row's largest max(d, 0)."""

    index: object
    distance: object
    rowmax: object
    rechecked: int = 0
    full_rows: int = 0
    timings: dict = field(default_factory=dict)
    product_flops: float = 0.0


#: lambda of the probabilistic bound below: a D = 2048 inner product exceeds it with probability below
#: 2 D exp(-lambda^2 / 2) = 8e-19, 2e-9 over all 2e9 pairs of OPReID's 45k images.
ERROR_LAMBDA = 10.0


def error_bound(dim: int, dtype: np.dtype, max_sq: float) -> float:
    """A bound on |computed - exact| for |x|^2 + |y|^2 - 2 x.y with |x|^2 <= max_sq, for the three inner
    products the probabilistic one of Higham and Mary (SIAM J. Sci. Comput. 2019: lambda sqrt(D) u,
    rounding errors as independent zero-mean variables) plus the additions' rounding and the float64
    re-check's own worst case. The worst case D u is 45 times larger at D = 2048 and about 300 times the
    largest error measured on 49 million float32 pairs: it would re-check most boundaries for nothing."""
    u = float(np.finfo(dtype).eps) / 2
    u64 = float(np.finfo(np.float64).eps) / 2
    per_term = ERROR_LAMBDA * np.sqrt(dim) * u + (dim + 2) * u64
    return 1.01 * (4 * per_term + 12 * u) * max(float(max_sq), float(np.finfo(np.float64).tiny))


def block_side(budget_bytes: int, itemsize: int) -> int:
    per_element = 2 * itemsize + _BLOCK_OVERHEAD
    return int(max(1, min(MAX_BLOCK, np.sqrt(max(budget_bytes, 1) / per_element))))


class _Pass:
    """The blocked pass's running state: per row the kept candidates, their largest (`thr`), and the row
    maximum. Blocks arrive as products still to finish and without the constant `shift` (see
    FeatureRows.shift): the comparisons move the thresholds instead, and only kept values get it back."""

    def __init__(self, feats: FeatureRows, capacity: int, side: int):
        o, n, dtype = feats.ops, len(feats), feats.dtype
        self.ops, self.feats, self.n, self.capacity, self.shift = o, feats, n, capacity, feats.shift
        self.vals = o.full((n, capacity), np.inf, dtype)
        self.cols = o.full((n, capacity), -1, np.int64)
        self.thr = o.full((n,), np.inf, dtype)
        self.rowmax = o.full((n,), -np.inf, dtype)  # without the shift
        # one block's product and comparison mask, reused: fresh pages for every block cost more
        self.product = o.empty((min(side, n) ** 2,), dtype)
        self.mask = o.empty((min(side, n) ** 2,), bool)

    def _first_thresholds(self, d, cap: int):
        """Row thresholds of a block that meets its rows first: their cap-th smallest, included."""
        o = self.ops
        if d.shape[1] <= cap:
            return o.full((d.shape[0],), np.inf, self.feats.dtype)
        return o.next_up(o.kth_smallest(d, cap))

    def scan(self, d, a: int, b: int, c: int, e: int, query_gallery=None) -> None:
        """Rows a..b-1 meet columns c..e-1 (a product from FeatureRows.product, finished here) and, unless
        the block is diagonal, columns c..e-1 meet rows a..b-1. Every row meets its diagonal block first."""
        o, f, cap, shift = self.ops, self.feats, self.capacity, self.shift
        diagonal = c == a
        if diagonal:  # the k-th smallest needs whole rows of the finished block
            f.finish(d, a, b, c, e)
            tr = self._first_thresholds(d, cap)
        else:
            tr, tc = self.thr[a:b] - shift, self.thr[c:e] - shift
        step = o.scan_rows or (b - a)
        below = self.mask[: (b - a) * (e - c)].reshape(b - a, e - c)
        colmax = None
        for r0 in range(0, b - a, step):
            r1 = min(r0 + step, b - a)
            part, into = d[r0:r1], below[r0:r1]
            if not diagonal:
                f.finish(part, a + r0, a + r1, c, e)
            self.rowmax[a + r0 : a + r1] = o.maximum(self.rowmax[a + r0 : a + r1], o.max(part, 1))
            o.less(part, tr[r0:r1, None], out=into)
            if not diagonal:
                top = o.max(part, 0)
                colmax = top if colmax is None else o.maximum(colmax, top)
                into |= part < tc[None, :]
        if not diagonal:
            self.rowmax[c:e] = o.maximum(self.rowmax[c:e], colmax)
        if query_gallery is not None:  # the final mix's original distances, still without the shift
            nq = f.num_query
            if a < nq and e > nq:
                q1, g0 = min(b, nq), max(c, nq)
                query_gallery[a:q1, g0 - nq : e - nq] = d[: q1 - a, g0 - c :]
        rr, cc = o.nonzero_sparse(below)
        if len(rr) == 0:
            return
        v = d[rr, cc]
        mine = v < tr[rr]
        rows, cols, vals = [rr[mine] + a], [cc[mine] + c], [v[mine]]
        if not diagonal:  # by target row, after the rows a..b-1 (c >= b): merge takes rows in order
            theirs = o.nonzero(v < tc[cc])[0]
            theirs = theirs[o.argsort_small(cc[theirs], e - c)]
            rows.append(cc[theirs] + c), cols.append(rr[theirs] + a), vals.append(v[theirs])
        vals = o.concat(vals)
        if shift:
            vals += shift
        self.merge(o.concat(rows), o.concat(cols), o.clamp_min(vals, 0))

    def merge(self, rows, cols, vals) -> None:
        """Keep, per row, the `capacity` smallest of what it holds and the new (row, column, value)s, the
        new ones in ascending row order."""
        o, cap = self.ops, self.capacity
        first = int(rows[0])
        counts = o.bincount(rows - first)
        uniq = o.nonzero(counts)[0]
        counts = counts[uniq]
        uniq += first
        inverse = o.repeat(o.arange(len(uniq)), counts)
        pos = o.arange(len(rows)) - o.repeat(o.cumsum(counts) - counts, counts) + cap
        width = cap + int(counts.max())
        dv = o.full((len(uniq), width), np.inf, self.vals.dtype)
        dc = o.full((len(uniq), width), -1, np.int64)
        dv[:, :cap], dc[:, :cap] = self.vals[uniq], self.cols[uniq]
        dv[inverse, pos], dc[inverse, pos] = vals, cols
        kept, idx = o.smallest(dv, cap)
        self.vals[uniq], self.cols[uniq] = kept, o.take_along(dc, idx)
        self.thr[uniq] = o.max(kept, 1)


def nearest_neighbours(
    feats: FeatureRows, capacity: int, boundaries: tuple[int, ...], budget_bytes: int, *,
    query_gallery=None, progress: bool = False,
) -> NeighbourLists:  # fmt: skip
    """Each row's `capacity` nearest images by squared distance, exact at every p in `boundaries` (each
    below `capacity`, or N).

    `query_gallery`, when given, is filled with the unclamped distances of the query rows to the
    gallery rows on the way, less FeatureRows.shift (the final mix reads them without a second product).
    """
    o, n = feats.ops, len(feats)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    side = block_side(budget_bytes, feats.dtype.itemsize)
    state = _Pass(feats, capacity, side)
    pairs = _block_pairs(n, side, capacity)
    left, flops = None, 0.0
    with progress_bar(total=len(pairs), enabled=progress, desc="re-rank: neighbours", unit="block") as bar:
        for a, b, c, e in pairs:
            if left is None or left[0] != (a, b):
                left = ((a, b), feats.left(a, b))
            d = feats.product(left[1], c, e, out=state.product[: (b - a) * (e - c)].reshape(b - a, e - c))
            state.scan(d, a, b, c, e, query_gallery)
            flops += 2.0 * (b - a) * (e - c) * feats.dim
            bar.update(1)
    del state.product, state.mask
    o.sync()
    timings["neighbours: block products"] = time.perf_counter() - start
    start = time.perf_counter()
    rowmax = o.clamp_min(state.rowmax + state.shift, 0)
    lists = _exact_boundaries(feats, state, rowmax, boundaries, budget_bytes)
    o.sync()
    timings["neighbours: exact re-check"] = time.perf_counter() - start
    lists.timings, lists.product_flops = timings, flops
    log.info(
        "neighbours of %d images: blocks of %d; %d distances re-checked in float64, %d rows redone whole",
        n, side, lists.rechecked, lists.full_rows,
    )  # fmt: skip
    return lists


def _block_pairs(n: int, side: int, capacity: int) -> list[tuple[int, int, int, int]]:
    """(rows a..b-1, columns c..e-1) of the upper triangle, every diagonal block first (where rows meet
    their first columns). A diagonal block is cut in two halves and the block between them, so its
    mirror half is not computed: a quarter of its product saved, while each half still holds more
    columns than a row keeps."""
    diagonal, upper = [], []
    for a in range(0, n, side):
        b = min(a + side, n)
        m = (a + b) // 2
        if m - a > 2 * capacity:
            diagonal += [(a, m, a, m), (m, b, m, b)]
            upper.append((a, m, m, b))
        else:
            diagonal.append((a, b, a, b))
        upper += [(a, b, c, min(c + side, n)) for c in range(b, n, side)]
    return diagonal + upper


def _sorted_by_value_then_column(o, vals, cols):
    order = o.argsort_stable(cols, 1)
    vals, cols = o.take_along(vals, order), o.take_along(cols, order)
    order = o.argsort_stable(vals, 1)
    return o.take_along(vals, order), o.take_along(cols, order)


def _exact_dist(feats: FeatureRows, rows, cols, budget_bytes: int):
    """max(d, 0) in float64 for the pairs (rows, cols), a bounded number of pairs at a time."""
    o = feats.ops
    out = o.empty((len(rows),), np.float64)
    step = max(1, min(256, budget_bytes // max(1, 4 * feats.dim * 8)))  # small: in cache, no page faults
    for a in range(0, len(rows), step):
        out[a : a + step] = o.clamp_min(feats.pair_distances64(rows[a : a + step], cols[a : a + step]), 0)
    return out


def _exact_boundaries(
    feats: FeatureRows, state: _Pass, rowmax, boundaries, budget_bytes: int
) -> NeighbourLists:
    o, n, cap = feats.ops, state.n, state.capacity
    np_dtype = feats.dtype
    vals, cols = _sorted_by_value_then_column(o, state.vals, state.cols)
    del state.vals, state.cols
    err = error_bound(feats.dim, np_dtype, float(o.max(feats.sq64, 0)))
    bounds = [p for p in sorted(set(boundaries)) if 0 < p < cap]
    k = max(bounds, default=0)
    exact_row = o.full((n,), False, bool)
    full_rows = 0
    if cap < n and k:
        # a value the pass left out is at least the kept largest, up to the rounding of the shift
        slack = 8 * float(np.finfo(np_dtype).eps) * (feats.shift + float(o.max(feats.sq64, 0)))
        incomplete = vals[:, cap - 1] - slack <= vals[:, k - 1] + 2 * err
        rows = o.nonzero(incomplete)[0]
        full_rows = len(rows)
        if full_rows:
            v, c = _exact_full_rows(feats, rows, cap, budget_bytes)
            vals[rows], cols[rows] = o.cast(v, np_dtype), c
            exact_row[rows] = True
    norm = o.cast(o.clamp_min(rowmax, float(np.finfo(np_dtype).tiny)), np.float64)
    positions = o.arange(cap)[None, :]
    lows, highs, ambiguous = [], [], []
    need = o.full((n, cap), False, bool)
    for p in bounds:
        low = (vals < (vals[:, p] - 2 * err)[:, None]).sum(1)  # surely among the p nearest below this
        high = (vals <= (vals[:, p - 1] + 2 * err)[:, None]).sum(1)  # surely not from here on
        amb = (low < p) & (high > p) & ~exact_row
        need |= amb[:, None] & (positions >= low[:, None]) & (positions < high[:, None])
        lows.append(low), highs.append(high), ambiguous.append(amb)
    rr, qq = o.nonzero(need)
    tier = o.full((n, cap), 0, np.int64)
    if len(rr):
        key = _exact_dist(feats, rr, cols[rr, qq], budget_bytes)
        vals[rr, qq] = o.cast(key, np_dtype)
        key = key / norm[rr]
        for p, low, high, amb in zip(bounds, lows, highs, ambiguous, strict=True):
            inside = o.where(amb[:, None], positions < low[:, None], positions < p)
            sel = amb[rr] & (qq >= low[rr]) & (qq < high[rr])
            gr, gq, gk = rr[sel], qq[sel], key[sel]
            order = o.lexsort((cols[gr, gq], gk, gr))  # by row, then exact distance, then image index
            gr, gq = gr[order], gq[order]
            first = o.searchsorted(gr, gr)  # the rows' start within the sorted group entries
            rank = o.arange(len(gr)) - first
            chosen = rank < (p - low[gr])
            inside[gr[chosen], gq[chosen]] = True
            tier += ~inside
    else:
        for p in bounds:
            tier += positions >= p
    order = o.argsort_stable(tier, 1)
    return NeighbourLists(
        index=o.take_along(cols, order), distance=o.take_along(vals, order), rowmax=rowmax,
        rechecked=int(len(rr)), full_rows=full_rows,
    )  # fmt: skip


def _exact_full_rows(feats: FeatureRows, rows, cap: int, budget_bytes: int):
    """Rows whose doubtful zone the pass could not hold: their `cap` nearest against every image in
    float64 products, a bounded block at a time, then ordered by the exact distance, ties by index.

    Products leave rounding residues of about 1e-16 where the exact distance of duplicates is 0: a row
    with more exact ties than `cap` at a boundary may keep other tied images than the lowest-numbered."""
    o, n = feats.ops, len(feats)
    side = max(1, min(MAX_BLOCK, int(np.sqrt(budget_bytes / 40))))
    out_v = o.empty((len(rows), cap), np.float64)
    out_c = o.empty((len(rows), cap), np.int64)
    for a in range(0, len(rows), side):
        r = rows[a : a + side]
        left64 = feats.rows64(r)
        best_v = o.full((len(r), 0), np.inf, np.float64)
        best_c = o.full((len(r), 0), -1, np.int64)
        for c in range(0, n, max(side, cap)):
            e = min(c + max(side, cap), n)
            d = o.clamp_min(feats.block64(left64, r, c, e), 0)
            both_v = o.concat([best_v, d], 1)  # kept columns are all below c: ties keep them first
            both_c = o.concat([best_c, o.broadcast_rows(o.arange(c, e), len(r))], 1)
            idx = o.smallest_stable(both_v, min(cap, both_v.shape[1]))
            best_v, best_c = o.take_along(both_v, idx), o.take_along(both_c, idx)
        flat_r = o.repeat(r, cap) if len(r) else r
        exact = _exact_dist(feats, flat_r, best_c.reshape(-1), budget_bytes).reshape(len(r), cap)
        best_v, best_c = _sorted_by_value_then_column(o, exact, best_c)
        out_v[a : a + side], out_c[a : a + side] = best_v, best_c
    return out_v, out_c
