"""Tables and engine of the leaderboard store (SQLAlchemy 2; a SQLite file or PostgreSQL).

One database holds one leaderboard. `query_partition` is the host-only table of the hidden
public/private query split; nothing public ever reads it except the scorer call. `phase` holds the
development and final windows; each submission records its phase, its kind (a ranked list is
truncated and ranked apart) and whether its team selected it for the private board.
`pending_submission` holds the submissions received and still being scored, so that the reveal
can wait for those of the final phase; it is an addition within schema 2, created on first use.

Schema versions: 1 (no phases, no selection) and 2. A version-1 database is refused with the
command that upgrades it in place (`opreid leaderboard migrate`, benchmarks/leaderboard/migrate.py).

Concurrency: every write happens in `Store.locked()`. On SQLite it starts with `BEGIN IMMEDIATE`:
the write lock is taken first, waiting up to the busy timeout, so one writer runs at a time across
processes. (A plain `BEGIN` that reads and then writes cannot wait: when another connection wrote
in between, SQLite answers "database is locked" at once.) On PostgreSQL the caller locks the rows
it decides on with `SELECT ... FOR UPDATE`: the board row for the phase and the reveal, the team
row for its quota and selection, always in that order.
"""

from __future__ import annotations

import contextlib
import logging
import os
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
    select,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from benchmarks.leaderboard.errors import (
    DatabaseUnavailableError,
    LeaderboardError,
    NotInitialisedError,
    OutdatedSchemaError,
)

log = logging.getLogger(__name__)

DB_FILENAME = "leaderboard.db"
#: The schema this code reads and writes (`board.schema_version`; version 1 had no such column).
SCHEMA_VERSION = 2
#: The phases of a leaderboard, in their order.
PHASES = ("development", "final")
_IMMEDIATE = "opreid_begin_immediate"
#: How long a SQLite connection waits for another writer before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 60_000


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
    # schema 2
    schema_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    selection_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)  # per team and phase
    revealed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # private board public


class Phase(Base):
    """A submission window. `starts_at` None: development is open from the start, final unscheduled;
    `ends_at` None: open until the host closes it."""

    __tablename__ = "phase"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


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
    # schema 2
    phase: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)  # distances | ranked | features
    truncated_at: Mapped[int | None] = mapped_column(Integer, nullable=True)  # K of a ranked list
    metric: Mapped[str | None] = mapped_column(String(16), nullable=True)  # distance of a features file
    selected: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=False)
    team: Mapped[Team] = relationship(back_populates="submissions")

    @property
    def track(self) -> str:
        """Submissions are ranked only against their own track: full rankings, or top-K lists per K."""
        return track_name(self.truncated_at)


class PendingSubmission(Base):
    """A submission received in a phase and still being scored. The reveal waits for those of the final
    phase until `expires_at`; after that, the submission can no longer be recorded once revealed."""

    __tablename__ = "pending_submission"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("team.id"))
    phase: Mapped[str] = mapped_column(String(32), index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


def track_name(truncated_at: int | None) -> str:
    return "full" if truncated_at is None else f"top-{truncated_at}"


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
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
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
            self.engine = create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _sqlite_hooks(self.engine)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._schema_seen = False
        self._current = False
        self._pending_table = False

    @property
    def display_url(self) -> str:
        """The URL for logs and messages: password hidden."""
        return self.url.render_as_string(hide_password=True)

    @property
    def location(self) -> str:
        """What a user types for `--db`: the file of a SQLite database, else the URL (password hidden)."""
        return self.url.database if self.is_sqlite and self.url.database else self.display_url

    @contextlib.contextmanager
    def _available(self) -> Iterator[None]:
        """A server that is down, or a file that cannot be opened or stays locked, is a
        DatabaseUnavailableError naming the database (for the host; the web app does not show it)."""
        try:
            yield
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
            raise DatabaseUnavailableError(f"database unavailable: {self.display_url}: {reason}") from None

    def create_schema(self) -> None:
        with self._available():
            Base.metadata.create_all(self.engine)

    def create_file(self) -> None:
        """A new SQLite file is created readable by its owner only (0600): it holds the private split,
        the private scores and the token hashes. SQLite gives its -wal and -shm files the same mode."""
        if not self.is_sqlite or not self.url.database:
            return
        path = Path(self.url.database)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        os.close(fd)

    def ensure_pending_table(self) -> None:
        """Create `pending_submission` in a schema-2 database made before it existed (idempotent)."""
        if not self._pending_table:
            with self._available():
                Base.metadata.create_all(self.engine, tables=[PendingSubmission.__table__])
            self._pending_table = True

    def has_schema(self) -> bool:
        if not self._schema_seen:
            with self._available():
                self._schema_seen = inspect(self.engine).has_table(Board.__tablename__)
        return self._schema_seen

    def columns(self, table: str) -> set[str]:
        with self._available():
            return {c["name"] for c in inspect(self.engine).get_columns(table)}

    def schema_version(self) -> int:
        """1 for a database made before phases and selection, else the stored version."""
        if "schema_version" not in self.columns(Board.__tablename__):
            return 1
        with self._available(), self.engine.connect() as conn:
            row = conn.execute(select(Board.schema_version).where(Board.id == 1)).first()
        if row is None:  # no board yet: `board()` says so
            return SCHEMA_VERSION
        return int(row[0] or 1)

    def forget_schema(self) -> None:
        """Look at the tables again on next use (after a migration)."""
        self._schema_seen = self._current = False

    def require_current(self) -> None:
        if self._current:
            return
        version = self.schema_version()
        if version < SCHEMA_VERSION:
            raise OutdatedSchemaError(
                f"{self.location} holds a leaderboard of schema {version} (made by an older opreid: no "
                f"phases, no selection); back the file up, then run `opreid leaderboard migrate --db "
                f"{self.location} --token HOST` to upgrade it in place"
            )
        if version > SCHEMA_VERSION:
            raise OutdatedSchemaError(
                f"{self.location} holds a leaderboard of schema {version}, newer than this opreid "
                f"reads ({SCHEMA_VERSION}); upgrade opreid"
            )
        self._current = True

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reading; commits on success. Writes go through `locked()`."""
        with self._available(), self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def locked(self) -> Iterator[Session]:
        """A write transaction; on SQLite it holds the write lock from its first statement (waiting for
        it up to the busy timeout); commits on success."""
        with self._available(), self.engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    @contextlib.contextmanager
    def locked_connection(self) -> Iterator[Connection]:
        """`locked()` for Core statements (schema changes): a connection inside a write transaction."""
        with self._available(), self.engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn

    def board(self, session: Session, *, lock: bool = False) -> Board:
        """The board row; `lock` holds it until the transaction ends (PostgreSQL; SQLite's
        `locked()` already holds the whole database)."""
        if not self.has_schema():
            raise NotInitialisedError(f"no leaderboard in {self.display_url}; run `opreid leaderboard init`")
        self.require_current()
        board = session.get(Board, 1, with_for_update=lock and not self.is_sqlite)
        if board is None:
            raise NotInitialisedError(f"no leaderboard in {self.display_url}; run `opreid leaderboard init`")
        return board

    def dispose(self) -> None:
        self.engine.dispose()
