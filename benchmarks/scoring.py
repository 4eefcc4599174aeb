"""Score a submission file against a dataset's hidden ground truth: validate first, score after.

The positives' ranks are counted once (`positive_ranks`); the headline metrics, the worst-case
tie variant, the occluded/holistic breakdowns and any query subsets (the leaderboard's public and
private splits) are all derived from those counts without touching the submission again.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import DatasetError, InvalidSubmissionError
from benchmarks.ground_truth import GroundTruth, load_ground_truth
from benchmarks.metrics.distances import feature_distances
from benchmarks.metrics.market import (
    DEFAULT_RANKS,
    MarketMetrics,
    check_ranks,
    finite_rows,
    metrics_from_positive_ranks,
)
from benchmarks.metrics.positive_ranks import (
    TIES,
    PositiveRanks,
    identity_pairs,
    rank_positives_in_lists,
    rank_positives_in_rows,
)
from benchmarks.rerank.kreciprocal import RerankError, RerankSettings, rerank_distances
from benchmarks.submission.formats import DEFAULT_MAX_NPZ_BYTES, Submission, load_submission
from manifests import atomic_write_text, sha256_file

log = logging.getLogger(__name__)

#: Bumped whenever a metric's definition or the JSON layout changes.
SCORER_VERSION = "1.0.0"


def protocol(ties: str, truncated_at: int | None) -> dict[str, Any]:
    """What the numbers mean, carried in every report."""
    out: dict[str, Any] = {
        "name": "market1501",
        "definition": "fast-reid eval_market1501",
        "removed": "gallery entries with the query's pid and camid",
        "queries_without_positive": "reported, excluded from every average",
        "ap": "non-interpolated, over all positives",
        "inp": "positives / rank of the last positive",
        "ties": "gallery order (stable sort)" if ties == "stable" else "non-positives first (worst case)",
    }
    if truncated_at is not None:
        out["truncated"] = (
            f"ranked lists of K={truncated_at}: unlisted positives count as never retrieved "
            "(precision 0; INP 0 unless the last positive is listed); CMC beyond the list is a lower bound"
        )
    return out


def _summary(m: MarketMetrics) -> dict[str, Any]:
    out = m.to_dict()
    for key in ("invalid_query_indices", "ties", "truncated_at"):
        out.pop(key)
    return out


@dataclass
class ScoreReport:
    metrics: MarketMetrics
    submission: Submission
    ground_truth: GroundTruth
    submission_sha256: str
    ranks: tuple[int, ...]
    ties: str
    breakdown: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    pessimistic: MarketMetrics | None = None
    subsets: dict[str, MarketMetrics] = field(default_factory=dict)
    distance_backend: str | None = None
    rerank: RerankSettings | None = None
    #: rows(a, b) of the scored Q x G matrix, lower is closer (None for ranked lists): what the
    #: rank-list pictures read back without recomputing the features' distances or a re-ranking.
    distance_rows: Callable[[int, int], np.ndarray] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        m = self.metrics
        out = _summary(m)
        out.update(
            truncated_at=m.truncated_at,
            breakdown=self.breakdown,
            protocol=protocol(self.ties, m.truncated_at),
            scorer_version=SCORER_VERSION,
            submission_sha256=self.submission_sha256,
            manifests_sha256=dict(self.ground_truth.manifests_sha256),
            format=self.submission.kind,
            submission=self.submission.describe(),
            ties=self.ties,
            invalid_query_ids=[str(self.ground_truth.query_ids[i]) for i in m.invalid_query_indices],
        )
        if self.distance_backend:
            out["distance_backend"] = self.distance_backend
        if self.rerank is not None:
            out["rerank"] = self.rerank.describe()
        if self.pessimistic is not None:
            out["pessimistic"] = _summary(self.pessimistic)
        if self.subsets:
            out["subsets"] = {name: _summary(sm) for name, sm in self.subsets.items()}
        return out

    def per_query_csv(self) -> str:
        """One row per query (public ids only, no pid): positives, first-hit rank, AP, INP."""
        m, gt = self.metrics, self.ground_truth
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["query_index", "image_id", "camid", "occluded", "num_positives", "valid",
                         "first_hit_rank", "ap", "inp"])  # fmt: skip
        occluded = gt.q_occluded if gt.q_occluded is not None else [None] * gt.num_query
        for i in range(gt.num_query):
            valid = bool(m.valid[i])
            writer.writerow([
                i, gt.query_ids[i], int(gt.q_camids[i]), "" if occluded[i] is None else bool(occluded[i]),
                int(m.num_positives[i]), valid, int(m.first_hit_rank[i]) if valid else "",
                repr(float(m.ap[i])) if valid else "", repr(float(m.inp[i])) if valid else "",
            ])  # fmt: skip
        return buf.getvalue()

    def format_table(self) -> str:
        """The readable report `opreid score` prints without --json."""
        m = self.metrics
        cols = ["mAP", "mINP"] + [f"R-{k}" for k in self.ranks] + ["queries"]

        def row(label: str, d: dict[str, Any]) -> str:
            cells = [d["mAP"], d["mINP"]] + [d[f"rank{k}"] for k in self.ranks]
            text = ["   n/a" if v is None else f"{100 * v:6.2f}" for v in cells]
            return f"  {label:<22}" + "  ".join(text) + f"  {d['num_valid_queries']:>7}"

        lines = [
            f"Submission  {self.submission.describe()}",
            f"Queries     {m.num_queries} ({m.num_valid_queries} with a positive"
            + (
                f"; {len(m.invalid_query_indices)} without, excluded)"
                if len(m.invalid_query_indices)
                else ")"
            ),
            "Protocol    Market-1501 (fast-reid); ties by gallery order"
            + (f"; truncated at K={m.truncated_at}" if m.truncated_at else ""),
            *(
                [f"Re-ranked   k-reciprocal (k1={r.k1}, k2={r.k2}, lambda={r.lambda_value})"]
                if (r := self.rerank) is not None
                else []
            ),
            "",
            f"  {'(%)':<22}" + "  ".join(f"{c:>6}" for c in cols[:-1]) + f"  {cols[-1]:>7}",
            row("all", _summary(m)),
        ]
        if self.pessimistic is not None:
            lines.append(row("all, worst-case ties", _summary(self.pessimistic)))
        for group, entries in self.breakdown.items():
            lines.append(f"  {group.replace('_', ' ')}:")
            lines += [row(f"  {name}", d) for name, d in entries.items()]
        for name, sm in self.subsets.items():
            lines.append(row(f"subset {name}", _summary(sm)))
        return "\n".join(lines)

    def write_per_query(self, path: str | Path) -> None:
        atomic_write_text(path, self.per_query_csv())


def occlusion_breakdown(
    pr: PositiveRanks, gt: GroundTruth, ranks: Iterable[int]
) -> dict[str, dict[str, Any]]:
    """By target type (query type -> gallery positive type; other-type positives removed from the
    ranking), and by query type when both occur."""
    if not gt.has_occlusion_flags:
        return {}
    q_occ, pos_occ = gt.q_occluded, gt.g_occluded[pr.gallery_index]
    types = (("occluded", True), ("holistic", False))
    by_target = {}
    for q_name, q_flag in types:
        q_mask = q_occ == q_flag
        if not q_mask.any():
            continue
        for t_name, t_flag in types:
            m = metrics_from_positive_ranks(pr, ranks, query_mask=q_mask, positive_mask=pos_occ == t_flag)
            if m.num_valid_queries:
                by_target[f"{q_name}->{t_name}"] = _summary(m)
    out = {"by_target": by_target} if by_target else {}
    if q_occ.any() and not q_occ.all():
        out["by_query"] = {
            name: _summary(metrics_from_positive_ranks(pr, ranks, query_mask=q_occ == flag))
            for name, flag in types
        }
    return out


def _lower_is_closer_rows(rows: Callable[[int, int], np.ndarray], similarity: bool):
    return (lambda a, b: -np.asarray(rows(a, b), dtype=np.float64)) if similarity else rows


def _hash_in_background(path: Path) -> tuple[threading.Thread, dict[str, Any]]:
    """sha256 of a large file overlaps validation and scoring (hashlib releases the GIL)."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["sha256"] = sha256_file(path)
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=work, name="submission-sha256", daemon=True)
    thread.start()
    return thread, result


