"""The audit trail: every change asked of the control plane, who asked, from where, and how it
ended. Recorded by the HTTP layer once the answer is known (`api/audit.py`), for the API and
the console alike (the CLI speaks the API); read by admins for the whole organization and by
others for their environments. Nothing updates or deletes an event but the retention sweep."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from corral.db.models import AuditEvent, ConnectedApp, Organization, User, now_ms
from corral.db.session import transaction
from corral.domain import views
from corral.domain.identity import Principal
from corral.errors import Forbidden, NotFound

MAX_PAGE = 1000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    kind: str
    """user, connectedApp, registrationToken or anonymous"""
    actor_id: str | None
    actor_name: str
    organization_id: str | None
    environment_id: str | None
    source: str
    action: str
    resource: str
    status: int
    description: str = ""
    """what `describe` said (several changes joined by "; "), or nothing"""


def record(session: Session, event: Event) -> None:
    """Store one event; the actor's name is looked up when only its id is known."""
    name = event.actor_name
    if not name and event.actor_id and event.kind == "user":
        name = session.scalar(select(User.username).where(User.id == event.actor_id)) or ""
    elif not name and event.actor_id and event.kind == "connectedApp":
        name = session.scalar(select(ConnectedApp.name)
                              .where(ConnectedApp.client_id == event.actor_id)) or ""
    organization = event.organization_id or session.scalar(
        select(Organization.id).order_by(Organization.created_at).limit(1))
    session.add(AuditEvent(
        organization_id=organization, environment_id=event.environment_id, time=now_ms(),
        actor_kind=event.kind, actor_id=event.actor_id, actor_name=_text(name, 255),
        source=_text(event.source, 64), action=_text(event.action, 255),
        resource=_text(event.resource, 1024), description=_text(event.description, 255),
        outcome="success" if event.status < 400 else "failure", status=event.status))


def _text(value: str, limit: int) -> str:
    """What a caller sent, as a column can hold it: a path may carry a NUL (`%00`), which
    PostgreSQL's text refuses, and one refused event would cost the whole burst its record."""
    return value.replace("\x00", "\\x00")[:limit]


class Recorder:
    """Events stored together: many answers at once cost one transaction for their events, not
    one each (a create's own write was a fifth of its cost). `add` keeps an event; `store`
    writes every event kept, after any store under way: the audit trail's readers call it
    first, so they see the event of every answer already given, and so does closing."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._kept: list[Event] = []
        self._lock = threading.Lock()
        self._storing = threading.Lock()

    def add(self, event: Event) -> bool:
        """True when it is the only event kept: the caller sees that a `store` follows."""
        with self._lock:
            self._kept.append(event)
            return len(self._kept) == 1

    def store(self) -> None:
        with self._storing:
            with self._lock:
                events, self._kept = self._kept, []
            if not events:
                return
            try:
                self._write(events)
            except SQLAlchemyError:
                if len(events) == 1:
                    raise
                # one event the database refuses costs only its own record, not its burst's
                for event in events:
                    try:
                        self._write([event])
                    except SQLAlchemyError:
                        log.exception("could not record the audit event of %s", event.action)

    def _write(self, events: list[Event]) -> None:
        with transaction(self._sessions) as session:
            for event in events:
                record(session, event)


def search(session: Session, principal: Principal, organization_id: str, *,
           environment_id: str | None = None, actor: str | None = None,
           resource: str | None = None, action: str | None = None,
           since: int | None = None, until: int | None = None,
           offset: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
    """Newest first. Admins see the whole organization; others only events of the
    environments they may use (never the organization-wide ones: sign-ins, users, apps)."""
    if organization_id != principal.organization_id:
        raise NotFound(f"organization {organization_id[:64]} not found")
    query = select(AuditEvent).where(AuditEvent.organization_id == organization_id)
    if not principal.may("admin"):
        if environment_id is not None and not principal.may_use_environment(environment_id):
            raise Forbidden(f"this token may not read environment {environment_id[:64]}")
        query = query.where(AuditEvent.environment_id.is_not(None))
        if principal.environment_ids is not None:
            query = query.where(AuditEvent.environment_id.in_(principal.environment_ids))
    if environment_id is not None:
        query = query.where(AuditEvent.environment_id == environment_id)
    if actor:
        query = query.where(AuditEvent.actor_name == actor)
    if resource:
        query = query.where(AuditEvent.resource.startswith(resource, autoescape=True))
    if action:
        query = query.where(AuditEvent.action.contains(action, autoescape=True))
    if since is not None:
        query = query.where(AuditEvent.time >= since)
    if until is not None:
        query = query.where(AuditEvent.time < until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.time.desc(), AuditEvent.id.desc())
                           .offset(offset).limit(min(limit, MAX_PAGE))).all()
    return [views.audit_event(e) for e in rows], total




def purge(session: Session, retention_days: int) -> int:
    cutoff = now_ms() - retention_days * 24 * 3600 * 1000
    result = session.execute(delete(AuditEvent).where(AuditEvent.time < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
