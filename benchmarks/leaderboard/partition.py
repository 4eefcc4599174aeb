"""The hidden public/private split of the queries, drawn once when a leaderboard is created.

The seed is random by default (a fixed, published seed would let anyone recompute the split from
`query.parquet`); it and the membership live only in host-only tables.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import numpy as np


def new_seed() -> int:
    return secrets.randbits(63)


def draw_private(num_queries: int, seed: int, private_fraction: float = 0.5) -> np.ndarray:
    """Boolean mask (Q,): True for the queries of the private subset.

    Exactly round(Q * fraction) queries are private, clipped so both subsets are non-empty when
    Q >= 2. Deterministic for (Q, seed, fraction).
    """
    if not 0.0 < private_fraction < 1.0:
        raise ValueError(f"private fraction must be in (0, 1), got {private_fraction}")
    if num_queries < 2:
        raise ValueError(f"need at least 2 queries to split into public and private, got {num_queries}")
    n_private = min(max(round(num_queries * private_fraction), 1), num_queries - 1)
    order = np.random.default_rng(seed).permutation(num_queries)
    mask = np.zeros(num_queries, dtype=bool)
    mask[order[:n_private]] = True
    return mask


def query_ids_digest(image_ids: Sequence[str]) -> str:
    """sha256 of the ordered query ids: a changed query manifest invalidates the stored split."""
    digest = hashlib.sha256()
    for image_id in image_ids:
        digest.update(image_id.encode("utf-8") + b"\n")
    return digest.hexdigest()
