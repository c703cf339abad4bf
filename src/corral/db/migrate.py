"""Apply Alembic migrations programmatically (at start and by `corral db upgrade`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0013"
"""The newest revision. A database already there starts without loading Alembic and its
scripts, a fifth of a second of every start (tests/unit/test_migrations.py holds this equal
to the scripts' head)."""
_PG_LOCK_KEY = 0x636F7272616C  # replicas starting together migrate one at a time


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextmanager
def exclusive(engine: Engine) -> Iterator[None]:
    """Start-up work that one replica at a time may do (migrating, creating the shared keys,
    the first organization): a PostgreSQL advisory lock held on a connection of its own. One
    process on SQLite needs none."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()


def upgrade(engine: Engine) -> None:
    with exclusive(engine):
        if revision(engine) == HEAD:
            return
        from alembic import command

        with engine.connect() as conn, _foreign_keys_off(conn):
            cfg = alembic_config(str(engine.url))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()


def revision(engine: Engine) -> str | None:
    """The database's revision, where Alembic keeps it; None for a new database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        found: str | None = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return found


@contextmanager
def _foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite rebuilds a table to change it (a copy, the old one dropped, the copy renamed).
    With foreign keys on, dropping the old one would cascade to every row that refers to it,
    so migrations run with them off, as SQLite's documentation prescribes, and every reference
    is checked before they are on again. The pragma must be set outside a transaction: on the
    driver's connection, before the migration's begins."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left rows whose references are broken: {broken[:5]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")
