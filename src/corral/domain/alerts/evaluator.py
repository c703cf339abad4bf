"""The evaluator: every enabled alert's condition compared with what was last seen, a firing
(and one delivery per destination, written in the same transaction) for each change."""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy import update as update_rows
from sqlalchemy.orm import Session

from corral.db.chunks import chunked
from corral.db.models import (
    Alert,
    AlertDelivery,
    AlertEvent,
    AlertState,
    User,
)
from corral.domain import views
from corral.domain.alerts import conditions
from corral.domain.alerts.conditions import (
    FIRST_VALUE_FIRES,
    GONE,
    Fleet,
    Seen,
    fleet_of,
    members_changed,
    rule,
)
from corral.domain.alerts.rules import is_threshold


def any_enabled(session: Session) -> bool:
    return session.scalar(select(Alert.id).where(Alert.enabled).limit(1)) is not None


def evaluate(session: Session, interval: float, now_ms: int | None = None, *,
             measured: bool = True) -> list[int]:
    """Compare every enabled alert's condition with what was last seen; record a firing (and
    its deliveries) for each change. Returns the new events' ids. `measured`: whether the
    threshold conditions are evaluated this time (their readings arrive every `interval`, so
    the caller may look at them less often than at the fleet's state)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    alerts = [a for a in session.scalars(select(Alert).where(Alert.enabled)
                                         .order_by(Alert.id))
              if measured or not is_threshold(str(a.condition.get("type")))]
    needs: dict[str, set[str]] = {}
    for alert in alerts:
        needs.setdefault(alert.environment_id, set()).add(alert.condition["resourceType"])
    fleets = {env: fleet_of(session, env, kinds) for env, kinds in needs.items()}
    created: list[AlertEvent] = []
    for alert in alerts:
        created.extend(_evaluate_one(session, alert, fleets[alert.environment_id], interval,
                                     now))
    session.flush()
    by_id = {a.id: a for a in alerts}
    for event in created:
        _deliveries(session, by_id[event.alert_id], event)
    return [e.id for e in created]


def _evaluate_one(session: Session, alert: Alert, fleet: Fleet, interval: float,
                  now: int) -> list[AlertEvent]:
    """What was seen is read as plain rows and only changes are written: at 10,000 servers
    an alert on all of them is one read and, most of the time, no write."""
    condition = alert.condition
    kind = condition["type"]
    rtype = condition["resourceType"]
    states: dict[str, tuple[bool, str | None]] = {
        resource: (firing, token) for resource, firing, token in session.execute(
            select(AlertState.resource, AlertState.firing, AlertState.token)
            .where(AlertState.alert_id == alert.id))}
    seen = conditions.seen(session, fleet, condition, interval, now)
    events: list[AlertEvent] = []
    added: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []

    def fire(state: str, what: Seen, message: str | None = None) -> None:
        event = AlertEvent(alert_id=alert.id, state=state, resource_type=rtype,
                           resource_id=what.resource_id, resource_name=what.name,
                           message=message if message is not None else what.message,
                           value=what.value, at=now)
        session.add(event)
        events.append(event)

    for key, what in seen.items():
        known = states.get(key)
        if known is None:
            # first sight: remember it; a level already holding fires, an event waits for
            # a change
            added.append({"alert_id": alert.id, "resource": key, "firing": bool(what.firing),
                          "token": what.token, "since": now})
            if what.firing:
                fire("FIRING", what)
            continue
        firing, old = known
        if what.firing is not None and what.firing != firing:
            changed.append({"alert_id": alert.id, "resource": key, "firing": what.firing,
                            "token": old, "since": now})
            fire("FIRING" if what.firing else "RESOLVED", what)
        elif what.token is not None and what.token != old:
            changed.append({"alert_id": alert.id, "resource": key, "firing": firing,
                            "token": what.token, "since": now})
            if old is None:
                if kind in FIRST_VALUE_FIRES:
                    fire("FIRING", what)
            elif kind.endswith(("member-added", "member-removed")):
                for member in members_changed(kind, old, what.token):
                    server = fleet.servers.get(int(member))
                    verb = "joined" if kind.endswith("added") else "left"
                    fire("FIRING", what, f"server {server.name if server else member} {verb} "
                                         f"{rtype} {what.name}")
            elif rule(kind)(old, what.token):
                fire("FIRING", what)
    gone = [key for key in states if key not in seen]
    for key in gone:  # deleted, or no longer a member
        firing, token = states[key]
        if kind in GONE and token == "exists":
            fire("FIRING", Seen(key, key), f"{rtype} {key} was deleted")
        elif firing:
            fire("RESOLVED", Seen(key, key), f"{rtype} {key} no longer exists")
    if added:
        session.execute(insert(AlertState), added)
    if changed:  # by primary key, in one executemany
        session.execute(update_rows(AlertState), changed)
    for some in chunked(gone, 1000):
        session.execute(delete(AlertState).where(AlertState.alert_id == alert.id,
                                                 AlertState.resource.in_(some)))
    return events


def _deliveries(session: Session, alert: Alert, event: AlertEvent) -> None:
    values = {"alertName": alert.name, "severity": alert.severity, "state": event.state,
              "resourceType": event.resource_type, "resource": event.resource_name or
              event.resource_id, "resourceId": event.resource_id, "message": event.message,
              "value": "" if event.value is None else f"{event.value:g}",
              "condition": alert.condition["type"]}
    payload = {"alert": {"id": alert.id, "name": alert.name, "severity": alert.severity,
                         "condition": alert.condition},
               "event": views.alert_event(event, []), "environmentId": alert.environment_id}
    for action in alert.actions:
        if action["type"] == "email":
            addresses = list(action.get("emails") or [])
            user_ids = action.get("userIds") or []
            if user_ids:
                addresses += [e for e in session.scalars(select(User.email).where(
                    User.id.in_(user_ids), User.organization_id == alert.organization_id,
                    User.enabled)) if e]
            if not addresses:
                continue
            subject = _fill(action.get("subject") or
                            "[${severity}] ${alertName}: ${state} for ${resource}", values)
            content = _fill(action.get("content") or
                            "${message}\n\nAlert: ${alertName} (${condition}, ${severity})\n"
                            "Resource: ${resourceType} ${resource} (${resourceId})\n"
                            "State: ${state}\n", values)
            session.add(AlertDelivery(
                event_id=event.id, kind="email", destination=",".join(dict.fromkeys(addresses)),
                payload={"subject": header_text(subject), "content": content}))
        elif action["type"] == "webhook":
            session.add(AlertDelivery(event_id=event.id, kind="webhook",
                                      destination=action["url"],
                                      payload={"body": payload,
                                               "secret": action.get("secret") or ""}))


def header_text(text: str, limit: int = 998) -> str:
    """Any stored text as one line of a mail header: every line break `str.splitlines` knows
    (U+2028 and U+0085 included) and every other control character becomes a space."""
    one_line = " ".join(text.splitlines())
    return "".join(" " if ord(c) < 32 or 0x7F <= ord(c) <= 0x9F else c
                   for c in one_line)[:limit]


def _fill(template: str, values: dict[str, str]) -> str:
    """`${name}` placeholders, as ARM's alert templates use; unknown ones stay as written."""
    return re.sub(r"\$\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))), template)
