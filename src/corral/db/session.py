"""Engine and the one session pattern: one transaction per request or unit of work."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        _serialize_sqlite_writers(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def _serialize_sqlite_writers(engine: Engine) -> None:
    """SQLite has one writer at a time. Begin every transaction IMMEDIATE so a reader never has
    to upgrade its lock (which fails at once with 'database is locked'), and queue this
    process's transactions on a lock: a waiting thread wakes the moment the previous one ends,
    instead of polling in SQLite's busy handler (which sleeps up to 100 ms between tries).
    Other processes (`corral admin`) still meet the busy timeout."""
    turn = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if not turn.acquire(timeout=120):
            raise RuntimeError("waited 120 s for the database; a transaction is stuck")
        conn.info["corral.turn"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn)
            raise

    def _release(conn: Any) -> None:
        if conn.info.pop("corral.turn", False):
            turn.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Commit on success, roll back on any error: nothing is ever half-written."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
