"""Upgrading a leaderboard database in place, from schema 1 (no phases, no selection) to 2.

Adds the `phase` table and the new columns of `board` and `submission` (ALTER TABLE ... ADD COLUMN,
which SQLite and PostgreSQL both run inside a transaction), then fills them: every recorded
submission joins the development phase, which stays open from the start with no end (the host
schedules the final phase afterwards); kind and ranked-list length come from each submission's
stored scorer report; nothing is selected, so each team's best public submission counts.
"""

from __future__ import annotations

import logging

from sqlalchemy import Column, MetaData, Table, inspect, select, text, update
from sqlalchemy.engine import Connection

from benchmarks.leaderboard.errors import AuthError, LeaderboardError
from benchmarks.leaderboard.phases import initial_phases, write_phases
from benchmarks.leaderboard.settings import BoardSettings
from benchmarks.leaderboard.store import (
    PHASES,
    SCHEMA_VERSION,
    Base,
    Board,
    PendingSubmission,
    Phase,
    Store,
    Submission,
)
from benchmarks.leaderboard.tokens import matches

log = logging.getLogger(__name__)

#: Columns added by schema 2, per table (their definitions are the ORM's).
_ADDED = {
    Board.__tablename__: ("schema_version", "selection_limit", "revealed_at"),
    Submission.__tablename__: ("phase", "kind", "truncated_at", "metric", "selected"),
}


def _add_column(conn: Connection, table: str, name: str) -> None:
    column: Column = Base.metadata.tables[table].c[name]
    ddl = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {ddl}'))


def migrate(store: Store, host_token: str | None) -> dict:
    """Upgrade `store` to the current schema (host token required); a no-op when it is current."""
    if not store.has_schema():
        raise LeaderboardError(f"no leaderboard in {store.display_url}; run `opreid leaderboard init`")
    before = store.schema_version()
    if before >= SCHEMA_VERSION:
        return {"db": store.display_url, "from": before, "to": before, "migrated": False}
    with store.locked_connection() as conn:
        board = Table(Board.__tablename__, MetaData(), autoload_with=conn)
        row = conn.execute(select(board.c.host_token_hash).where(board.c.id == 1)).first()
        if row is None:
            raise LeaderboardError(f"no leaderboard in {store.display_url}; run `opreid leaderboard init`")
        if not host_token or not matches(host_token, row[0]):
            raise AuthError("migrating needs the host token (--token or OPREID_LEADERBOARD_TOKEN)")
        for table, names in _ADDED.items():
            present = {c["name"] for c in inspect(conn).get_columns(table)}
            for name in names:
                if name not in present:
                    _add_column(conn, table, name)
        Base.metadata.create_all(conn, tables=[Phase.__table__, PendingSubmission.__table__])
        conn.execute(
            update(Board.__table__)
            .where(Board.__table__.c.id == 1)
            .values(schema_version=SCHEMA_VERSION, selection_limit=BoardSettings().selection_limit)
        )
        subs = Submission.__table__
        for sid, report in conn.execute(select(subs.c.id, subs.c.all_metrics)).all():
            kind = (report or {}).get("format")
            truncated = (report or {}).get("truncated_at") if kind == "ranked" else None
            conn.execute(
                update(subs).where(subs.c.id == sid).values(
                    phase=PHASES[0], kind=kind, selected=False,
                    truncated_at=None if truncated is None else int(truncated),
                )
            )  # fmt: skip
    with store.locked() as session:
        if session.get(Phase, PHASES[0]) is None:
            write_phases(session, initial_phases())
    store.forget_schema()
    log.info("migrated %s from schema %d to %d", store.display_url, before, SCHEMA_VERSION)
    return {"db": store.display_url, "from": before, "to": SCHEMA_VERSION, "migrated": True}
