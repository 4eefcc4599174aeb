"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) in blocks, with working memory bounded by a budget.

The anchors (fast-reid's and torchreid's `re_ranking`) hold three (Q+G)^2 arrays at once: the
distances, their full argsort and a dense V; about 8 GB each in float32 at OPReID's 45k images. The
algorithm only ever reads each row's k1+1 nearest neighbours, a sparse V and, for the final mix, the
Q x G block of the original distances. Here, with N = Q + G images:

1. one pass of blocked matrix products over the upper triangle of the N x N distances keeps each
   row's maximum and its nearest candidates, exact at the boundaries the algorithm reads (ties by image
   index, the order a stable sort gives; neighbours.py);
2. the k-reciprocal sets, their expansion and the Gaussian weights make V a sparse matrix (the
   weights' distances come from the candidates kept in 1);
3. local query expansion (the mean of the k2 nearest rows of V) keeps V sparse;
4. re-ranked query rows are computed when asked for, a block at a time: the Jaccard distance through
   an inverted index of V's gallery rows, mixed with the original distance as (1 - lambda) d_J + lambda d.

`memory_mb` bounds the blocks, and the Q x G original distances that 1 computes anyway, kept for 4
when they fit in half of it (else 4 computes them again, many query rows at a time); what is kept for
every image is O(N (D + k1 k2)): the caller's features (not copied), the neighbour lists and the
sparse V. The same code runs on numpy (device "cpu") or on torch on any device (array_ops.py).

The distance is Zhong's: the squared Euclidean distance between the features the metric compares
(L2-normalised for cosine, where it is 2 - 2 cos), each row divided by its maximum over all N.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.metrics.distances import METRICS, FeatureDistances
from benchmarks.rerank.array_ops import array_ops, top_k_stable
from benchmarks.rerank.features import FeatureRows
from benchmarks.rerank.neighbours import (
    block_side,
    canonical_distances,
    nearest_neighbours,
    release_freed_memory,
)
from benchmarks.rerank.screening import Bf16Products, choose_precision
from benchmarks.rerank.settings import DEVICE_HELP, RerankError, RerankSettings

__all__ = [
    "DEVICE_HELP", "KReciprocalReranker", "RerankError", "RerankSettings", "rerank_distances", "rerank_matrix",
    "top_k_stable",
]  # fmt: skip

log = logging.getLogger(__name__)

#: Bytes per (query, gallery) element of a re-ranked block, beyond two of the working dtype (the
#: original distances and a scaled copy): the overlap, a bincount and the Jaccard distance, in float64.
_ROW_BYTES = 8 * 3
#: Bytes per gathered (query, shared neighbour, gallery) triple of the Jaccard step.
_TRIPLE_BYTES = 56
#: Candidates kept per row, as a multiple of the k1 + 1 nearest, by screening precision: a row whose
#: doubtful zone at a boundary outgrows them is redone whole. bfloat16's zone is wider (about 55 images
#: at OPReID's size, on features whose distances concentrate as a 2048-dimensional embedding's do).
_EXTRA_CANDIDATES = {"float32": 2, "bfloat16": 6}
#: The budget's share for one step's working arrays. Larger steps gain no speed; the rest is left to
#: the Q x G original distances (kept when they fit in half the budget) and to the O(N k1 k2) state, so
#: that the whole stays within the budget beside the features.
_WORK_SHARE = 4


@dataclass(frozen=True)
class _Sparse:
    """Rows of a sparse matrix: row i holds columns indices[indptr[i]:indptr[i+1]] (ascending)."""

    indptr: object
    indices: object
    data: object

    @property
    def nnz(self) -> int:
        return len(self.indices)


def _csr(o, rows, cols, data, num_rows: int) -> _Sparse:
    """From entries already sorted by (row, column)."""
    indptr = o.full((num_rows + 1,), 0, np.int64)
    indptr[1:] = o.cumsum(o.bincount(rows, minlength=num_rows))
    return _Sparse(indptr, o.cast(cols, np.int64), data)


def _expand(o, indptr, starts_of):
    """Positions of every entry of the rows `starts_of` (in order), and the row count of each."""
    starts = indptr[starts_of]
    lengths = indptr[starts_of + 1] - starts
    total = int(lengths.sum())
    offsets = o.cumsum(lengths) - lengths
    pos = o.arange(total) - o.repeat(offsets - starts, lengths)
    return pos, lengths


class KReciprocalReranker:
    """The state re-ranking keeps for every image; `rows(a, b)` gives re-ranked query rows a..b-1.
    `timings` holds the seconds each phase took so far, `product_flops` the matrix products' work.

    Build it with `rerank_distances`.
    """

    def __init__(self, query: np.ndarray, gallery: np.ndarray, metric: str, settings: RerankSettings,
                 progress: bool = False):  # fmt: skip
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        settings.check()
        self.settings, self.metric = settings, metric
        self.ops = o = array_ops(settings.device)
        dtype = np.dtype(np.float64) if np.float64 in (query.dtype, gallery.dtype) else np.dtype(np.float32)
        self.dtype = dtype
        self.num_query, self.num_gallery = len(query), len(gallery)
        n = self.num_query + self.num_gallery
        self.num_images = n
        self.timings: dict[str, float] = {}
        self._budget = settings.memory_mb << 20
        self._check_budget()
        self._progress = progress

        qg_bytes = self.num_query * self.num_gallery * dtype.itemsize
        with self._phase("screening choice"):
            dim = query.shape[1]
            bf16_flops = float(n) * n * dim  # less the query-gallery blocks, float32 either way where kept
            if qg_bytes <= self._budget // 2:
                bf16_flops -= 2.0 * self.num_query * self.num_gallery * dim
            #: the screening precision that ran, why, and torch's resident bytes its import added
            self.precision = choose_precision(
                settings.precision, settings.device, n, dim, self._budget, bf16_flops
            )
        with self._phase("features"):
            self._f = FeatureRows(o, query, gallery, dtype, metric)
        self._qg, self._slab = None, (0, ())
        # The blocks' geometry (the side, which query-gallery distances are kept, the slabs) comes from the
        # whole budget, whatever the precision: the float32 products, and so the answer, are then the
        # same bit for bit. torch's resident size, where screening imported it, comes out of the share
        # of the other working arrays.
        self._geometry = self._budget // _WORK_SHARE
        if qg_bytes <= self._budget // 2:  # else each block of re-ranked rows computes its product again
            self._qg = o.empty((self.num_query, self.num_gallery), dtype)
            self._geometry = min(self._geometry, (self._budget - qg_bytes) // 2)
        s = settings
        w1, w2, k2 = min(s.k1 + 1, n), min(s.half_k1 + 1, n), min(s.k2, n)
        screen = None
        if self.precision.precision == "bfloat16":
            with self._phase("features"):
                tops = o if o.name == "torch" else array_ops("torch-cpu")
                screen = Bf16Products(self._f, tops, float32_blocks=self._qg is not None)
        left = max(self._budget - self.precision.torch_bytes, self._budget // 4)
        self._work = min(self._geometry, left // _WORK_SHARE if self._qg is None else (left - qg_bytes) // 2)
        self._work = max(self._work, 1 << 20)
        capacity = min(n, max(w1, k2) * _EXTRA_CANDIDATES[self.precision.precision])
        # the float32 blocks (those holding query-gallery distances, when kept) must fall the same way
        # with either precision; a pass of bfloat16 blocks only may take the smaller working share
        side_budget = self._work if screen is not None and self._qg is None else self._geometry
        lists = nearest_neighbours(
            self._f, capacity, (w1, w2, k2), self._work, side_budget=side_budget,
            split_capacity=max(w1, k2) * max(_EXTRA_CANDIDATES.values()), query_gallery=self._qg,
            screen=screen, progress=progress,
        )  # fmt: skip
        del screen
        self.timings.update(lists.timings)
        #: floating-point operations of the matrix products so far: the floor the BLAS sets, and the part
        #: of them in bfloat16
        self.product_flops, self.bf16_flops = lists.product_flops, lists.bf16_flops
        self._rowmax = o.clamp_min(lists.rowmax, float(np.finfo(dtype).tiny))
        p = self.precision
        self.backend = (
            f"{'numpy' if o.name == 'numpy' else f'torch on {o.device}'} {dtype.name} blocks of "
            f"{block_side(side_budget, dtype.itemsize)} screened in {p.precision} ({settings.precision}: "
            f"{p.reason}); {lists.recomputed} distances recomputed, {lists.rechecked} re-checked in "
            f"float64, {lists.full_rows} rows redone whole"
        )
        v = self._weights(lists, w1, w2)
        if k2 > 1:
            with self._phase("query expansion"):
                v = self._query_expansion(v, lists.index[:, :k2])
        del lists
        with self._phase("inverted index"):
            end = int(v.indptr[self.num_query])
            self._query_rows = _Sparse(v.indptr[: self.num_query + 1], v.indices[:end], v.data[:end])
            self._inverted = self._gallery_index(v)
        log.info("re-ranking state for %d images: V %d entries; %s", n, v.nnz, self.backend)

    def _phase(self, name: str):
        return _Timer(self, name)

    # ---- sizes ----------------------------------------------------------------------------------
    @property
    def _query_row_bytes(self) -> int:
        """One re-ranked query row; the rows take half the budget, the Jaccard step's triples the other."""
        return 2 * self.num_gallery * (_ROW_BYTES + 2 * self.dtype.itemsize)

    def _rows_within(self, bytes_per_row: int) -> int:
        return max(1, self._work // max(bytes_per_row, 1))

    def _check_budget(self) -> None:
        need = max(self.num_images * (self.dtype.itemsize * 2 + 2), self._query_row_bytes)
        if need > self._budget:
            raise RerankError(
                f"re-ranking memory budget of {self.settings.memory_mb} MiB is below the "
                f"{-(-need // 2**20)} MiB one row of {self.num_images} images needs; raise --rerank-memory-mb"
            )

    # ---- 2. k-reciprocal sets, expansion, weights -----------------------------------------------
    def _reciprocal(self, fw, step: int):
        """-1 where fw[i, t] is not k-reciprocal (i not among fw's neighbours of it), else fw[i, t]."""
        o = self.ops
        out = o.full(tuple(fw.shape), -1, np.int64)
        for a in range(0, len(fw), step):
            f = fw[a : a + step]
            mine = o.arange(a, a + len(f))[:, None, None]
            out[a : a + step] = o.where((fw[f] == mine).any(2), f, -1)
        return out

    def _weights(self, lists, w1: int, w2: int) -> _Sparse:
        o, n = self.ops, self.num_images
        with self._phase("reciprocal sets"):
            step = self._rows_within(w1 * w2 * w1 * 2 + (w1 + w1 * w2) * 40)
            rec1 = self._reciprocal(lists.index[:, :w1], step)
            rec2 = self._reciprocal(lists.index[:, :w2], step)
        with self._phase("expansion"):
            size2 = (rec2 >= 0).sum(1)
            rows, cols = [], []
            for a in range(0, n, step):
                r1 = rec1[a : a + step]
                cand = rec2[o.clamp_min(r1, 0)]  # (B, w1, w2): each candidate's half-size reciprocal set
                shared = ((cand[..., None] == r1[:, None, None, :]) & (cand >= 0)[..., None]).any(3).sum(2)
                accept = (r1 >= 0) & (3 * shared > 2 * size2[o.clamp_min(r1, 0)])
                members = o.concat([r1, o.where(accept[..., None], cand, -1).reshape(len(r1), -1)], 1)
                members = o.sort(members, 1)
                keep = members >= 0
                keep[:, 1:] &= members[:, 1:] != members[:, :-1]
                rows.append(o.nonzero(keep)[0] + a)
                cols.append(members[keep])
            rows, cols = o.concat(rows), o.concat(cols)
            del rec1, rec2
        with self._phase("weights (sparse V)"):
            dist = self._distances_of(lists, rows, cols) / self._rowmax[rows]
            weight = o.exp(-dist)
            total = o.bincount(rows, weights=weight, minlength=n)
            weight = o.cast(weight / total[rows], self.dtype)
            return _csr(o, rows, cols, weight, n)

    def _distances_of(self, lists, rows, cols):
        """max(d, 0) of the pairs (rows, cols), canonical (neighbours.canonical_distances): from either
        image's candidates where the neighbour search computed them so, else computed here."""
        o, n = self.ops, self.num_images
        out = o.full((len(rows),), np.nan, self.dtype)
        found = o.full((len(rows),), False, bool)
        if lists.distance is not None:
            known = (lists.index >= 0) & (lists.distance == lists.distance)  # not NaN
            r, q = o.nonzero(known)
            keys = r * n + lists.index[r, q]
            order = o.argsort_stable(keys)
            keys, vals = keys[order], lists.distance[r, q][order]
            for a, b in ((rows, cols), (cols, rows)):  # canonical distances are symmetric
                if len(keys) == 0:
                    break
                want = a * n + b
                pos = o.clamp_max(o.searchsorted(keys, want), len(keys) - 1)
                hit = (keys[pos] == want) & ~found
                out[hit] = vals[pos[hit]]
                found |= hit
        miss = o.nonzero(~found)[0]
        out[miss] = canonical_distances(self._f, rows[miss], cols[miss])
        self.computed_pairs = len(miss)
        return out

    # ---- 3. local query expansion ---------------------------------------------------------------
    def _query_expansion(self, v: _Sparse, nearest) -> _Sparse:
        """Row i becomes the mean of the rows of its k2 nearest neighbours (itself included)."""
        o, n, k2 = self.ops, self.num_images, nearest.shape[1]
        per_row = max(1, int((v.indptr[1:] - v.indptr[:-1]).max())) * k2 * 40
        step = self._rows_within(per_row)
        rows, cols, data = [], [], []
        for a in range(0, n, step):
            nb = nearest[a : a + step]
            pos, lengths = _expand(o, v.indptr, nb.reshape(-1))
            local = o.repeat(o.repeat(o.arange(len(nb)), k2), lengths)
            key = local * n + v.indices[pos]
            uniq, inverse = o.unique_inverse(key)
            sums = o.bincount(inverse, weights=v.data[pos], minlength=len(uniq))
            rows.append(uniq // n + a)
            cols.append(uniq % n)
            data.append(o.cast(sums / k2, self.dtype))
        return _csr(o, o.concat(rows), o.concat(cols), o.concat(data), n)

    # ---- 4. Jaccard distance and the mix --------------------------------------------------------
    def _gallery_index(self, v: _Sparse) -> _Sparse:
        """V's gallery rows by column: for each image k, the gallery images j with V[j, k] > 0."""
        o, nq = self.ops, self.num_query
        start = int(v.indptr[nq])
        cols = v.indices[start:]
        rows = o.repeat(o.arange(self.num_gallery), v.indptr[nq + 1 :] - v.indptr[nq:-1])
        order = o.argsort_stable(cols)
        return _csr(o, cols[order], rows[order], v.data[start:][order], self.num_images)

    def _overlap(self, a: int, b: int):
        """sum_k min(V[i, k], V[j, k]) for queries a..b-1 against every gallery image j (float64)."""
        o, g = self.ops, self.num_gallery
        out = o.full(((b - a) * g,), 0, np.float64)
        q, inv = self._query_rows, self._inverted
        lo, hi = int(q.indptr[a]), int(q.indptr[b])
        local = o.repeat(o.arange(b - a), q.indptr[a + 1 : b + 1] - q.indptr[a:b])
        ks, vals = q.indices[lo:hi], q.data[lo:hi]
        lengths = inv.indptr[ks + 1] - inv.indptr[ks]
        ends = np.cumsum(o.to_numpy(lengths))
        sizes = np.asarray(o.to_numpy(lengths))
        budget = max(1, (self._work // 2) // _TRIPLE_BYTES)
        first = 0
        while first < len(ends):  # pieces of whole (query, k) entries; an entry holds at most G triples
            last = max(first + 1, int(np.searchsorted(ends, ends[first] - sizes[first] + budget, "right")))
            pos, counts = _expand(o, inv.indptr, ks[first:last])
            mins = o.minimum(o.repeat(vals[first:last], counts), inv.data[pos])
            flat = o.repeat(local[first:last], counts) * g + inv.indices[pos]
            out += o.bincount(flat, weights=mins, minlength=len(out))
            first = last
        return out.reshape(b - a, g)

    def _original_scaled(self, s: int, e: int):
        """lambda times rows s..e-1 of the Q x G original distances, each row divided by its maximum."""
        o, f = self.ops, self._f
        if self._qg is not None:
            block = self._qg[s:e] + f.shift
        else:
            block = self._slab_rows(s, e)
        block = o.clamp_min(block, 0)
        block *= (self.settings.lambda_value / self._rowmax[s:e])[:, None]
        return block

    def _slab_rows(self, s: int, e: int):
        """Rows s..e-1 of the original distances when they were not kept: computed a slab of many query
        rows at a time (a product of a few rows runs at half the BLAS's speed) while they are read in order."""
        f = self._f
        start, slab = self._slab
        if not (start <= s and e <= start + len(slab)):
            in_order = s == start + len(slab)
            rows = (self._geometry // 2) // (self.num_gallery * self.dtype.itemsize) if in_order else 0
            end = min(self.num_query, s + max(e - s, rows))
            slab = f.block(f.left(s, end), s, end, self.num_query, self.num_images)
            self._slab = start, slab = s, slab
            self.product_flops += 2.0 * (end - s) * self.num_gallery * f.dim
        return slab[s - start : e - start]

    def rows(self, a: int, b: int) -> np.ndarray:
        """Re-ranked distances of queries a..b-1 to every gallery image (lower is closer)."""
        o, keep = self.ops, 1 - self.settings.lambda_value
        out = np.empty((b - a, self.num_gallery), dtype=self.dtype)
        step = self._rows_within(self._query_row_bytes)
        for s in range(a, b, step):
            e = min(s + step, b)
            with self._phase("jaccard"):
                overlap = self._overlap(s, e)
            with self._phase("final mix"):  # (1 - lambda) (1 - o / (2 - o)) + lambda d, in place
                mixed = o.cast(overlap, self.dtype)
                del overlap
                below = 2 - mixed
                mixed *= -2 * keep
                mixed += 2 * keep
                mixed /= below
                mixed += self._original_scaled(s, e)
                out[s - a : e - a] = o.to_numpy(mixed)
        release_freed_memory()
        return out


#: Phases timed once per block of re-ranked rows.
_PER_BLOCK_PHASES = ("jaccard", "final mix")


class _Timer:
    """Adds the seconds a `with` block takes (device work included) to the reranker's timings."""

    def __init__(self, reranker: KReciprocalReranker, name: str):
        self.reranker, self.name = reranker, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.reranker.ops.sync()
        if self.name not in _PER_BLOCK_PHASES:  # handing pages back costs page faults to take them again
            release_freed_memory()
        timings = self.reranker.timings
        timings[self.name] = timings.get(self.name, 0.0) + time.perf_counter() - self.start


def rerank_distances(
    query: np.ndarray,
    gallery: np.ndarray,
    metric: str = "cosine",
    settings: RerankSettings | None = None,
    *,
    progress: bool = False,
) -> FeatureDistances:
    """Re-ranked Q x G distances as a row source (lower is closer), the way `feature_distances` gives
    the original ones: the scorer reads it a chunk of queries at a time, never whole."""
    return reranker_source(KReciprocalReranker(query, gallery, metric, settings or RerankSettings(),
                                               progress=progress))  # fmt: skip


def reranker_source(reranker: KReciprocalReranker) -> FeatureDistances:
    s = reranker.settings
    backend = (
        f"k-reciprocal re-ranking (k1={s.k1}, k2={s.k2}, lambda={s.lambda_value}; "
        f"{reranker.metric} features, {reranker.backend})"
    )
    return FeatureDistances(reranker.rows, False, backend, reranker.num_query, reranker.num_gallery)


def rerank_matrix(query: np.ndarray, gallery: np.ndarray, metric: str = "cosine",
                  settings: RerankSettings | None = None) -> np.ndarray:  # fmt: skip
    """The whole re-ranked Q x G matrix (for small sets; large ones should read `rerank_distances` rows)."""
    source = rerank_distances(query, gallery, metric, settings)
    return source.rows(0, source.num_query)
