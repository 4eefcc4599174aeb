"""Query x gallery distances from features, computed a chunk of query rows at a time.

cosine: rows are L2-normalised and the inner product is used as a similarity (higher is closer;
`1 - s` would round distinct similarities into ties). euclidean: squared distances
|q|^2 + |g|^2 - 2 q.g (same order as the distance itself, without a rounding sqrt).
faiss computes float32 blocks when it is installed; numpy otherwise, and always for float64.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class FeatureDistances:
    """Row-chunk source of the Q x G matrix: `rows(a, b)`; `similarity` says higher is closer."""

    rows: Callable[[int, int], np.ndarray]
    similarity: bool
    backend: str
    num_query: int
    num_gallery: int


def _faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def _work_dtype(*arrays: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if any(a.dtype == np.float64 for a in arrays) else np.dtype(np.float32)


def _normalised(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    x = np.asarray(x, dtype=dtype)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(dtype)
    return x / np.maximum(norms, np.finfo(dtype).tiny)[:, None]


def feature_distances(
    query: np.ndarray, gallery: np.ndarray, metric: str = "cosine", *, backend: str = "auto"
) -> FeatureDistances:
    """Prepare (normalise, square norms) once; blocks are computed when asked for."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"features must be Q x D and G x D, got {query.shape} and {gallery.shape}")
    dtype = _work_dtype(query, gallery)
    if backend == "auto":
        backend = "faiss" if dtype == np.float32 and _faiss_available() else "numpy"
    if backend == "faiss" and dtype != np.float32:
        raise ValueError("the faiss backend computes float32 only")
    if metric == "cosine":
        q, g = _normalised(query, dtype), _normalised(gallery, dtype)
    else:
        q, g = np.asarray(query, dtype=dtype), np.asarray(gallery, dtype=dtype)
    q, g = np.ascontiguousarray(q), np.ascontiguousarray(g)
    g_sq = np.einsum("ij,ij->i", g, g) if metric == "euclidean" else None

    if backend == "faiss":
        import faiss

        kind = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2

        def rows(a: int, b: int) -> np.ndarray:
            return faiss.pairwise_distances(q[a:b], g, kind)

    else:

        def rows(a: int, b: int) -> np.ndarray:
            block = q[a:b] @ g.T
            if metric == "cosine":
                return block
            block *= -2
            block += np.einsum("ij,ij->i", q[a:b], q[a:b])[:, None]
            block += g_sq[None, :]
            return block

    log.debug("feature distances: %s, %s, %s", metric, backend, dtype)
    return FeatureDistances(rows, metric == "cosine", backend, len(q), len(g))
