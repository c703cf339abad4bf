"""A counter of committed changes, so that an answer rendered once can be served again until the
data under it changes (`corral.api.answers`).

The counter moves after every commit that wrote to a table an answer may read: any ORM flush or
INSERT/UPDATE/DELETE through a session made by the watched sessionmaker, except on the tables
in `UNREAD_TABLES` (tokens, the audit trail, measurements: written all the time, read by no
kept answer). It moves *after* the commit, so an answer rendered from data older than a change
always carries an older count than the one a reader sees once the change is done. Other
replicas' commits reach this one as notices (`gateway/notices.py`); while they cannot be heard,
`heard` is False and nothing may be served from what was kept."""

from __future__ import annotations

import threading

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

WROTE_KEY = "corral.answers_changed"
"""`Session.info` flag: this transaction wrote something an answer may read."""

UNREAD_TABLES = frozenset({
    "access_tokens", "registration_tokens", "audit_events", "metric_points", "replicas",
    "control_plane_secrets", "revoked_certificates", "alerts", "alert_states", "alert_events",
    "alert_deliveries",
})
"""Tables that no kept answer reads. A table missing here only costs kept answers."""


class ChangeCounter:
    def __init__(self, *, heard: bool = True) -> None:
        self._value = 0
        self._lock = threading.Lock()
        self.heard = heard
        """Whether every replica's changes reach this counter (always, on one SQLite process;
        on PostgreSQL, while this replica listens for notices)."""

    @property
    def value(self) -> int:
        return self._value

    def move(self) -> None:
        with self._lock:
            self._value += 1


def watch(sessions: sessionmaker[Session], counter: ChangeCounter) -> None:
    """Move `counter` after each commit of a `sessions` transaction that wrote a read table."""

    def statement(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            table = getattr(getattr(state.statement, "table", None), "name", None)
            if table not in UNREAD_TABLES:
                state.session.info[WROTE_KEY] = True

    def flush(session: Session, _context: object, _instances: object) -> None:
        if WROTE_KEY in session.info:
            return
        for obj in (*session.new, *session.dirty, *session.deleted):
            if getattr(obj, "__tablename__", None) not in UNREAD_TABLES:
                session.info[WROTE_KEY] = True
                return

    def committed(session: Session) -> None:
        # a rollback leaves the flag for the session's next commit: one move too many costs
        # a kept answer, one too few would serve a stale one
        if session.info.pop(WROTE_KEY, False):
            counter.move()

    event.listen(sessions, "do_orm_execute", statement)
    event.listen(sessions, "before_flush", flush)
    event.listen(sessions, "after_commit", committed)
