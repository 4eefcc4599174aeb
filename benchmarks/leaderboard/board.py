"""Creating a leaderboard for a built dataset, where its database lives, and its public description.

The database holds the hidden private queries, the private scores and the token hashes, so it never
sits inside the release: by default `init` puts it in the host folder beside it (`OUT.host/`, mode
0700; the file 0600) and leaves a marker in the release (`DatasetLayout.leaderboard_marker`) that
says where it is. `--data OUT` finds it through that marker; `opreid build-split` sees the marker
and refuses to overwrite the release a leaderboard scores against.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from benchmarks.leaderboard.errors import (
    AlreadyInitialisedError,
    DatasetChangedError,
    DatasetUnscorableError,
    LeaderboardError,
)
from benchmarks.leaderboard.partition import draw_private, new_seed, query_ids_digest
from benchmarks.leaderboard.phases import initial_phases, load_phases, write_phases
from benchmarks.leaderboard.settings import BoardSettings
from benchmarks.leaderboard.standings import check_sort_metric
from benchmarks.leaderboard.store import DB_FILENAME, SCHEMA_VERSION, Board, QueryPartition, Store, utcnow
from benchmarks.leaderboard.tokens import hash_token, new_token
from manifests import QUERY, DatasetLayout, ManifestError, atomic_write_text, read_manifest

log = logging.getLogger(__name__)


def read_query_ids(data_dir: str | Path) -> list[str]:
    """The release's query ids in order; DatasetUnscorableError (host side) when it is not a built dataset."""
    layout = DatasetLayout(data_dir)
    try:
        table = read_manifest(layout.query, QUERY, columns=["image_id"])
    except ManifestError as exc:
        raise DatasetUnscorableError(f"not a built dataset: {exc}") from None
    if not layout.ground_truth.is_file():
        raise DatasetUnscorableError(f"not a built dataset: {layout.ground_truth} is missing")
    return table.column("image_id").to_pylist()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _refuse_inside_release(store: Store, data_dir: Path) -> None:
    if store.is_sqlite and store.url.database:
        path = Path(store.url.database).resolve()
        if _inside(path, data_dir):
            raise LeaderboardError(
                f"the database {path} would sit inside the release {data_dir}, where copying or packing it "
                f"could ship the private split and scores; put it outside (default: "
                f"{DatasetLayout(data_dir).host_dir / DB_FILENAME})"
            )


def create_board(store: Store, data_dir: str | Path, settings: BoardSettings = BoardSettings()) -> str:
    """Create the tables and the leaderboard; draw the hidden split. Returns the host token (shown once)."""
    check_sort_metric(settings.sort_metric)
    for label, value in (("daily", settings.daily_quota), ("total", settings.total_quota)):
        if value is not None and value < 1:
            raise LeaderboardError(f"{label} quota must be at least 1 (or unlimited), got {value}")
    if settings.selection_limit < 1:
        raise LeaderboardError(f"the selection limit must be at least 1, got {settings.selection_limit}")
    windows = initial_phases(settings.dev_start, settings.dev_end, settings.final_start, settings.final_end)
    data_dir = Path(data_dir).resolve()
    _refuse_inside_release(store, data_dir)
    image_ids = read_query_ids(data_dir)
    seed = settings.seed if settings.seed is not None else new_seed()
    try:
        private = draw_private(len(image_ids), seed, settings.private_fraction)
    except ValueError as exc:
        raise LeaderboardError(str(exc)) from None
    store.create_file()
    store.create_schema()
    token = new_token()
    with store.locked() as session:
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
                schema_version=SCHEMA_VERSION,
                selection_limit=settings.selection_limit,
            )
        )
        write_phases(session, windows)
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


def board_info(store: Store, now=None) -> dict:
    """Public description: name, sort metric, quotas, sizes, phases. Never the split or its seed."""
    now = now or utcnow()
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
            "selection_limit": board.selection_limit,
            "phases": [p.to_json(now) for p in load_phases(session)],
            "revealed_at": None if board.revealed_at is None else board.revealed_at.isoformat() + "Z",
        }


