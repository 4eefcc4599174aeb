"""Every image's nearest neighbours and its farthest distance among all N images: one screening pass of
blocked matrix products, then exact decisions wherever a boundary the algorithm reads is in doubt.

The pass goes over the upper triangle of the N x N squared distances, a block of rows against a block
of columns at a time. Each product serves its rows and, transposed, its columns: half the products of
a row-by-row pass. Its values are screens: |value - exact distance| stays within a bound (ScreenBound),
the float32 products' own (`error_bound`) or, when the pass screens in bfloat16, the rigorous one of
screening.py. Per row the pass keeps
- near candidates: every image whose distance could be among the row's k nearest for the largest k the
  algorithm reads (k1 + 1), up to `capacity` of them: a window above the k-th smallest value seen so far;
- far candidates: every image whose distance could be the row's largest (the normaliser of its row).
After a row's first block only entries past its current thresholds are candidates, so a block's
selection is one comparison and a few sparse entries per row instead of a partition.

Re-ranking reads, for a few p (k2, round(k1/2) + 1 and k1 + 1), the set of each row's p nearest images,
ties broken by image index as a stable sort breaks them. After the pass the near candidates carry values
within `error_bound` of the exact distance: the pass's own float32 values, or, after bfloat16
screening, each candidate's distance computed again on its own (`canonical_distances`). Only an image
whose value lies within twice that bound of the p-th or (p+1)-th one can fall on either side of a
boundary: those distances, and only those, are computed again in float64 from the differences
(x_i - x_j) and decide it. A row whose kept candidates do not reach past the doubtful zone (many
near-exact ties: duplicate images) is redone whole, with float64 products and exact ties.

The values the later phases read, each row's maximum and the distances behind V's weights, come from
`canonical_distances`, a function of the two images alone: the answer is the same bit for bit whichever
precision screened and however the blocks fell (the query-gallery distances, which the final mix reads,
are the float32 products of the same blocks either way).

faiss is not used here: its k-NN search computes each product twice (no symmetry), keeps no row
maximum and breaks ties its own way; its block product measured slower than numpy's BLAS.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
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
#: Far candidates a row keeps: the images whose distance could be the row's largest. More than this
#: many within the bound of the largest (ties, or a crowded top within bfloat16's bound: about 1% of
#: rows held more than 16 on features of concentrated distances) send the row to an exact search.
FAR_CAPACITY = 64
#: Pairs `canonical_distances` computes at a time on torch: a fixed batch shape, since torch's
#: reductions may choose their order by shape.
PAIR_CHUNK = {"torch": 256, "cuda": 8192}
#: Threads of numpy's pair computations: at most two, the cores this code is measured on.
_THREADS = 2

_U64 = float(np.finfo(np.float64).eps) / 2


@dataclass
class NeighbourLists:
    """Row i's `capacity` nearest candidates: `index[i, :p]` is the exact set of its p nearest images for
    every p in the boundaries asked for, each of those tiers in image order (-1: no candidate);
    `distance` holds their `canonical_distances` where known (NaN elsewhere; None after float32
    screening, whose values are the blocks'); `rowmax` is each row's largest canonical distance."""

    index: object
    distance: object
    rowmax: object
    rechecked: int = 0
    full_rows: int = 0
    far_rows: int = 0
    recomputed: int = 0
    timings: dict = field(default_factory=dict)
    product_flops: float = 0.0
    bf16_flops: float = 0.0


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
    per_term = ERROR_LAMBDA * np.sqrt(dim) * u + (dim + 2) * _U64
    return 1.01 * (4 * per_term + 12 * u) * max(float(max_sq), float(np.finfo(np.float64).tiny))


def block_side(budget_bytes: int, itemsize: int) -> int:
    per_element = 2 * itemsize + _BLOCK_OVERHEAD
    return int(max(1, min(MAX_BLOCK, np.sqrt(max(budget_bytes, 1) / per_element))))


def canonical_distances(feats: FeatureRows, rows, cols):
    """max(d, 0) of the pairs (rows, cols) in the work dtype, each pair computed alone from its two rows,
    the lower index first, in batches of a fixed shape: the same bits whoever asks and in what company."""
    o, n = feats.ops, len(feats)
    if len(rows) == 0:
        return o.empty((0,), feats.dtype)
    keys, inverse = o.unique_inverse(o.minimum(rows, cols) * n + o.maximum(rows, cols))
    return _canonical_of_keys(feats, keys)[inverse]


def _canonical_of_keys(feats: FeatureRows, keys):
    """canonical_distances of the pairs lo * N + hi (lo <= hi), given sorted and unique."""
    o, n = feats.ops, len(feats)
    lo, hi = keys // n, keys % n
    out = o.empty((len(keys),), feats.dtype)
    if o.name == "numpy":  # runs of one row; two threads take halves (the gathers release the GIL)
        cut = [
            0,
            *(int(np.searchsorted(lo, lo[len(lo) * t // _THREADS])) for t in range(1, _THREADS)),
            len(lo),
        ]

        def part(t: int) -> None:
            s, e = cut[t], cut[t + 1]
            out[s:e] = np.maximum(feats.pair_distances_runs(lo[s:e], hi[s:e]), 0)

        if len(lo) < 4096:
            for t in range(_THREADS):
                part(t)
        else:
            with ThreadPoolExecutor(_THREADS) as pool:
                list(pool.map(part, range(_THREADS)))
        return out
    chunk = PAIR_CHUNK["cuda" if o.device.type == "cuda" else "torch"]
    for s in range(0, len(keys), chunk):
        i, j = lo[s : s + chunk], hi[s : s + chunk]
        m = len(i)
        if m < chunk:
            i = o.concat([i, o.full((chunk - m,), 0, np.int64)])
            j = o.concat([j, o.full((chunk - m,), 0, np.int64)])
        out[s : s + m] = o.clamp_min(feats.pair_distances(i, j), 0)[:m]
    return out


def release_freed_memory() -> None:
    """Hand the allocator's freed pages back to the system (glibc's malloc_trim; a no-op without glibc):
    the blocked phases free and allocate arrays of many sizes, and glibc kept what they freed in the
    process's resident set, 300 MB of it at OPReID's size."""
    if _LIBC:
        _LIBC[0].malloc_trim(0)


def _libc():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return [libc] if hasattr(libc, "malloc_trim") else []
    except OSError:
        return []


_LIBC = _libc()


class ScreenBound:
    """How far the pass's values lie from the exact distances: for row i, a value v (a distance less
    FeatureRows.shift) means an exact distance within [lo(v), hi(v)] = v + shift -+ (row_error[i] +
    out_factor |v|); `exact_error` bounds the values the exact phase reads. Thresholds are computed in
    float64 and rounded outwards to the pass's dtype."""

    def __init__(self, ops, row_error, out_factor: float, shift: float, exact_error: float, dtype):
        self.ops, self.out_factor, self.shift, self.exact_error = ops, float(out_factor), shift, exact_error
        self.row_error = ops.asarray(np.asarray(row_error, dtype=np.float64))
        self.dtype = np.dtype(dtype)

    def _parts(self, v, rows):
        o = self.ops
        return (
            o.cast(v, np.float64),
            self.row_error if rows is None else self.row_error[rows],
            self.out_factor,
        )

    def lo(self, v, rows=None):
        v, e, k = self._parts(v, rows)
        return self.ops.where(v >= 0, v * (1 - k), v * (1 + k)) + (self.shift - e)

    def hi(self, v, rows=None):
        v, e, k = self._parts(v, rows)
        return self.ops.where(v >= 0, v * (1 + k), v * (1 - k)) + (self.shift + e)

    def near_threshold(self, vk, rows=None):
        """Values below it (strictly) could be among the k nearest, given vk, the row's k-th smallest
        value so far: lo(v) <= hi(vk) + 3 exact_error (room for the exact phase's own bound)."""
        o = self.ops
        _, e, k = self._parts(vk, rows)
        t = self.hi(vk, rows) + 3 * self.exact_error - self.shift + e  # v - k|v| = t
        w = o.where(t >= 0, t / (1 - k), t / (1 + k))
        return o.next_up(o.cast(w, self.dtype))

    def far_threshold(self, vmax, rows=None):
        """Values above it (strictly) could be the row's largest exact or canonical distance, given vmax,
        its largest value so far: hi(v) >= lo(vmax) - 2 exact_error."""
        o = self.ops
        _, e, k = self._parts(vmax, rows)
        t = self.lo(vmax, rows) - 2 * self.exact_error - self.shift - e  # v + k|v| = t
        h = o.where(t >= 0, t / (1 + k), t / (1 - k))
        return o.next_down(o.cast(h, self.dtype))


