"""The outbox's bookkeeping: which notifications are due, and what became of each attempt
(the sending itself is the gateway's, `gateway/alerting.py`)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.db.models import (
    Alert,
    AlertDelivery,
    AlertEvent,
)


def due(session: Session, now_ms: int, limit: int = 50, *, sending: Iterable[int] = (),
        busy: Iterable[str] = ()) -> list[tuple[AlertDelivery, str]]:
    """Notifications to send now with their environment, oldest first: not those `sending`
    already, nor any of the `busy` environments (they have their share in flight), so that
    no environment's backlog holds another's back."""
    query = (select(AlertDelivery, Alert.environment_id)
             .join(AlertEvent, AlertEvent.id == AlertDelivery.event_id)
             .join(Alert, Alert.id == AlertEvent.alert_id)
             .where(AlertDelivery.state == "PENDING", AlertDelivery.next_at <= now_ms)
             .order_by(AlertDelivery.id).limit(limit))
    if sending := sorted(set(sending)):
        query = query.where(AlertDelivery.id.not_in(sending))
    if busy := sorted(set(busy)):
        query = query.where(Alert.environment_id.not_in(busy))
    rows = session.execute(query).all()
    for row, _env in rows:
        session.expunge(row)
    return [(row, env) for row, env in rows]


def still_due(session: Session, delivery_id: int) -> bool:
    """Looked at just before sending: the alert may have been deleted (its notifications go
    with it) or the notification sent by another leader meanwhile."""
    state = session.scalar(select(AlertDelivery.state).where(AlertDelivery.id == delivery_id))
    return state == "PENDING"


def delivered(session: Session, delivery_id: int, now_ms: int) -> None:
    row = session.get(AlertDelivery, delivery_id)
    if row is not None:
        row.state, row.delivered_at = "DELIVERED", now_ms
        row.attempts += 1


def failed(session: Session, delivery_id: int, error: str, now_ms: int, attempts: int,
           first_wait: float) -> None:
    """Another attempt later (the wait doubles, up to ten minutes), or a dead letter."""
    row = session.get(AlertDelivery, delivery_id)
    if row is None:
        return
    row.attempts += 1
    row.last_error = error[:2000]
    if row.attempts >= attempts:
        row.state = "DEAD"
    else:
        row.next_at = now_ms + int(min(600.0, first_wait * 2 ** (row.attempts - 1)) * 1000)
