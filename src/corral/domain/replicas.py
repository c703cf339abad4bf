"""The control-plane replicas sharing one database: where each one's gateway answers the
others, which one holds an agent (ADR 0008), and the singleton upkeep one leader does."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from corral.db.models import AccessToken, RegistrationToken, Replica, Server, now_ms
from corral.domain import audit

GONE_AFTER_MS = 10 * 60 * 1000
"""A replica not seen for this long is forgotten (it was stopped, or died)."""
KEEP_EXPIRED_MS = 24 * 3600 * 1000
"""Expired tokens are kept a day (a late call still gets 'expired', then 'invalid')."""


def announce(session: Session, replica_id: str, gateway_url: str) -> None:
    """This replica runs, and its gateway answers the others at `gateway_url`."""
    now = now_ms()
    row = session.get(Replica, replica_id)
    if row is None:
        session.add(Replica(id=replica_id, gateway_url=gateway_url, started_at=now, seen_at=now))
    else:
        row.gateway_url, row.seen_at = gateway_url, now


def seen(session: Session, replica_id: str) -> None:
    session.execute(update(Replica).where(Replica.id == replica_id).values(seen_at=now_ms()))


def seen_within(session: Session, ms: int) -> list[str]:
    """The replicas seen running lately (a control plane that stopped cleanly has left)."""
    return list(session.scalars(select(Replica.id).where(Replica.seen_at >= now_ms() - ms)))


def leave(session: Session, replica_id: str) -> None:
    session.execute(delete(Replica).where(Replica.id == replica_id))


def holder(session: Session, server_id: int) -> tuple[str, str] | None:
    """(replica id, gateway URL) of the replica whose gateway holds this server's agent."""
    row = session.execute(
        select(Replica.id, Replica.gateway_url)
        .join(Server, Server.replica_id == Replica.id)
        .where(Server.id == server_id, Server.status == "RUNNING")).first()
    return (row[0], row[1]) if row else None


def upkeep(session: Session, audit_retention_days: int = 365) -> dict[str, int]:
    """The leader's periodic work: forget replicas gone for good, tokens long expired, and
    audit events past their retention."""
    now = now_ms()
    gone = delete(Replica).where(Replica.seen_at < now - GONE_AFTER_MS)
    tokens = delete(AccessToken).where(AccessToken.expires_at < now - KEEP_EXPIRED_MS)
    registrations = delete(RegistrationToken).where(
        RegistrationToken.expires_at < now - KEEP_EXPIRED_MS)
    return {"replicas": _count(session.execute(gone)),
            "access_tokens": _count(session.execute(tokens)),
            "registration_tokens": _count(session.execute(registrations)),
            "audit_events": audit.purge(session, audit_retention_days)}


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
