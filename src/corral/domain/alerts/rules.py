"""What an alert is: the conditions ARM's standalone alerts know (and Corral's own), an alert's
checks on the way in, and reading alerts and their history back."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from corral.db.models import (
    Alert,
    AlertDelivery,
    AlertEvent,
    AlertState,
    Application,
    Cluster,
    Server,
    ServerGroup,
)
from corral.domain import views, webhooks
from corral.domain.identity import Scope
from corral.errors import InvalidInput, NotFound

SEVERITIES = ("INFO", "WARNING", "CRITICAL")
OPERATORS = ("GREATER_THAN", "LESS_THAN")
ROLLOUT_FAILED = "rollout-failed"
APP_MEASURED = {"application-cpu": "cpu", "application-memory": "memory"}
"""Corral's own: an application's processes above a CPU % (of one core) or a memory (MB)"""
SERVER_CERTIFICATE = "server-certificate"
"""Corral's own: a server's certificate renewal failed, or is overdue (docs/certificates.md)"""
CONDITIONS: dict[str, tuple[str, ...]] = {
    "hybrid-application": ("application-undeployed", "application-failure",
                           "application-success", "application-message-count",
                           "application-error-count", "application-response-time",
                           ROLLOUT_FAILED, *APP_MEASURED),
    "server": ("agent-version-change", "runtime-version-change", "server-cpu",
               "server-load-average", "server-memory", "server-thread-count", "server-up",
               "server-deletion", "server-down", SERVER_CERTIFICATE),
    "server-group": tuple(f"server-group-{c}" for c in (
        "up", "deletion", "down", "member-cpu", "member-load-average", "member-memory",
        "member-thread-count", "member-up", "member-down", "member-added", "member-removed")),
    "cluster": tuple(f"cluster-{c}" for c in (
        "up", "deletion", "down", "visibility-change", "member-cpu", "member-load-average",
        "member-memory", "member-thread-count", "member-up", "member-down", "member-added",
        "member-removed")),
}
MEASURED = {"cpu": "cpu", "load-average": "load", "memory": "memory", "thread-count": "threads"}
"""threshold conditions on a server's measurements: the suffix of the type → the measure"""
PUSHED = {"application-message-count": "messages", "application-error-count": "errors",
          "application-response-time": "responseTimeMs"}
MAX_RESOURCES = 100
MAX_ACTIONS = 10
MAX_RECIPIENTS = 50
MAX_PERIOD_MINUTES = 1440
EMAIL = re.compile(r"^[^@\s,<>]{1,64}@[^@\s,<>]{1,255}$")


def _finite(value: Any) -> bool:
    """A JSON number Python can compare as a float (not a bool, NaN, or a 400-digit int)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def is_threshold(condition_type: str) -> bool:
    return condition_type in PUSHED or condition_type in APP_MEASURED or \
        measure_of(condition_type) is not None


def measure_of(condition_type: str) -> str | None:
    """The measure a server threshold condition reads (`server-cpu` → `cpu`), if it is one."""
    for suffix, measure in MEASURED.items():
        if condition_type.endswith("-" + suffix) and not condition_type.startswith("app"):
            return measure
    return None


# --- what an alert is ------------------------------------------------------------------------

def _text(body: dict[str, Any], key: str, *, required: bool = False, limit: int = 255,
          default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is None:
        if required:
            raise InvalidInput(f"{key} is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidInput(f"{key} must be a non-empty string" if required else
                           f"{key} must be a string")
    if len(value) > limit:
        raise InvalidInput(f"{key} is at most {limit} characters")
    return value.strip() if required else value


def _strings(value: Any, what: str, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) and
                                              not isinstance(v, bool) for v in value):
        raise InvalidInput(f"{what} must be a list of strings")
    if len(value) > limit:
        raise InvalidInput(f"{what} holds at most {limit} items")
    return [str(v) for v in value]


def _condition(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInput("condition must be an object: {resourceType, type, resources}")
    resource_type = raw.get("resourceType")
    if resource_type not in CONDITIONS:
        raise InvalidInput(f"condition.resourceType must be one of {', '.join(CONDITIONS)}")
    kind = raw.get("type")
    if kind not in CONDITIONS[resource_type]:
        raise InvalidInput(f"condition.type for {resource_type} must be one of "
                           f"{', '.join(CONDITIONS[resource_type])}")
    resources = _strings(raw.get("resources", ["*"]), "condition.resources", MAX_RESOURCES)
    if "*" in resources:
        resources = ["*"]
    elif not resources:
        raise InvalidInput('condition.resources names resource ids, or ["*"] for all')
    condition: dict[str, Any] = {"resourceType": resource_type, "type": kind,
                                 "resources": resources}
    if is_threshold(kind):
        threshold = raw.get("threshold")
        if not _finite(threshold) or abs(cast(float, threshold)) > 1e15:
            raise InvalidInput(f"condition.threshold (a number, at most 1e15) is required for "
                               f"{kind}")
        operator = raw.get("operator", "GREATER_THAN")
        if operator not in OPERATORS:
            raise InvalidInput("condition.operator must be GREATER_THAN or LESS_THAN")
        period = raw.get("period")
        if period is not None and (isinstance(period, bool) or not isinstance(period, int)
                                   or not 0 <= period <= MAX_PERIOD_MINUTES):
            raise InvalidInput(f"condition.period is whole minutes, 0 to {MAX_PERIOD_MINUTES}")
        condition.update(threshold=threshold, operator=operator)
        if period:
            condition["period"] = period
    return condition


def _actions(raw: Any, previous: list[Any], deny: Sequence[webhooks.Network]
             ) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_ACTIONS:
        raise InvalidInput(f"actions must be a list of at most {MAX_ACTIONS} objects")
    secrets = {a.get("url"): a.get("secret") for a in previous if a.get("type") == "webhook"}
    actions = []
    for action in raw:
        if not isinstance(action, dict):
            raise InvalidInput("each action must be an object")
        kind = action.get("type", "email")
        if kind == "email":
            emails = _strings(action.get("emails"), "action emails", MAX_RECIPIENTS)
            bad = [e for e in emails if not EMAIL.match(e)]
            if bad:
                raise InvalidInput(f"not an email address: {bad[0][:80]}")
            actions.append({"type": "email", "emails": emails,
                            "userIds": _strings(action.get("userIds"), "action userIds",
                                                MAX_RECIPIENTS),
                            "subject": _text(action, "subject", limit=998),
                            "content": _text(action, "content", limit=20000)})
        elif kind == "webhook":
            url = _text(action, "url", required=True, limit=2048)
            assert url is not None
            webhooks.check_url(url, deny)
            secret = _text(action, "secret", limit=255) or secrets.get(url)
            actions.append({"type": "webhook", "url": url, "secret": secret or ""})
        else:
            raise InvalidInput("an action's type is email or webhook")
    return actions


def _check_resources(session: Session, scope: Scope, condition: dict[str, Any]) -> None:
    """Named resources must be of this environment: an alert never watches another's."""
    if condition["resources"] == ["*"]:
        return
    model: Any = {"hybrid-application": Application, "server": Server,
                  "server-group": ServerGroup, "cluster": Cluster}[condition["resourceType"]]
    ids = []
    for rid in condition["resources"]:
        if not rid.isdigit() or len(rid) > 12:
            raise InvalidInput(f"condition.resources: {rid[:40]!r} is not an id")
        ids.append(int(rid))
    found = set(session.scalars(select(model.id).where(
        model.id.in_(ids), model.environment_id == scope.environment_id)))
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidInput(f"condition.resources: no {condition['resourceType']} {missing[0]} "
                           "in this environment")