def score_submission(
    path: str | Path,
    data_dir: str | Path,
    *,
    truth: str | Path | None = None,
    similarity: bool = False,
    metric: str = "cosine",
    ranks: Iterable[int] = DEFAULT_RANKS,
    ties: str = "stable",
    query_subsets: Mapping[str, np.ndarray] | None = None,
    max_npz_bytes: int = DEFAULT_MAX_NPZ_BYTES,
    rerank: RerankSettings | None = None,
    progress: bool = False,
) -> ScoreReport:
    """Validate `path` against the dataset, then score it.

    Raises DatasetError (bad dataset directory / ground truth) or InvalidSubmissionError (every
    problem of the submission). `ties="pessimistic"` adds the worst-case variant next to the
    stable one. `query_subsets` maps a name to a bool mask over queries (public order).
    `rerank` re-ranks a feature submission (k-reciprocal, benchmarks.rerank.kreciprocal) before scoring;
    RerankError for any other format.
    """
    try:
        return _score(
            path, data_dir, truth, similarity, metric, ranks, ties, query_subsets, max_npz_bytes, rerank,
            progress,
        )  # fmt: skip
    except InvalidSubmissionError as exc:
        exc.path = exc.path or str(path)
        raise


def _score(
    path, data_dir, truth, similarity, metric, ranks, ties, query_subsets, max_npz_bytes, rerank, progress
) -> ScoreReport:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if rerank is not None:
        rerank.check()
    ranks = check_ranks(ranks)
    gt = load_ground_truth(data_dir, truth)
    masks = {}
    for name, mask in (query_subsets or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (gt.num_query,):
            raise ValueError(f"query subset {name!r} has shape {mask.shape}, expected ({gt.num_query},)")
        masks[name] = mask
    path = Path(path)
    hasher = _hash_in_background(path) if path.is_file() else None
    sub = load_submission(
        path, gt.num_query, gt.num_gallery, similarity=similarity, metric=metric, max_npz_bytes=max_npz_bytes
    )
    pairs = identity_pairs(gt.q_pids, gt.g_pids, gt.q_camids, gt.g_camids)
    if not pairs.positive.any():
        raise DatasetError(
            "no query has a positive (same pid, other camera) in the gallery: nothing to score"
        )
    rules = ("stable", "pessimistic") if ties == "pessimistic" else ("stable",)
    backend = None
    if rerank is not None and sub.kind != "features":
        raise RerankError(
            f"--rerank needs a feature submission (.npz with query and gallery features), not {sub.describe()}: "
            "re-ranking compares queries with queries and gallery images with each other"
        )
    rows = None
    if sub.kind == "ranked":
        stable = rank_positives_in_lists(sub.ranked, pairs, gt.g_pids, gt.g_camids, gt.q_pids, gt.q_camids)
        counted = dict.fromkeys(rules, stable)  # a list has no ties
    else:
        if sub.kind == "distances":
            matrix = sub.distances
            rows, sim, num_gallery = (lambda a, b: matrix[a:b]), sub.similarity, matrix.shape[1]
        else:
            if rerank is not None:
                raw = rerank_distances(
                    sub.query_features, sub.gallery_features, metric, rerank, progress=progress
                )
            else:
                raw = feature_distances(sub.query_features, sub.gallery_features, metric)
            source = finite_rows(raw)
            rows, sim, num_gallery, backend = (
                source.rows,
                source.similarity,
                source.num_gallery,
                source.backend,
            )
        try:
            counted = rank_positives_in_rows(rows, num_gallery, pairs, ties=rules, similarity=sim)
        except ValueError as exc:  # only a feature overflow can get here after validation
            raise InvalidSubmissionError([str(exc)]) from None
    main = metrics_from_positive_ranks(counted["stable"], ranks)
    report = ScoreReport(
        metrics=main,
        submission=sub,
        ground_truth=gt,
        submission_sha256="",
        ranks=ranks,
        ties=ties,
        breakdown=occlusion_breakdown(counted["stable"], gt, ranks),
        distance_backend=backend,
        rerank=rerank,
        distance_rows=None if rows is None else _lower_is_closer_rows(rows, sim),
    )
    if ties == "pessimistic":
        report.pessimistic = metrics_from_positive_ranks(counted["pessimistic"], ranks)
    report.subsets = {name: metrics_from_positive_ranks(counted["stable"], ranks, query_mask=mask)
                      for name, mask in masks.items()}  # fmt: skip
    if hasher is not None:
        thread, result = hasher
        thread.join()
        if "error" in result:
            raise InvalidSubmissionError([f"{path}: cannot be read ({result['error']})"])
        report.submission_sha256 = result["sha256"]
    if math.isnan(main.mAP):
        raise DatasetError("no query has a positive in the gallery: nothing to score")
    log.info("scored %s: mAP %.4f, rank-1 %.4f", path, main.mAP, main.cmc[ranks[0]])
    return report