def _merge(o, store_v, store_c, rows, cols, vals):
    """Keep, per row, the `capacity` smallest of what it holds and the new (row, column, value)s, the new
    ones in ascending row order. Returns the rows touched and their kept values."""
    cap = store_v.shape[1]
    first = int(rows[0])
    counts = o.bincount(rows - first)
    uniq = o.nonzero(counts)[0]
    counts = counts[uniq]
    uniq += first
    inverse = o.repeat(o.arange(len(uniq)), counts)
    pos = o.arange(len(rows)) - o.repeat(o.cumsum(counts) - counts, counts) + cap
    width = cap + int(counts.max())
    dv = o.full((len(uniq), width), np.inf, store_v.dtype)
    dc = o.full((len(uniq), width), -1, np.int64)
    dv[:, :cap], dc[:, :cap] = store_v[uniq], store_c[uniq]
    dv[inverse, pos], dc[inverse, pos] = vals, cols
    kept, idx = o.smallest(dv, cap)
    store_v[uniq], store_c[uniq] = kept, o.take_along(dc, idx)
    return uniq, kept


class _Pass:
    """The pass's running state: per row the kept near candidates and the
    threshold below which a value joins them, and the far candidates (kept negated, as the smallest)
    with the threshold above which a value joins them. Values are distances less FeatureRows.shift."""

    def __init__(self, feats: FeatureRows, ops, capacity: int, kmax: int, bound: ScreenBound, side: int):
        o, n, dtype = ops, len(feats), feats.dtype
        self.ops, self.feats, self.n, self.capacity, self.kmax, self.bound = (
            o,
            feats,
            n,
            capacity,
            kmax,
            bound,
        )
        self.vals = o.full((n, capacity), np.inf, dtype)
        self.cols = o.full((n, capacity), -1, np.int64)
        self.thr = o.full((n,), np.inf, dtype)
        fcap = min(FAR_CAPACITY, n)
        self.far_vals = o.full((n, fcap), np.inf, dtype)
        self.far_cols = o.full((n, fcap), -1, np.int64)
        self.far_thr = o.full((n,), -np.inf, dtype)
        # one block's product and comparison mask, reused: fresh pages for every block cost more
        self.product = o.empty((min(side, n) ** 2,), dtype)
        self.mask = o.empty((min(side, n) ** 2,), bool)

    def block_buffer(self, rows: int, cols: int):
        return self.product[: rows * cols].reshape(rows, cols)

    def _first_thresholds(self, d, a: int):
        """Thresholds of rows meeting their first block (whole rows of it, finished)."""
        o, cap, k = self.ops, self.capacity, self.kmax
        rows = o.arange(a, a + d.shape[0])
        width = d.shape[1]
        if k == 0 or width < k:
            near = o.full((d.shape[0],), np.inf, self.feats.dtype)
        elif width <= cap:
            near = self.bound.near_threshold(o.kth_smallest(d, k), rows)
        else:
            kth, capth = o.kth_smallest2(d, k, cap)
            near = o.minimum(o.next_up(capth), self.bound.near_threshold(kth, rows))
        return near, self.bound.far_threshold(o.max(d, 1), rows)

    def scan(self, d, a: int, b: int, c: int, e: int, query_gallery=None, finished: bool = False) -> None:
        """Rows a..b-1 meet columns c..e-1 (a product, finished here unless `finished`) and, unless the
        block is diagonal, columns c..e-1 meet rows a..b-1. Every row meets its diagonal block first."""
        o, f = self.ops, self.feats
        diagonal = c == a
        if diagonal:  # the k-th smallest needs whole rows of the finished block
            if not finished:
                f.finish(d, a, b, c, e)
            tr, hr = self._first_thresholds(d, a)
        else:
            tr, tc = self.thr[a:b], self.thr[c:e]
            hr, hc = self.far_thr[a:b], self.far_thr[c:e]
        step = o.scan_rows or (b - a)
        below = self.mask[: (b - a) * (e - c)].reshape(b - a, e - c)
        far = ([], [], [])
        for r0 in range(0, b - a, step):
            r1 = min(r0 + step, b - a)
            part, into = d[r0:r1], below[r0:r1]
            if not diagonal and not finished:
                f.finish(part, a + r0, a + r1, c, e)
            o.less(part, tr[r0:r1, None], out=into)
            # far candidates: in the rows and columns whose maximum here passes their threshold (few, once
            # a row has seen a few blocks), taken while the piece is in cache
            top = o.max(part, 1)
            sel = o.nonzero(top > hr[r0:r1])[0]
            if len(sel):
                sub = part if len(sel) == r1 - r0 else part[sel]
                rr, cc = o.nonzero(sub > hr[r0:r1][sel][:, None])
                far[0].append(sel[rr] + (a + r0)), far[1].append(cc + c), far[2].append(sub[rr, cc])
            if not diagonal:
                into |= part < tc[None, :]
                sel = o.nonzero(o.max(part, 0) > hc)[0]
                if len(sel):
                    sub = part[:, sel]
                    rr, cc = o.nonzero(sub > hc[sel][None, :])
                    far[0].append(sel[cc] + c), far[1].append(rr + (a + r0)), far[2].append(sub[rr, cc])
        if query_gallery is not None:
            _fill_query_gallery(query_gallery, d, a, b, c, e, f.num_query)
        rr, cc = o.nonzero_sparse(below)
        if len(rr):
            v = d[rr, cc]
            mine = v < tr[rr]
            rows, cols, vals = [rr[mine] + a], [cc[mine] + c], [v[mine]]
            if not diagonal:  # by target row, after the rows a..b-1 (c >= b): merge takes rows in order
                theirs = o.nonzero(v < tc[cc])[0]
                theirs = theirs[o.argsort_small(cc[theirs], e - c)]
                rows.append(cc[theirs] + c), cols.append(rr[theirs] + a), vals.append(v[theirs])
            self._merge_near(o.concat(rows), o.concat(cols), o.concat(vals))
        if far[0]:
            rows, cols, vals = (o.concat(x) for x in far)
            order = o.argsort_stable(rows)
            self._merge_far(rows[order], cols[order], vals[order])

    def _merge_near(self, rows, cols, vals) -> None:
        o = self.ops
        for s, e in _pieces(o, rows):
            uniq, kept = _merge(o, self.vals, self.cols, rows[s:e], cols[s:e], vals[s:e])
            thr = o.max(kept, 1)  # a full row admits only values below its largest
            if 0 < self.kmax <= self.capacity:
                thr = o.minimum(thr, self.bound.near_threshold(o.kth_smallest(kept, self.kmax), uniq))
            self.thr[uniq] = thr

    def _merge_far(self, rows, cols, vals) -> None:
        o = self.ops
        for s, e in _pieces(o, rows):
            uniq, kept = _merge(o, self.far_vals, self.far_cols, rows[s:e], cols[s:e], -vals[s:e])
            # kept holds negated values: its smallest is the largest value, its largest (-inf when the row
            # is not full) the smallest one a full row would have to beat
            thr = self.bound.far_threshold(o.max(-kept, 1), uniq)
            self.far_thr[uniq] = o.maximum(thr, -o.max(kept, 1))


