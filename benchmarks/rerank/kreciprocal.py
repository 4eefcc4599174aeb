"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) in blocks, with working memory bounded by a budget.

The anchors (fast-reid's and torchreid's `re_ranking`) hold three (Q+G)^2 arrays at once: the
distances, their full argsort and a dense V; about 8 GB each in float32 at OPReID's 45k images. The
algorithm only ever reads each row's k1+1 nearest neighbours, a sparse V and, for the final mix, the
Q x G block of the original distances. Here, with N = Q + G images:

1. one pass over blocks of rows of the N x N distances keeps each row's maximum and its nearest
   neighbours (ties by image index, the order a stable sort gives);
2. the k-reciprocal sets, their expansion and the Gaussian weights make V a sparse matrix (the
   weights' distances are recomputed pair by pair from the features);
3. local query expansion (the mean of the k2 nearest rows of V) keeps V sparse;
4. re-ranked query rows are computed when asked for, a block at a time: the Jaccard distance through
   an inverted index of V's gallery rows, mixed with the original distance as (1 - lambda) d_J + lambda d.

Only the blocks are bounded by `memory_mb`; what is kept for every image is O(N (D + k1 k2)): the
features, the neighbour lists and the sparse V.

The distance is Zhong's: the squared Euclidean distance between the features the metric compares
(L2-normalised for cosine, where it is 2 - 2 cos), each row divided by its maximum over all N.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from benchmarks.errors import BenchmarkError
from benchmarks.metrics.distances import METRICS, FeatureDistances, _normalised, feature_distances
from manifests import progress_bar

log = logging.getLogger(__name__)

#: Bytes per element of the working arrays of one block of the first pass, beyond the block itself
#: (a partition copy and two masks).
_PASS_OVERHEAD = 2
#: Bytes per (query, gallery) element of a re-ranked block, beyond two of the working dtype (the
#: original distances and a scaled copy): the overlap, a bincount and the Jaccard distance, in float64.
_ROW_BYTES = 8 * 3
#: Bytes per gathered (query, shared neighbour, gallery) triple of the Jaccard step.
_TRIPLE_BYTES = 56


class RerankError(BenchmarkError):
    """Re-ranking settings that cannot work (a user error)."""


@dataclass(frozen=True)
class RerankSettings:
    """The paper's k1, k2 and lambda (the anchors' defaults) and the working-memory budget in MiB."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    memory_mb: int = 1024

    def check(self) -> None:
        if self.k1 < 1:
            raise RerankError(f"re-ranking k1 must be at least 1, got {self.k1}")
        if self.k2 < 1:
            raise RerankError(f"re-ranking k2 must be at least 1, got {self.k2}")
        if not 0.0 <= self.lambda_value <= 1.0:
            raise RerankError(f"re-ranking lambda must lie in [0, 1], got {self.lambda_value}")
        if self.memory_mb < 1:
            raise RerankError(f"re-ranking memory budget must be at least 1 MiB, got {self.memory_mb}")

    @property
    def half_k1(self) -> int:
        """round(k1 / 2), half to even as numpy.around rounds: the expansion's neighbourhood."""
        return round(self.k1 / 2)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> dict:
        """What a report records of a re-ranking: the method and the settings the result depends on."""
        return {"method": "k-reciprocal", "k1": self.k1, "k2": self.k2, "lambda": self.lambda_value}


@dataclass(frozen=True)
class _Sparse:
    """Rows of a sparse matrix: row i holds columns indices[indptr[i]:indptr[i+1]] (ascending)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.data.nbytes


def _csr(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, num_rows: int) -> _Sparse:
    """From entries already sorted by (row, column)."""
    indptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_rows), out=indptr[1:])
    return _Sparse(indptr, cols.astype(np.int64, copy=False), data)


def _expand(indptr: np.ndarray, starts_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of every entry of the rows `starts_of` (in order), and the row count of each."""
    starts, lengths = indptr[starts_of], indptr[starts_of + 1] - indptr[starts_of]
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    pos = np.arange(total, dtype=np.int64) - np.repeat(offsets - starts, lengths)
    return pos, lengths


def top_k_stable(block: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k smallest entries in (value, index) order: the first k of a stable
    argsort, found with one partition instead of a sort of the row."""
    num_rows, n = block.shape
    if k >= n:
        return np.argsort(block, axis=1, kind="stable")
    kth = np.partition(block, k - 1, axis=1)[:, k - 1 : k]
    take = block < kth
    n_less = take.sum(axis=1)
    tied = block == kth
    take |= tied
    for r in np.flatnonzero(n_less + tied.sum(axis=1) > k).tolist():  # ties across the k-th place
        take[r, np.flatnonzero(tied[r])[k - n_less[r] :]] = False
    cols = np.nonzero(take)[1].reshape(num_rows, k)
    order = np.argsort(np.take_along_axis(block, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


class KReciprocalReranker:
    """The state re-ranking keeps for every image; `rows(a, b)` gives re-ranked query rows a..b-1.

    Build it with `rerank_distances`.
    """

    def __init__(self, query: np.ndarray, gallery: np.ndarray, metric: str, settings: RerankSettings,
                 progress: bool = False):  # fmt: skip
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        settings.check()
        self.settings, self.metric = settings, metric
        dtype = np.dtype(np.float64) if np.float64 in (query.dtype, gallery.dtype) else np.dtype(np.float32)
        self.dtype = dtype
        self.num_query, self.num_gallery = len(query), len(gallery)
        n = self.num_query + self.num_gallery
        self.num_images = n
        features = np.concatenate([np.asarray(query, dtype=dtype), np.asarray(gallery, dtype=dtype)])
        if metric == "cosine":
            features = _normalised(features, dtype)
        self._x = np.ascontiguousarray(features)
        self._sq = np.einsum("ij,ij->i", self._x, self._x)
        self._budget = settings.memory_mb << 20
        self._check_budget()
        self._progress = progress
        self._all = feature_distances(self._x, self._x, "euclidean")
        self._qg = feature_distances(self._x[: self.num_query], self._x[self.num_query :], "euclidean")
        self.backend = self._all.backend
        nbr, self._rowmax = self._nearest_neighbours()
        v = self._weights(nbr)
        if settings.k2 > 1:
            v = self._query_expansion(v, nbr[:, : min(settings.k2, n)])
        del nbr
        self._query_rows = _Sparse(
            v.indptr[: self.num_query + 1], v.indices[: v.indptr[self.num_query]],
            v.data[: v.indptr[self.num_query]],
        )  # fmt: skip
        self._inverted = self._gallery_index(v)
        log.info(
            "re-ranking state for %d images: V %d entries (%.1f MiB), inverted index %.1f MiB",
            n, v.nnz, v.nbytes / 2**20, self._inverted.nbytes / 2**20,
        )  # fmt: skip

    # ---- sizes ----------------------------------------------------------------------------------
    @property
    def _query_row_bytes(self) -> int:
        """One re-ranked query row; the rows take half the budget, the Jaccard step's triples the other."""
        return 2 * self.num_gallery * (_ROW_BYTES + 2 * self.dtype.itemsize)

    def _rows_within(self, bytes_per_row: int) -> int:
        return max(1, self._budget // max(bytes_per_row, 1))

    def _check_budget(self) -> None:
        need = max(self.num_images * (self.dtype.itemsize * 2 + _PASS_OVERHEAD), self._query_row_bytes)
        if need > self._budget:
            raise RerankError(
                f"re-ranking memory budget of {self.settings.memory_mb} MiB is below the "
                f"{-(-need // 2**20)} MiB one row of {self.num_images} images needs; raise --rerank-memory-mb"
            )

    # ---- 1. nearest neighbours ------------------------------------------------------------------
    def _nearest_neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        s, n = self.settings, self.num_images
        k = min(max(s.k1 + 1, s.k2), n)
        nbr = np.empty((n, k), dtype=np.int64)
        rowmax = np.empty(n, dtype=self.dtype)
        step = self._rows_within(n * (self.dtype.itemsize * 2 + _PASS_OVERHEAD))
        tiny = np.finfo(self.dtype).tiny
        bar = progress_bar(total=n, enabled=self._progress, desc="re-rank: neighbours", unit="img")
        with bar:
            for a in range(0, n, step):
                b = min(a + step, n)
                block = self._all.rows(a, b)
                np.maximum(block, 0, out=block)
                rowmax[a:b] = block.max(axis=1)
                block /= np.maximum(rowmax[a:b], tiny)[:, None]
                nbr[a:b] = top_k_stable(block, k)
                del block
                bar.update(b - a)
        return nbr, np.maximum(rowmax, tiny)

    # ---- 2. k-reciprocal sets, expansion, weights -----------------------------------------------
    @staticmethod
    def _reciprocal(fw: np.ndarray, step: int) -> np.ndarray:
        """-1 where fw[i, t] is not k-reciprocal (i not among fw's neighbours of it), else fw[i, t]."""
        out = np.empty_like(fw)
        for a in range(0, len(fw), step):
            f = fw[a : a + step]
            mine = np.arange(a, a + len(f))[:, None, None]
            out[a : a + step] = np.where((fw[f] == mine).any(axis=2), f, -1)
        return out

    def _pairwise(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Row-normalised distances of the pairs (i, j), a bounded chunk of pairs at a time."""
        out = np.empty(len(i), dtype=self.dtype)
        step = self._rows_within(2 * self._x.shape[1] * self.dtype.itemsize)
        for a in range(0, len(i), step):
            ii, jj = i[a : a + step], j[a : a + step]
            dot = np.einsum("ij,ij->i", self._x[ii], self._x[jj])
            d = self._sq[ii] + self._sq[jj] - 2 * dot
            out[a : a + step] = np.maximum(d, 0) / self._rowmax[ii]
        return out

    def _weights(self, nbr: np.ndarray) -> _Sparse:
        s, n = self.settings, self.num_images
        w1, w2 = min(s.k1 + 1, n), min(s.half_k1 + 1, n)
        per_row = w1 * w2 * w1 * 2 + (w1 + w1 * w2) * 24
        step = self._rows_within(per_row)
        rec1 = self._reciprocal(nbr[:, :w1], step)
        rec2 = self._reciprocal(nbr[:, :w2], step)
        size2 = (rec2 >= 0).sum(axis=1)
        rows, cols = [], []
        for a in range(0, n, step):
            r1 = rec1[a : a + step]
            cand = rec2[np.maximum(r1, 0)]  # (B, w1, w2): each candidate's half-size reciprocal set
            shared = (
                ((cand[..., None] == r1[:, None, None, :]) & (cand >= 0)[..., None]).any(axis=3).sum(axis=2)
            )
            accept = (r1 >= 0) & (3 * shared > 2 * size2[np.maximum(r1, 0)])
            members = np.concatenate([r1, np.where(accept[..., None], cand, -1).reshape(len(r1), -1)], axis=1)
            members.sort(axis=1)
            keep = members >= 0
            keep[:, 1:] &= members[:, 1:] != members[:, :-1]
            rows.append(np.nonzero(keep)[0] + a)
            cols.append(members[keep])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        weight = np.exp(-self._pairwise(rows, cols))
        total = np.bincount(rows, weights=weight, minlength=n)
        weight = (weight / total[rows]).astype(self.dtype)
        return _csr(rows, cols, weight, n)

    # ---- 3. local query expansion ---------------------------------------------------------------
    def _query_expansion(self, v: _Sparse, nearest: np.ndarray) -> _Sparse:
        """Row i becomes the mean of the rows of its k2 nearest neighbours (itself included)."""
        n, k2 = self.num_images, nearest.shape[1]
        per_row = max(1, int(np.diff(v.indptr).max(initial=1))) * k2 * 40
        step = self._rows_within(per_row)
        rows, cols, data = [], [], []
        for a in range(0, n, step):
            nb = nearest[a : a + step]
            pos, lengths = _expand(v.indptr, nb.ravel())
            local = np.repeat(np.arange(len(nb), dtype=np.int64).repeat(k2), lengths)
            key = local * n + v.indices[pos]
            uniq, inverse = np.unique(key, return_inverse=True)
            sums = np.bincount(inverse, weights=v.data[pos], minlength=len(uniq))
            rows.append(uniq // n + a)
            cols.append(uniq % n)
            data.append((sums / k2).astype(self.dtype))
        return _csr(np.concatenate(rows), np.concatenate(cols), np.concatenate(data), n)

    # ---- 4. Jaccard distance and the mix --------------------------------------------------------
    def _gallery_index(self, v: _Sparse) -> _Sparse:
        """V's gallery rows by column: for each image k, the gallery images j with V[j, k] > 0."""
        start = v.indptr[self.num_query]
        cols = v.indices[start:]
        rows = np.repeat(np.arange(self.num_gallery, dtype=np.int64), np.diff(v.indptr[self.num_query :]))
        order = np.argsort(cols, kind="stable")
        return _csr(cols[order], rows[order], v.data[start:][order], self.num_images)

    def _overlap(self, a: int, b: int) -> np.ndarray:
        """sum_k min(V[i, k], V[j, k]) for queries a..b-1 against every gallery image j (float64)."""
        g = self.num_gallery
        out = np.zeros((b - a) * g)
        q = self._query_rows
        lo, hi = q.indptr[a], q.indptr[b]
        local = np.repeat(np.arange(b - a, dtype=np.int64), np.diff(q.indptr[a : b + 1]))
        ks, vals = q.indices[lo:hi], q.data[lo:hi]
        lengths = np.diff(self._inverted.indptr)[ks]
        ends = np.cumsum(lengths)
        budget = max(1, (self._budget // 2) // _TRIPLE_BYTES)
        first = 0
        while first < len(ks):  # pieces of whole (query, k) entries; an entry holds at most G triples
            last = max(first + 1, int(np.searchsorted(ends, ends[first] - lengths[first] + budget, "right")))
            pos, counts = _expand(self._inverted.indptr, ks[first:last])
            mins = np.minimum(np.repeat(vals[first:last], counts), self._inverted.data[pos])
            flat = np.repeat(local[first:last], counts) * g + self._inverted.indices[pos]
            out += np.bincount(flat, weights=mins, minlength=len(out))
            first = last
        return out.reshape(b - a, g)

    def rows(self, a: int, b: int) -> np.ndarray:
        """Re-ranked distances of queries a..b-1 to every gallery image (lower is closer)."""
        lam = self.settings.lambda_value
        out = np.empty((b - a, self.num_gallery), dtype=self.dtype)
        step = self._rows_within(self._query_row_bytes)
        for s in range(a, b, step):
            e = min(s + step, b)
            original = self._qg.rows(s, e)
            np.maximum(original, 0, out=original)
            original /= self._rowmax[s:e, None]
            overlap = self._overlap(s, e)
            jaccard = 1 - overlap / (2 - overlap)
            jaccard *= 1 - lam
            jaccard += lam * original
            out[s - a : e - a] = jaccard
        return out


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
    settings = settings or RerankSettings()
    reranker = KReciprocalReranker(query, gallery, metric, settings, progress=progress)
    backend = (
        f"k-reciprocal re-ranking (k1={settings.k1}, k2={settings.k2}, lambda={settings.lambda_value}; "
        f"{metric} features, {reranker.backend})"
    )
    return FeatureDistances(reranker.rows, False, backend, reranker.num_query, reranker.num_gallery)


def rerank_matrix(query: np.ndarray, gallery: np.ndarray, metric: str = "cosine",
                  settings: RerankSettings | None = None) -> np.ndarray:  # fmt: skip
    """The whole re-ranked Q x G matrix (for small sets; large ones should read `rerank_distances` rows)."""
    source = rerank_distances(query, gallery, metric, settings)
    return source.rows(0, source.num_query)
