"""The Q + G images' features as re-ranking reads them, without a copy of the caller's arrays.

Re-ranking compares every image with every other, so it sees the query and gallery features as one
list of N rows; concatenating (and, for cosine, normalising) them would hold a second copy of the
largest arrays in memory. Here a block of rows is a view (a copy only for the block that straddles
the query/gallery boundary), a gather of rows copies only those rows, and for cosine the rows are
scaled by their inverse norms where a product is formed: x.y / (|x| |y|).

The squared distance is |x|^2 + |y|^2 - 2 x.y of the features the metric compares (for cosine the
L2-normalised ones: |x|^2 is 1, or 0 for an all-zero row).
"""

from __future__ import annotations

import numpy as np


class FeatureRows:
    """Query rows 0..Q-1 then gallery rows Q..N-1, in the work dtype, on the ops' device."""

    def __init__(self, ops, query: np.ndarray, gallery: np.ndarray, dtype: np.dtype, metric: str):
        o = self.ops = ops
        self.dtype = np.dtype(dtype)
        self.num_query = len(query)
        self.parts = (o.asarray(query, dtype=self.dtype), o.asarray(gallery, dtype=self.dtype))
        self.num_images = len(query) + len(gallery)
        self.dim = query.shape[1]
        sq64 = o.concat([o.squared_norms64(p) for p in self.parts])
        if metric == "cosine":
            norms64 = sq64**0.5
            nonzero = norms64 > 0
            self.scale64 = o.where(nonzero, 1.0 / o.clamp_min(norms64, float(np.finfo(np.float64).tiny)), 0.0)
            self.sq64 = o.cast(nonzero, np.float64)
            self.scale = o.cast(self.scale64, self.dtype)
            self.sq = o.cast(self.sq64, self.dtype)
            #: every |x|^2 is 1: a block adds the constant 2 instead of two vectors
            self.constant_sq = float(self.sq[0]) if bool((self.sq == self.sq[0]).all()) else None
        else:
            self.scale64 = self.scale = None
            self.sq64 = sq64
            self.sq = o.concat([o.dots(p, p) for p in self.parts])
            self.constant_sq = None

    def __len__(self) -> int:
        return self.num_images

    def rows(self, a: int, b: int):
        """Rows a..b-1, unscaled (a view unless they straddle the query/gallery boundary)."""
        q, g = self.parts
        nq = self.num_query
        if b <= nq:
            return q[a:b]
        if a >= nq:
            return g[a - nq : b - nq]
        return self.ops.concat([q[a:], g[: b - nq]])

    def take(self, idx):
        """Rows idx (any order), unscaled: a copy of those rows only."""
        o, (q, g), nq = self.ops, self.parts, self.num_query
        if len(idx) and int(idx.min()) >= nq:  # the common case: gallery rows only
            return g[idx - nq]
        out = o.empty((len(idx), self.dim), self.dtype)
        in_query = idx < nq
        out[in_query] = q[idx[in_query]]
        out[~in_query] = g[idx[~in_query] - nq]
        return out

    def left(self, a: int, b: int):
        """-2 x of rows a..b-1, scaled for cosine: the left factor of a block of distances."""
        x = self.rows(a, b)
        if self.scale is None:
            return x * -2
        return x * (self.scale[a:b] * -2)[:, None]

    @property
    def shift(self) -> float:
        """The constant a finished block leaves out: 2 for cosine (|x|^2 + |y|^2), 0 for euclidean.

        Adding it changes no row's order, so the neighbour pass adds it to the few values it keeps only.
        """
        return 0.0 if self.constant_sq is None else 2 * self.constant_sq

    def product(self, left, c: int, e: int, out=None):
        """`left` times rows c..e-1: a block of distances still to `finish` (into `out` when given)."""
        return self.ops.matmul(left, self.rows(c, e).T, out)

    def finish(self, part, a: int, b: int, c: int, e: int) -> None:
        """In place: rows a..b-1 x columns c..e-1 of a product become their distances minus `shift`."""
        if self.scale is not None:
            part *= self.scale[None, c:e]
        if self.constant_sq is None:
            part += self.sq[a:b, None]
            part += self.sq[None, c:e]

    def block(self, left, a: int, b: int, c: int, e: int):
        """Squared distances of rows a..b-1 (their `left` factor) to rows c..e-1, in the work dtype."""
        d = self.product(left, c, e)
        self.finish(d, a, b, c, e)
        if self.shift:
            d += self.shift
        return d

    def pair_distances(self, i, j):
        """|x_i|^2 + |x_j|^2 - 2 x_i.x_j for the pairs (i, j) in the work dtype (unclamped)."""
        dots = self.ops.dots(self.take(i), self.take(j))
        if self.scale is not None:
            dots = dots * self.scale[i] * self.scale[j]
        return self.sq[i] + self.sq[j] - 2 * dots

    def pair_distances_runs(self, lo: np.ndarray, hi: np.ndarray, run: int = 128) -> np.ndarray:
        """pair_distances for pairs sorted by `lo` (numpy only): each run of one `lo` reads that row once,
        its partners `run` at a time (in cache); a pair's value depends on its two rows alone."""
        dots = np.empty(len(lo), self.dtype)
        if len(lo):
            starts = np.flatnonzero(np.diff(lo)) + 1
            bounds = np.concatenate([[0], starts, [len(lo)]])
            for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
                x = self.take(lo[s : s + 1])[0]
                for a in range(s, e, run):
                    b = min(a + run, e)
                    dots[a:b] = np.einsum("j,ij->i", x, self.take(hi[a:b]))
        if self.scale is not None:
            dots = dots * self.scale[lo] * self.scale[hi]
        return self.sq[lo] + self.sq[hi] - 2 * dots

    def pair_distances64(self, i, j):
        """|x_i - x_j|^2 in float64 from the differences themselves: 0 for duplicates and accurate for
        near-duplicates, where |x|^2 + |y|^2 - 2 x.y loses every digit to cancellation."""
        o = self.ops
        xi, xj = o.cast(self.take(i), np.float64), o.cast(self.take(j), np.float64)
        if self.scale64 is not None:
            xi *= self.scale64[i][:, None]
            xj *= self.scale64[j][:, None]
        xi -= xj
        return o.dots64(xi, xi)

    def rows64(self, idx):
        """Rows idx in float64, scaled for cosine (the fallback's left factor)."""
        x = self.ops.cast(self.take(idx), np.float64)
        return x if self.scale64 is None else x * self.scale64[idx][:, None]

    def block64(self, left64, r, c: int, e: int):
        """float64 squared distances of the rows `r` (their `rows64`) to rows c..e-1."""
        right = self.ops.cast(self.rows(c, e), np.float64)
        if self.scale64 is not None:
            right = right * self.scale64[c:e][:, None]
        d = left64 @ right.T
        d *= -2
        d += self.sq64[r][:, None]
        d += self.sq64[None, c:e]
        return d