def create(session: Session, scope: Scope, body: Any, *,
           deny: Sequence[webhooks.Network]) -> Alert:
    """`deny`: the networks a webhook may not reach (`CORRAL_WEBHOOK_DENY`)."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    severity = body.get("severity")
    if severity not in SEVERITIES:
        raise InvalidInput(f"severity must be one of {', '.join(SEVERITIES)}")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false")
    condition = _condition(body.get("condition"))
    _check_resources(session, scope, condition)
    alert = Alert(organization_id=scope.organization_id, environment_id=scope.environment_id,
                  name=_text(body, "name", required=True), severity=severity, enabled=enabled,
                  description=_text(body, "description", limit=2000) or "",
                  condition=condition, actions=_actions(body.get("actions"), [], deny))
    session.add(alert)
    session.flush()
    return alert


def get(session: Session, scope: Scope, alert_id: str) -> Alert:
    alert = session.get(Alert, alert_id) if len(alert_id) <= 36 else None
    if alert is None or alert.environment_id != scope.environment_id:
        raise NotFound(f"alert {alert_id[:40]} not found")
    return alert


def update(session: Session, scope: Scope, alert_id: str, body: Any, *,
           deny: Sequence[webhooks.Network]) -> Alert:
    """PATCH: the fields given replace the alert's; read-only fields (ids, times, the product)
    are ignored, as anypoint-cli sends the alert back whole."""
    alert = get(session, scope, alert_id)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    if "name" in body:
        alert.name = _text(body, "name", required=True) or alert.name
    if "severity" in body:
        if body["severity"] not in SEVERITIES:
            raise InvalidInput(f"severity must be one of {', '.join(SEVERITIES)}")
        alert.severity = body["severity"]
    if "description" in body:
        alert.description = _text(body, "description", limit=2000) or ""
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidInput("enabled must be true or false")
        alert.enabled = body["enabled"]
    if "condition" in body:
        merged = {**alert.condition, **body["condition"]} \
            if isinstance(body["condition"], dict) else body["condition"]
        if isinstance(merged, dict) and not is_threshold(str(merged.get("type"))):
            for key in ("threshold", "operator", "period"):
                merged.pop(key, None)
        condition = _condition(merged)
        _check_resources(session, scope, condition)
        if (condition["resourceType"], condition["type"], condition["resources"]) != (
                alert.condition.get("resourceType"), alert.condition.get("type"),
                alert.condition.get("resources")):
            # another condition: what was seen of the old one says nothing of the new
            session.execute(delete(AlertState).where(AlertState.alert_id == alert.id))
        alert.condition = condition
    if "actions" in body:
        alert.actions = _actions(body["actions"], alert.actions, deny)
    alert.updated_at = int(time.time() * 1000)
    return alert


def remove(session: Session, scope: Scope, alert_id: str) -> None:
    session.delete(get(session, scope, alert_id))


SORTS: dict[str, Any] = {"createdAt": Alert.created_at, "name": Alert.name,
                         "lastModified": Alert.updated_at, "severity": Alert.severity}


def listing(session: Session, scope: Scope, offset: int = 0, limit: int = 25,
            sort: str = "createdAt") -> tuple[list[Alert], int]:
    descending = sort.startswith("-")
    column = SORTS.get(sort.lstrip("-"))
    if column is None:
        raise InvalidInput(f"sort is one of {', '.join(SORTS)} (prefix - to reverse)")
    where = Alert.environment_id == scope.environment_id
    total = session.scalar(select(func.count()).select_from(Alert).where(where)) or 0
    rows = session.scalars(select(Alert).where(where)
                           .order_by(column.desc() if descending else column, Alert.id)
                           .offset(offset).limit(limit)).all()
    return list(rows), int(total)


def looked_at(session: Session, alert_ids: Iterable[str]) -> dict[str, dict[str, bool]]:
    """What the evaluator has looked at for each alert: resource → whether it fires now."""
    out: dict[str, dict[str, bool]] = {}
    for alert_id, resource, firing_now in session.execute(
            select(AlertState.alert_id, AlertState.resource, AlertState.firing)
            .where(AlertState.alert_id.in_(list(alert_ids)))):
        out.setdefault(alert_id, {})[resource] = bool(firing_now)
    return out


def history(session: Session, scope: Scope, alert_id: str, offset: int = 0,
            limit: int = 50, *, detailed: bool = False) -> tuple[list[dict[str, Any]], int]:
    """`detailed`: sending errors as they were (`delivery_view`)."""
    alert = get(session, scope, alert_id)
    total = session.scalar(select(func.count()).select_from(AlertEvent)
                           .where(AlertEvent.alert_id == alert.id)) or 0
    events = session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert.id)
                             .order_by(AlertEvent.id.desc()).offset(offset).limit(limit)).all()
    return _events(session, events, {alert.id: alert}, detailed), int(total)


def resource_history(session: Session, scope: Scope, resource_id: str, offset: int = 0,
                     limit: int = 50, *, detailed: bool = False
                     ) -> tuple[list[dict[str, Any]], int]:
    """Every firing about one resource (a server, group, cluster or application id), by any
    alert of the environment, newest first (`GET /alerts/resource/{id}/history`)."""
    where = (AlertEvent.resource_id == resource_id[:64],
             Alert.environment_id == scope.environment_id)
    total = session.scalar(select(func.count()).select_from(AlertEvent)
                           .join(Alert, Alert.id == AlertEvent.alert_id).where(*where)) or 0
    rows = session.execute(select(AlertEvent, Alert).join(Alert, Alert.id == AlertEvent.alert_id)
                           .where(*where).order_by(AlertEvent.id.desc())
                           .offset(offset).limit(limit)).all()
    alerts = {alert.id: alert for _, alert in rows}
    return _events(session, [e for e, _ in rows], alerts, detailed), int(total)


def _events(session: Session, events: Sequence[AlertEvent], alerts: Mapping[str, Alert],
            detailed: bool) -> list[dict[str, Any]]:
    deliveries: dict[int, list[dict[str, Any]]] = {}
    for d in session.scalars(select(AlertDelivery).where(
            AlertDelivery.event_id.in_([e.id for e in events])).order_by(AlertDelivery.id)):
        deliveries.setdefault(d.event_id, []).append(views.alert_delivery(d, detailed))
    return [views.alert_event(e, deliveries.get(e.id, []), alerts[e.alert_id]) for e in events]


def dead_letters(session: Session, scope: Scope, limit: int = 50, *,
                 detailed: bool = False) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AlertDelivery, Alert.name).join(AlertEvent, AlertEvent.id == AlertDelivery.event_id)
        .join(Alert, Alert.id == AlertEvent.alert_id)
        .where(Alert.environment_id == scope.environment_id, AlertDelivery.state == "DEAD")
        .order_by(AlertDelivery.id.desc()).limit(limit)).all()
    return [views.alert_delivery(d, detailed) | {"alertName": name} for d, name in rows]


def recent_events(session: Session, scope: Scope, limit: int = 10) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AlertEvent, Alert).join(Alert, Alert.id == AlertEvent.alert_id)
        .where(Alert.environment_id == scope.environment_id)
        .order_by(AlertEvent.id.desc()).limit(limit)).all()
    return [views.alert_event(e, [], alert) for e, alert in rows]


def firing_counts(session: Session) -> dict[str, int]:
    """Resources in an alert's condition now, by severity (Prometheus' `corral_alerts_firing`)."""
    return {severity: int(n) for severity, n in session.execute(
        select(Alert.severity, func.count()).join(AlertState, AlertState.alert_id == Alert.id)
        .where(AlertState.firing, Alert.enabled).group_by(Alert.severity))}