# ---- where the database lives -------------------------------------------------------------------
@dataclass(frozen=True)
class InitResult:
    db: str  # the database file, or its URL with the password hidden
    host_token: str
    marker: Path

    @property
    def is_file(self) -> bool:
        return "://" not in self.db

    def to_json(self) -> dict:
        return {"db": self.db, "host_token": self.host_token, "marker": str(self.marker)}


def default_database(data_dir: str | Path) -> Path:
    """`OUT.host/leaderboard.db`: beside the release, never in it."""
    return DatasetLayout(data_dir).host_dir / DB_FILENAME


def _marker_database(data_dir: Path) -> str | None:
    marker = DatasetLayout(data_dir).leaderboard_marker
    if not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["database"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LeaderboardError(f"{marker} is not a readable leaderboard marker ({exc}); pass --db") from None


def init_board(
    data_dir: str | Path,
    settings: BoardSettings = BoardSettings(),
    *,
    db: str | None = None,
    host_dir: str | Path | None = None,
) -> InitResult:
    """`opreid leaderboard init`: create the board in `db`, else in HOST_DIR/leaderboard.db (default
    OUT.host/, created 0700), and leave the marker in the release that records where it is."""
    data_dir = Path(data_dir)
    if db is None:
        folder = Path(host_dir) if host_dir is not None else DatasetLayout(data_dir).host_dir
        if _inside(folder.resolve(), data_dir.resolve()):
            raise LeaderboardError(
                f"the host folder {folder} is inside the release {data_dir}; choose one outside it"
            )
        read_query_ids(data_dir)  # a clear error before any folder is made
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = str(folder / DB_FILENAME)
    store = Store(db)
    try:
        token = create_board(store, data_dir, settings)
    finally:
        store.dispose()
    where = str(Path(store.url.database).resolve()) if store.is_sqlite else store.display_url
    marker = DatasetLayout(data_dir).leaderboard_marker
    atomic_write_text(
        marker,
        json.dumps({"database": where, "created_at": utcnow().isoformat() + "Z", "name": settings.name},
                   indent=2, sort_keys=True) + "\n",
    )  # fmt: skip
    return InitResult(store.location, token, marker)


def open_store(db: str | None, data_dir: str | Path | None) -> Store:
    """The leaderboard named by `--db`, else the one of release `data_dir`: its marker's database, the
    default host folder, or (made by an older opreid) OUT/leaderboard.db, with a warning to move it."""
    if db:
        return Store(db)
    if data_dir is None:
        raise LeaderboardError(
            "which leaderboard? pass --db PATH|URL or --data OUT, or set OPREID_LEADERBOARD_DB"
        )
    data_dir = Path(data_dir)
    recorded = _marker_database(data_dir) if data_dir.is_dir() else None
    if recorded is not None and "://" in recorded:
        raise LeaderboardError(
            f"the leaderboard of {data_dir} is in {recorded}; pass --db with its full URL "
            "(or set OPREID_LEADERBOARD_DB)"
        )
    if recorded is not None and Path(recorded).is_file():
        return Store(recorded)
    default = default_database(data_dir)
    if default.is_file():
        return Store(default)
    legacy = data_dir / DB_FILENAME
    if legacy.is_file():
        host = DatasetLayout(data_dir).host_dir
        log.warning(
            "the leaderboard database sits inside the release (%s), where copying or packing the release "
            "can ship it; move it out: mkdir -m 700 %s && mv %s* %s/",
            legacy, host, legacy, host,
        )  # fmt: skip
        return Store(legacy)
    where = f"{recorded} (recorded in the release) nor {default}" if recorded else str(default)
    raise LeaderboardError(
        f"no leaderboard at {where}; run `opreid leaderboard init --data {data_dir}` or pass --db"
    )