#: Rows merged at a time: the merge's temporaries hold (capacity + new entries) per row.
_MERGE_ROWS = 1024


def _pieces(o, rows):
    """(start, end) of consecutive pieces of the ascending `rows`, each spanning at most _MERGE_ROWS rows."""
    if o.name != "numpy" or len(rows) == 0 or int(rows[-1]) - int(rows[0]) < _MERGE_ROWS:
        return [(0, len(rows))]
    first = int(rows[0])
    edges = np.arange(first + _MERGE_ROWS, int(rows[-1]) + 1, _MERGE_ROWS)
    cuts = [0, *np.searchsorted(rows, edges).tolist(), len(rows)]
    return [(s, e) for s, e in zip(cuts[:-1], cuts[1:], strict=True) if e > s]


def _fill_query_gallery(query_gallery, d, a: int, b: int, c: int, e: int, nq: int) -> None:
    """The final mix's original distances, still without the shift, from a float32 block."""
    if a < nq and e > nq:
        q1, g0 = min(b, nq), max(c, nq)
        query_gallery[a:q1, g0 - nq : e - nq] = d[: q1 - a, g0 - c :]


def nearest_neighbours(
    feats: FeatureRows, capacity: int, boundaries: tuple[int, ...], budget_bytes: int, *,
    side_budget: int | None = None, split_capacity: int | None = None, query_gallery=None, screen=None,
    progress: bool = False,
) -> NeighbourLists:  # fmt: skip
    """Each row's `capacity` nearest images by squared distance, exact at every p in `boundaries` (each
    below `capacity`, or N), and each row's largest distance.

    `screen` (a screening.Bf16Products) screens in bfloat16; the blocks that fill `query_gallery` (the
    unclamped query-gallery distances less FeatureRows.shift, for the final mix) are float32 either way.
    `side_budget` sets the blocks' side and `split_capacity` how diagonal blocks are cut, so that both
    precisions compute the same float32 blocks; `budget_bytes` bounds the other working arrays.
    """
    o, n = feats.ops, len(feats)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    bounds = [p for p in sorted(set(boundaries)) if 0 < p < capacity]
    kmax = max(bounds, default=0)
    max_sq = float(o.max(feats.sq64, 0)) if n else 0.0
    err = error_bound(feats.dim, feats.dtype, max_sq)
    row_error = np.full(n, err) if screen is None else screen.row_error
    out_factor = 0.0 if screen is None else screen.out_factor
    bound = ScreenBound(o, row_error, out_factor, feats.shift, err, feats.dtype)
    side = block_side(side_budget or budget_bytes, feats.dtype.itemsize)
    state = _Pass(feats, o, capacity, kmax, bound, side)
    pairs = _block_pairs(n, side, max(capacity, split_capacity or 0))
    left, flops, bf16_flops, nq = {}, 0.0, 0.0, feats.num_query
    with progress_bar(total=len(pairs), enabled=progress, desc="re-rank: neighbours", unit="block") as bar:
        for a, b, c, e in pairs:
            in_float32 = screen is None or (query_gallery is not None and a < nq and e > nq)
            key = (a, b, in_float32)
            if key not in left:
                if left and a != next(iter(left))[0]:
                    release_freed_memory()
                left = {key: feats.left(a, b) if in_float32 else screen.left(a, b)}
            out = state.block_buffer(b - a, e - c)
            if in_float32:  # the float32 products are the same blocks, finished the same way, either way
                state.scan(feats.product(left[key], c, e, out=out), a, b, c, e, query_gallery)
            else:
                state.scan(screen.product(left[key], a, b, c, e, out), a, b, c, e, finished=True)
                bf16_flops += 2.0 * (b - a) * (e - c) * feats.dim
            flops += 2.0 * (b - a) * (e - c) * feats.dim
            bar.update(1)
    del state.product, state.mask, left
    o.sync()
    timings["neighbours: block products"] = time.perf_counter() - start
    start = time.perf_counter()
    lists = _exact_lists(feats, state, bounds, err, budget_bytes, canonical=screen is not None)
    o.sync()
    timings["neighbours: exact re-check"] = time.perf_counter() - start
    lists.timings, lists.product_flops, lists.bf16_flops = timings, flops, bf16_flops
    log.info(
        "neighbours of %d images: blocks of %d%s; %d distances recomputed, %d re-checked in float64, "
        "%d rows redone whole, %d maxima searched whole",
        n, side, "" if screen is None else " screened in bfloat16", lists.recomputed, lists.rechecked,
        lists.full_rows, lists.far_rows,
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


def _sorted_by_value_then_column(o, vals, cols, *more):
    order = o.argsort_stable(cols, 1)
    vals, cols = o.take_along(vals, order), o.take_along(cols, order)
    more = [o.take_along(m, order) for m in more]
    order = o.argsort_stable(vals, 1)
    return (o.take_along(vals, order), o.take_along(cols, order), *(o.take_along(m, order) for m in more))


def _exact_dist(feats: FeatureRows, rows, cols, budget_bytes: int):
    """max(d, 0) in float64 for the pairs (rows, cols), a bounded number of pairs at a time."""
    o = feats.ops
    out = o.empty((len(rows),), np.float64)
    step = max(1, min(256, budget_bytes // max(1, 4 * feats.dim * 8)))  # small: in cache, no page faults
    for a in range(0, len(rows), step):
        out[a : a + step] = o.clamp_min(feats.pair_distances64(rows[a : a + step], cols[a : a + step]), 0)
    return out


#: Rows the exact phase takes at a time: its temporaries are a few (rows, capacity) arrays.
_EXACT_ROWS = 4096


def _exact_lists(feats: FeatureRows, state: _Pass, bounds, err: float, budget_bytes: int,
                 canonical: bool) -> NeighbourLists:  # fmt: skip
    """From the pass's candidates to exact sets at the boundaries and canonical row maxima, a bounded
    number of rows at a time."""
    o, n, cap = feats.ops, state.n, state.capacity
    dtype, shift, bound = feats.dtype, feats.shift, state.bound
    vals, cols, thr = state.vals, state.cols, state.thr
    far_vals, far_cols = state.far_vals, state.far_cols
    del state.vals, state.cols, state.far_vals, state.far_cols
    rowmax, far_rows, recomputed = _row_maxima(feats, bound, -far_vals, far_cols, err, budget_bytes)
    del far_vals, far_cols
    table = None
    if canonical:  # the candidates' own distances replace the screen's values; a pair and its mirror once
        table = _canonical_table(feats, vals, cols, thr)
        recomputed += len(table[0])
    index = o.empty((n, cap), np.int64)
    canon = o.full((n, cap), np.nan, dtype) if canonical else None
    rechecked = full_rows = 0
    for s in range(0, n, _EXACT_ROWS):
        e = min(s + _EXACT_ROWS, n)
        v, c = _sorted_by_value_then_column(o, vals[s:e], cols[s:e])
        # anything the pass did not keep has a value of at least `floor`: it was refused below the row's
        # threshold or pushed out of a full row
        floor = o.minimum(thr[s:e], v[:, cap - 1])
        live = (c >= 0) & (v < thr[s:e][:, None])  # else kept before the window narrowed: past every boundary
        c = o.where(live, c, -1)
        if canonical:
            rr, qq = o.nonzero(live)
            known = o.full((e - s, cap), np.nan, dtype)
            known[rr, qq] = _lookup(feats, table, rr + s, c[rr, qq])
            exact_vals = o.where(live, known, np.inf)
        else:
            known = None
            exact_vals = o.where(live, o.clamp_min(v + shift, 0), np.inf)
        idx, known, r, f = _exact_boundaries(
            feats, exact_vals, c, known, bound.lo(floor, o.arange(s, e)), rowmax[s:e], err, bounds,
            budget_bytes, first=s,
        )  # fmt: skip
        index[s:e] = idx
        if canonical:
            canon[s:e] = known
        rechecked, full_rows = rechecked + r, full_rows + f
    release_freed_memory()
    return NeighbourLists(
        index=index, distance=canon, rowmax=rowmax, rechecked=rechecked, full_rows=full_rows,
        far_rows=far_rows, recomputed=recomputed,
    )  # fmt: skip


def _canonical_table(feats: FeatureRows, vals, cols, thr):
    """Sorted unique keys lo * N + hi of the live candidate pairs and their canonical distances."""
    o, n = feats.ops, len(feats)
    parts = []
    for s in range(0, len(cols), _EXACT_ROWS):
        e = min(s + _EXACT_ROWS, len(cols))
        c = cols[s:e]
        rr, qq = o.nonzero((c >= 0) & (vals[s:e] < thr[s:e][:, None]))
        j = c[rr, qq]
        rr = rr + s
        parts.append(o.minimum(rr, j) * n + o.maximum(rr, j))
    keys = o.sort(o.concat(parts)) if parts else o.empty((0,), np.int64)
    del parts
    if len(keys):
        first = o.concat([o.full((1,), True, bool), keys[1:] != keys[:-1]])
        keys = keys[first]
    return keys, _canonical_of_keys(feats, keys)


def _lookup(feats: FeatureRows, table, rows, cols):
    keys, values = table
    n = len(feats)
    want = feats.ops.minimum(rows, cols) * n + feats.ops.maximum(rows, cols)
    return values[feats.ops.searchsorted(keys, want)]


def _row_maxima(feats: FeatureRows, bound: ScreenBound, far_vals, far_cols, err: float, budget_bytes: int):
    """Each row's largest canonical distance, from its far candidates; rows whose candidates may not
    hold it (more ties at the top than a row keeps) search every image."""
    o, n = feats.ops, len(feats)
    fcap = far_vals.shape[1]
    threshold = bound.far_threshold(o.max(far_vals, 1))
    rr, qq = o.nonzero((far_cols >= 0) & (far_vals > threshold[:, None]))
    values = o.full((n, fcap), -np.inf, feats.dtype)
    values[rr, qq] = canonical_distances(feats, rr, far_cols[rr, qq])
    rowmax = o.clamp_min(o.max(values, 1), 0)
    full = far_cols[:, fcap - 1] >= 0
    smallest = -o.max(-o.where(full[:, None], far_vals, np.inf), 1)
    overflow = o.nonzero(full & (smallest > threshold))[0]
    if len(overflow):
        rowmax[overflow] = _exact_far_rows(feats, overflow, err, budget_bytes)
    return rowmax, len(overflow), len(rr)


def _float64_error(feats: FeatureRows) -> float:
    """A worst-case bound of block64's error: D-term float64 products and three additions."""
    o = feats.ops
    max_sq = float(o.max(feats.sq64, 0)) if len(feats) else 0.0
    return (4 * feats.dim + 16) * _U64 * max(max_sq, 1.0 if feats.scale64 is not None else max_sq, 1e-300)


def _exact_far_rows(feats: FeatureRows, rows, err: float, budget_bytes: int):
    """The largest canonical distance of each row in `rows`, against every image: float64 products find
    the images within the bounds of the largest, then their canonical distances decide."""
    o, n = feats.ops, len(feats)
    err64 = _float64_error(feats)
    side = max(1, min(MAX_BLOCK, int(np.sqrt(budget_bytes / 40))))
    out = o.empty((len(rows),), feats.dtype)
    for a in range(0, len(rows), side):
        r = rows[a : a + side]
        left64 = feats.rows64(r)
        top = o.full((len(r),), -np.inf, np.float64)
        for c in range(0, n, side):
            top = o.maximum(top, o.max(feats.block64(left64, r, c, min(c + side, n)), 1))
        best = o.full((len(r),), 0, feats.dtype)
        for c in range(0, n, side):
            d = feats.block64(left64, r, c, min(c + side, n))
            ii, jj = o.nonzero(d >= (top - 2 * err64 - 2 * err)[:, None])
            v = o.full((len(r),), -np.inf, feats.dtype)
            if len(ii):
                cand = o.full((len(r), int(o.bincount(ii, minlength=len(r)).max())), -np.inf, feats.dtype)
                first = o.searchsorted(ii, ii)
                cand[ii, o.arange(len(ii)) - first] = canonical_distances(feats, r[ii], jj + c)
                v = o.max(cand, 1)
            best = o.maximum(best, v)
        out[a : a + side] = best
    return out


def _exact_boundaries(feats: FeatureRows, vals, cols, canon, floor, rowmax, err: float, bounds,
                      budget_bytes: int, first: int = 0):  # fmt: skip
    """Exact sets at each boundary from candidates whose values lie within `err` of the exact distances,
    anything not kept lying at `floor` or beyond. Returns the index (tiers in image order), the canonical
    distances alongside (or None), and how many distances were re-checked and rows redone whole. The
    arrays hold the rows first, first + 1, ..."""
    o, n, cap = feats.ops, vals.shape[0], vals.shape[1]
    np_dtype = feats.dtype
    more = () if canon is None else (canon,)
    vals, cols, *more = _sorted_by_value_then_column(o, vals, cols, *more)
    canon = more[0] if more else None
    k = max(bounds, default=0)
    exact_row = o.full((n,), False, bool)
    full_rows = 0
    if k:
        incomplete = floor <= o.cast(vals[:, k - 1], np.float64) + 2 * err
        rows = o.nonzero(incomplete)[0]
        full_rows = len(rows)
        if full_rows:
            v, c = _exact_full_rows(feats, rows + first, cap, budget_bytes)
            vals[rows], cols[rows] = o.cast(v, np_dtype), c
            if canon is not None:
                canon[rows] = np.nan
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
        key = _exact_dist(feats, rr + first, cols[rr, qq], budget_bytes) / norm[rr]
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
    # each tier in image order: a canonical order, whichever values placed the images
    total = len(feats)
    order = o.argsort_stable(tier * (total + 1) + o.where(cols >= 0, cols, total), 1)
    index = o.take_along(cols, order)
    canon = None if canon is None else o.take_along(canon, order)
    return index, canon, int(len(rr)), full_rows


def _exact_full_rows(feats: FeatureRows, rows, cap: int, budget_bytes: int):
    """Rows whose doubtful zone the pass could not hold: their `cap` nearest against every image, by
    exact distance, ties by index. float64 products find the `cap`-th smallest; every image within their
    bound of it is then measured exactly from the differences (duplicates tie at exactly 0)."""
    o, n = feats.ops, len(feats)
    err64 = _float64_error(feats)
    side = max(1, min(MAX_BLOCK, int(np.sqrt(budget_bytes / 40))))
    width = max(side, cap)
    out_v = o.empty((len(rows), cap), np.float64)
    out_c = o.empty((len(rows), cap), np.int64)
    for a in range(0, len(rows), side):
        r = rows[a : a + side]
        left64 = feats.rows64(r)
        best = o.full((len(r), 0), np.inf, np.float64)
        for c in range(0, n, width):
            d = o.clamp_min(feats.block64(left64, r, c, min(c + width, n)), 0)
            both = o.concat([best, d], 1)
            best = o.smallest(both, min(cap, both.shape[1]))[0]
        limit = o.max(best, 1) + 2 * err64
        best_v = o.full((len(r), 0), np.inf, np.float64)
        best_c = o.full((len(r), 0), -1, np.int64)
        for c in range(0, n, width):
            d = o.clamp_min(feats.block64(left64, r, c, min(c + width, n)), 0)
            ii, jj = o.nonzero(d <= limit[:, None])
            cand_v = o.full((len(r), int(o.bincount(ii, minlength=len(r)).max())), np.inf, np.float64)
            cand_c = o.full(tuple(cand_v.shape), -1, np.int64)
            slot = o.arange(len(ii)) - o.searchsorted(ii, ii)
            cand_v[ii, slot] = _exact_dist(feats, r[ii], jj + c, budget_bytes)
            cand_c[ii, slot] = jj + c
            both_v = o.concat([best_v, cand_v], 1)  # kept columns are all below c: ties keep them first
            both_c = o.concat([best_c, cand_c], 1)
            idx = o.smallest_stable(both_v, min(cap, both_v.shape[1]))
            best_v, best_c = o.take_along(both_v, idx), o.take_along(both_c, idx)
        out_v[a : a + side], out_c[a : a + side] = best_v, best_c
    return out_v, out_c
