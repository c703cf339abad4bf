"""Engine and the one session pattern: one transaction per request or unit of work."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from corral import jsontext

T = TypeVar("T")


def make_engine(url: str, **kwargs: Any) -> Engine:
    # JSON columns (addresses, configurations, ...) are read by the thousand for every list
    kwargs.setdefault("json_deserializer", jsontext.loads)
    if url.startswith("sqlite"):
        # as many connections as the API's worker threads may use at once: a connection made
        # and dropped per request (the pool's overflow) costs its PRAGMAs every time
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=20, max_overflow=20, **kwargs
        )
        _serialize_sqlite_writers(engine)
        return engine
    # a database that does not answer (restarting, out of reach) fails a call within seconds,
    # which the API answers with 503, instead of holding it
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=10,
                         connect_args={"connect_timeout": 5}, **kwargs)


READ_ONLY = "corral_read_only"
"""Execution option of the engine behind read-only sessions (see `make_read_sessionmaker`)."""


def _serialize_sqlite_writers(engine: Engine) -> None:
    """SQLite has one writer at a time. Writing transactions begin IMMEDIATE so a reader never
    has to upgrade its lock (which fails at once with 'database is locked'), and queue in this
    process on a lock: a waiting thread wakes the moment the previous one ends, instead of
    polling in SQLite's busy handler (which sleeps up to 100 ms between tries). Read-only
    transactions take neither: in WAL mode a reader sees the last commit and never waits for the
    writer. Other processes (`corral admin`) still meet the busy timeout."""
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
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN DEFERRED")
            return
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


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for requests that only read: on SQLite they never queue behind a writer (WAL
    lets readers run beside the one writer); PostgreSQL's MVCC gives that already.

    Each sees one snapshot, taken at its first statement, so that an answer read in several
    statements (a deployment, then its rollout) never mixes two moments: SQLite's read
    transaction does so by itself; on PostgreSQL it takes REPEATABLE READ, where a read-only
    transaction never fails (READ COMMITTED gave each statement its own snapshot)."""
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return sessionmaker(engine.execution_options(**options), expire_on_commit=False)


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


async def in_worker(factory: sessionmaker[Session], fn: Callable[..., T], *args: Any) -> T:
    """`fn(session, *args)` in its own transaction on a worker thread, for code on the event
    loop (the gateway, log reads)."""

    def work() -> T:
        with transaction(factory) as session:
            return fn(session, *args)

    return await asyncio.to_thread(work)


def libpq_url(engine: Engine) -> str:
    """The engine's PostgreSQL URL for a plain psycopg connection."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def dedicated_connection(engine: Engine) -> psycopg.AsyncConnection[Any]:
    """A PostgreSQL connection of its own, outside the pool (LISTEN, the leader's advisory
    lock: both live exactly as long as their connection). Keepalives notice a database that
    went away without closing it within about 10 s."""
    return await psycopg.AsyncConnection.connect(
        libpq_url(engine), autocommit=True, connect_timeout=5, keepalives=1,
        keepalives_idle=5, keepalives_interval=2, keepalives_count=3)
