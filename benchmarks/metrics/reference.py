"""A deliberately simple per-query evaluator, written straight from the protocol's definitions.

It sorts every row (slow: O(Q x G log G)) and exists to hold the fast path to account in tests and
in `perf/score_speed.py`. It shares no code with `positive_ranks`/`market_metrics`.
"""

from __future__ import annotations

import numpy as np

from benchmarks.metrics.market import DEFAULT_RANKS


def _query_metrics(ordered_gallery: np.ndarray, q_pid, q_cam, g_pids, g_camids, num_pos_total: int):
    """AP, INP and first-hit rank (0 = none) of one query's ranked gallery list."""
    pids = g_pids[ordered_gallery]
    cams = g_camids[ordered_gallery]
    keep = ~((pids == q_pid) & (cams == q_cam))  # same pid + same camera: removed
    matches = (pids[keep] == q_pid).astype(np.int64)
    if num_pos_total == 0:
        return None
    hit_positions = np.flatnonzero(matches) + 1  # 1-based ranks among the kept entries
    precision_sum = 0.0
    for n, r in enumerate(hit_positions, start=1):
        precision_sum += n / r
    ap = precision_sum / num_pos_total
    if len(hit_positions) == num_pos_total:
        inp = num_pos_total / hit_positions[-1]
    else:
        inp = 0.0  # the last positive is beyond a truncated list
    first = int(hit_positions[0]) if len(hit_positions) else 0
    return ap, inp, first


def _summarise(per_query: list, ranks) -> dict:
    valid = [m for m in per_query if m is not None]
    out = {
        "num_valid_queries": len(valid),
        "invalid_query_indices": [i for i, m in enumerate(per_query) if m is None],
        "ap": [np.nan if m is None else m[0] for m in per_query],
        "inp": [np.nan if m is None else m[1] for m in per_query],
        "first_hit_rank": [0 if m is None else m[2] for m in per_query],
    }
    if valid:
        out["mAP"] = sum(m[0] for m in valid) / len(valid)
        out["mINP"] = sum(m[1] for m in valid) / len(valid)
        out["cmc"] = {k: sum(1 for m in valid if 0 < m[2] <= k) / len(valid) for k in ranks}
    else:
        out["mAP"] = out["mINP"] = np.nan
        out["cmc"] = {k: np.nan for k in ranks}
    return out


def _target_view(g_pids, q_pid, target_mask):
    """With a target mask, same-pid entries outside it are removed from the query's ranking."""
    if target_mask is None:
        return None
    return ~((g_pids == q_pid) & ~target_mask)


def reference_distances(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    *,
    ranks=DEFAULT_RANKS,
    ties: str = "stable",
    similarity: bool = False,
    target_mask=None,
) -> dict:
    """Sort each row (stable, or with positives after tied non-positives), then apply the definitions."""
    distmat = np.asarray(distmat, dtype=np.float64)
    if similarity:
        distmat = -distmat
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    target = None if target_mask is None else np.asarray(target_mask, dtype=bool)
    per_query = []
    for q in range(distmat.shape[0]):
        row = distmat[q]
        is_same = g_pids == q_pids[q]
        if ties == "stable":
            order = np.argsort(row, kind="stable")
        else:  # worst case: among equal distances, non-positives first
            order = np.lexsort((is_same.astype(np.int8), row))
        view = _target_view(g_pids, q_pids[q], target)
        if view is not None:
            order = order[view[order]]
        positives = is_same & (g_camids != q_camids[q])
        if view is not None:
            positives &= view
        per_query.append(
            _query_metrics(order, q_pids[q], q_camids[q], g_pids, g_camids, int(positives.sum()))
        )
    return _summarise(per_query, ranks)


def reference_ranked(ranked, q_pids, g_pids, q_camids, g_camids, *, ranks=DEFAULT_RANKS) -> dict:
    """Score truncated ranked lists: unlisted positives never retrieved, AP divided by all positives."""
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    per_query = []
    for q in range(len(ranked)):
        positives = (g_pids == q_pids[q]) & (g_camids != q_camids[q])
        per_query.append(
            _query_metrics(
                np.asarray(ranked[q]), q_pids[q], q_camids[q], g_pids, g_camids, int(positives.sum())
            )
        )
    return _summarise(per_query, ranks)
