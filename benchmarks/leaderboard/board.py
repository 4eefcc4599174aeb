"""Creating a leaderboard for a built dataset, and its public description."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sqlalchemy import select

from benchmarks.leaderboard.errors import AlreadyInitialisedError, DatasetChangedError, LeaderboardError
from benchmarks.leaderboard.partition import draw_private, new_seed, query_ids_digest
from benchmarks.leaderboard.settings import BoardSettings
from benchmarks.leaderboard.standings import check_sort_metric
from benchmarks.leaderboard.store import Board, QueryPartition, Store, utcnow
from benchmarks.leaderboard.tokens import hash_token, new_token
from manifests import QUERY, DatasetLayout, ManifestError, read_manifest

log = logging.getLogger(__name__)


def read_query_ids(data_dir: str | Path) -> list[str]:
    layout = DatasetLayout(data_dir)
    try:
        table = read_manifest(layout.query, QUERY, columns=["image_id"])
    except ManifestError as exc:
        raise LeaderboardError(f"not a built dataset: {exc}") from None
    if not layout.ground_truth.is_file():
        raise LeaderboardError(f"not a built dataset: {layout.ground_truth} is missing")
    return table.column("image_id").to_pylist()


def create_board(store: Store, data_dir: str | Path, settings: BoardSettings = BoardSettings()) -> str:
    """Create the tables and the leaderboard; draw the hidden split. Returns the host token (shown once)."""
    check_sort_metric(settings.sort_metric)
    for label, value in (("daily", settings.daily_quota), ("total", settings.total_quota)):
        if value is not None and value < 1:
            raise LeaderboardError(f"{label} quota must be at least 1 (or unlimited), got {value}")
    data_dir = Path(data_dir).resolve()
    image_ids = read_query_ids(data_dir)
    seed = settings.seed if settings.seed is not None else new_seed()
    try:
        private = draw_private(len(image_ids), seed, settings.private_fraction)
    except ValueError as exc:
        raise LeaderboardError(str(exc)) from None
    store.create_schema()
    token = new_token()
    with store.session() as session:
        if session.get(Board, 1) is not None:
            raise AlreadyInitialisedError(f"{store.display_url} already holds a leaderboard")
        session.add(
            Board(
                id=1,
                name=settings.name,
                data_dir=str(data_dir),
                created_at=utcnow(),
                host_token_hash=hash_token(token),
                sort_metric=settings.sort_metric,
                daily_quota=settings.daily_quota,
                total_quota=settings.total_quota,
                private_fraction=settings.private_fraction,
                partition_seed=str(seed),
                query_ids_sha256=query_ids_digest(image_ids),
                num_queries=len(image_ids),
            )
        )
        session.add_all(
            QueryPartition(query_index=i, image_id=image_id, private=bool(flag))
            for i, (image_id, flag) in enumerate(zip(image_ids, private, strict=True))
        )
    log.info(
        "created leaderboard %r for %s in %s (%d queries)",
        settings.name,
        data_dir,
        store.display_url,
        len(image_ids),
    )
    return token


def private_mask(store: Store) -> tuple[Path, np.ndarray]:
    """Host-only: the dataset folder and the stored private-query mask, checked against the manifest."""
    with store.session() as session:
        board = store.board(session)
        rows = session.execute(
            select(QueryPartition.query_index, QueryPartition.private).order_by(QueryPartition.query_index)
        ).all()
        data_dir, digest = Path(board.data_dir), board.query_ids_sha256
    image_ids = read_query_ids(data_dir)
    if query_ids_digest(image_ids) != digest or len(rows) != len(image_ids):
        raise DatasetChangedError(
            f"{data_dir / 'query.parquet'} changed since the leaderboard was created; its hidden split no longer applies"
        )
    return data_dir, np.array([flag for _, flag in rows], dtype=bool)


def board_info(store: Store) -> dict:
    """Public description: name, sort metric, quotas, sizes. Never the split or its seed."""
    with store.session() as session:
        board = store.board(session)
        return {
            "name": board.name,
            "created_at": board.created_at.isoformat() + "Z",
            "sort_metric": board.sort_metric,
            "daily_quota": board.daily_quota,
            "total_quota": board.total_quota,
            "num_queries": board.num_queries,
            "private_fraction": board.private_fraction,
        }
