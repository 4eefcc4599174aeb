"""Tables and engine of the leaderboard store (SQLAlchemy 2; a SQLite file or PostgreSQL).

One database holds one leaderboard. `query_partition` is the host-only table of the hidden
public/private query split; nothing public ever reads it except the scorer call.

Concurrency: `Store.locked()` opens the transaction in which a quota is checked and a submission
inserted. On SQLite it starts with `BEGIN IMMEDIATE` (one writer at a time, across processes); on
PostgreSQL the caller locks the team row with `SELECT ... FOR UPDATE`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from benchmarks.leaderboard.errors import LeaderboardError, NotInitialisedError

log = logging.getLogger(__name__)

DB_FILENAME = "leaderboard.db"
_IMMEDIATE = "opreid_begin_immediate"


def utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite (no time zones) and PostgreSQL."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Board(Base):
    """The single leaderboard row: dataset, settings, host token hash, partition seed."""

    __tablename__ = "board"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    data_dir: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    host_token_hash: Mapped[str] = mapped_column(String(64))
    sort_metric: Mapped[str] = mapped_column(String(32))
    daily_quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    total_quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    private_fraction: Mapped[float] = mapped_column(Float)
    partition_seed: Mapped[str] = mapped_column(String(40))  # host-only; a decimal string (64-bit)
    query_ids_sha256: Mapped[str] = mapped_column(String(64))
    num_queries: Mapped[int] = mapped_column(Integer)


class QueryPartition(Base):
    """Host-only: which query rows are scored in the private subset."""

    __tablename__ = "query_partition"
    query_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[str] = mapped_column(String(200))
    private: Mapped[bool] = mapped_column(Boolean)


class Team(Base):
    __tablename__ = "team"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    submissions: Mapped[list[Submission]] = relationship(back_populates="team")


class Submission(Base):
    """A valid, scored submission (invalid ones are refused before anything is written)."""

    __tablename__ = "submission"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("team.id"), index=True)
    method: Mapped[str] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    filename: Mapped[str] = mapped_column(String(255))
    file_size: Mapped[int] = mapped_column(BigInteger)
    file_sha256: Mapped[str] = mapped_column(String(64))
    scorer_version: Mapped[str] = mapped_column(String(64))
    manifests_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)  # when recorded; quota day
    baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    public_metrics: Mapped[dict] = mapped_column(JSON)
    private_metrics: Mapped[dict] = mapped_column(JSON)  # host-only
    all_metrics: Mapped[dict] = mapped_column(JSON)  # host-only: all queries reveal the private score
    team: Mapped[Team] = relationship(back_populates="submissions")


def database_url(db: str | Path) -> URL:
    """A SQLAlchemy URL from a URL or a file path; `postgresql://` uses psycopg 3."""
    text = str(db)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise LeaderboardError(f"not a database URL: {exc}") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def _sqlite_hooks(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, emit BEGIN, so that `locked()` can say BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # noqa: ANN001
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Store:
    """An engine plus sessions over one leaderboard database."""

    def __init__(self, db: str | Path):
        self.url = database_url(db)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            path = Path(self.url.database or "")
            if self.url.database and not path.parent.is_dir():
                raise LeaderboardError(f"folder of the database does not exist: {path.parent}")
            self.engine = create_engine(self.url, connect_args={"timeout": 60})
            _sqlite_hooks(self.engine)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._schema_seen = False

    @property
    def display_url(self) -> str:
        """The URL for logs and messages: password hidden."""
        return self.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def _available(self) -> Iterator[None]:
        """A server that is down or a file that cannot be opened is a LeaderboardError naming the database."""
        try:
            yield
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
            raise LeaderboardError(f"database unavailable: {self.display_url}: {reason}") from None

    def create_schema(self) -> None:
        with self._available():
            Base.metadata.create_all(self.engine)

    def has_schema(self) -> bool:
        if not self._schema_seen:
            with self._available():
                self._schema_seen = inspect(self.engine).has_table(Board.__tablename__)
        return self._schema_seen

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A read/write session; commits on success."""
        with self._available(), self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def locked(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock from its first statement (SQLite)."""
        with self._available(), self.engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    def board(self, session: Session) -> Board:
        if not self.has_schema():
            raise NotInitialisedError(f"no leaderboard in {self.display_url}; run `opreid leaderboard init`")
        board = session.get(Board, 1)
        if board is None:
            raise NotInitialisedError(f"no leaderboard in {self.display_url}; run `opreid leaderboard init`")
        return board

    def dispose(self) -> None:
        self.engine.dispose()
