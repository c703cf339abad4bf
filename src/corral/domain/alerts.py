"""ARM's standalone alerts: what an alert is (`check`), its JSON (`view`), and the evaluator
that turns the fleet's state and measurements into firings (`evaluate`).

A condition is either a *level* (server down, CPU above a threshold): it fires once when it
starts to hold for a resource and resolves once when it stops. Or it is an *event* (a version
changed, a member was added, a resource was deleted, a deployment succeeded): it fires once
when the value it watches changes. What the evaluator last saw is in `alert_states`, so no
condition fires twice for one change, whichever replica leads. Each firing is an
`AlertEvent` with one `AlertDelivery` per destination, written in the same transaction; the
leader sends them afterwards (`gateway/alerting.py`)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import delete, func, insert, select
from sqlalchemy import update as update_rows
from sqlalchemy.orm import Session

from corral.db.chunks import chunked
from corral.db.models import (
    Alert,
    AlertDelivery,
    AlertEvent,
    AlertState,
    AppInstance,
    Application,
    Cluster,
    Deployment,
    Rollout,
    Server,
    ServerGroup,
    User,
)
from corral.domain import measurements, views, webhooks
from corral.domain.certificates import status_message
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
        _measure(condition_type) is not None


def _measure(condition_type: str) -> str | None:
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


# --- what the evaluator sees -----------------------------------------------------------------

@dataclass
class Seen:
    """One resource as a condition sees it: `firing` for a level, `token` for an event."""

    resource_id: str
    name: str
    firing: bool | None = None
    token: str | None = None
    value: float | None = None
    message: str = ""


@dataclass
class Fleet:
    """One environment's resources, read once per evaluation for all its alerts."""

    servers: dict[int, Any]
    groups: dict[int, str]
    clusters: dict[int, Any]
    members: dict[int, list[int]] = field(default_factory=dict)
    apps: dict[int, Any] = field(default_factory=dict)
    statuses: dict[int, list[str]] = field(default_factory=dict)
    succeeded: dict[int, int] = field(default_factory=dict)
    rollouts: dict[int, tuple[int, str, str]] = field(default_factory=dict)


def _fleet(session: Session, environment_id: str, needs: set[str]) -> Fleet:
    """What the alerts of these resource types (`needs`) read, and nothing more: an alert on
    servers does not load every instance of every application."""
    fleet = Fleet(servers={}, groups={}, clusters={})
    if needs & {"server", "server-group", "cluster"}:
        fleet.servers = {r.id: r for r in session.execute(
            select(Server.id, Server.name, Server.status, Server.agent_version,
                   Server.mule_version, Server.server_group_id, Server.cluster_id,
                   Server.certificate_issued_at, Server.certificate_expires_at,
                   Server.certificate_problem)
            .where(Server.environment_id == environment_id))}
        for s in fleet.servers.values():
            for parent in (s.server_group_id, s.cluster_id):
                if parent:
                    fleet.members.setdefault(parent, []).append(s.id)
    if "server-group" in needs:
        fleet.groups = dict(session.execute(
            select(ServerGroup.id, ServerGroup.name)
            .where(ServerGroup.environment_id == environment_id)).all())
    if "cluster" in needs:
        fleet.clusters = {r.id: r for r in session.execute(
            select(Cluster.id, Cluster.name, Cluster.visibility, Cluster.primary_node_id)
            .where(Cluster.environment_id == environment_id))}
    if "hybrid-application" in needs:
        _applications(session, environment_id, fleet)
    return fleet


def _applications(session: Session, environment_id: str, fleet: Fleet) -> None:
    fleet.apps = {r.id: r for r in session.execute(
        select(Application.id, Application.name, Application.desired_status)
        .where(Application.environment_id == environment_id))}
    for app_id, status in session.execute(
            select(AppInstance.application_id, AppInstance.last_reported_status)
            .join(Application, Application.id == AppInstance.application_id)
            .where(Application.environment_id == environment_id)):
        fleet.statuses.setdefault(app_id, []).append(status)
    fleet.succeeded = dict(session.execute(
        select(Deployment.application_id, func.max(Deployment.id))
        .join(Application, Application.id == Deployment.application_id)
        .where(Application.environment_id == environment_id, Deployment.state == "SUCCEEDED")
        .group_by(Deployment.application_id)).all())
    last = (select(Rollout.application_id, func.max(Rollout.id).label("id"))
            .join(Application, Application.id == Rollout.application_id)
            .where(Application.environment_id == environment_id,
                   Rollout.state.in_(("FAILED", "REVERTED")))
            .group_by(Rollout.application_id).subquery())
    fleet.rollouts = {r.application_id: (r.id, r.state, r.message) for r in session.execute(
        select(Rollout.application_id, Rollout.id, Rollout.state, Rollout.message)
        .join(last, last.c.id == Rollout.id))}


def _compare(value: float | None, condition: dict[str, Any]) -> bool:
    if value is None:
        return False
    threshold = float(condition["threshold"])
    if condition["operator"] == "LESS_THAN":
        return value < threshold
    return value > threshold


STORING_MS = 3000
"""How long a reading may take from the agent to the table: the gateway gathers a second's
worth before storing, and a busy control plane takes longer."""


def _window(condition: dict[str, Any], interval: float, now: int) -> tuple[int, int]:
    """(since, covered_by): readings since `since` count; with a period, the oldest of them
    must be from `covered_by` or earlier, so a condition holds for the whole period. Without
    one, the window holds the latest reading of each resource (about one interval)."""
    slack = int(max(interval, 1) * 1500) + STORING_MS
    period = int(condition.get("period") or 0)
    if not period:
        return now - slack, now
    since = now - period * 60_000
    return since, since + slack


def _measured(measure: str, reading: dict[str, Any] | None, condition: dict[str, Any],
              covered_by: int) -> tuple[bool, float | None]:
    """Every reading of the window is past the threshold (so its extreme is), and the window
    is covered."""
    if reading is None or reading.get(measure) is None or reading["oldest"] > covered_by:
        return False, None if reading is None else reading.get(measure)
    extreme = reading[f"{measure}_min" if condition["operator"] == "GREATER_THAN"
                      else f"{measure}_max"]
    return _compare(extreme, condition), reading[measure]


def _up(status: str) -> bool:
    return status == "RUNNING"


def _seen(session: Session, fleet: Fleet, condition: dict[str, Any], interval: float,
          now: int) -> dict[str, Seen]:
    kind: str = condition["type"]
    rtype: str = condition["resourceType"]
    wanted = None if condition["resources"] == ["*"] else {int(r) for r in
                                                           condition["resources"]}

    def chosen(ids: Iterable[int]) -> list[int]:
        return [i for i in ids if wanted is None or i in wanted]

    seen: dict[str, Seen] = {}
    if rtype == "server":
        servers = {i: fleet.servers[i] for i in chosen(fleet.servers)}
        measure = _measure(kind)
        if measure:
            since, covered_by = _window(condition, interval, now)
            readings = measurements.latest_servers(session, since,
                                                   None if wanted is None else servers)
        for sid, s in servers.items():
            key = str(sid)
            if kind == "server-down":
                seen[key] = Seen(key, s.name, firing=s.status == "DISCONNECTED",
                                 message=f"server {s.name} is {s.status}")
            elif kind == "server-up":
                seen[key] = Seen(key, s.name, token=s.status,
                                 message=f"server {s.name} is {s.status}")
            elif kind == "server-deletion":
                seen[key] = Seen(key, s.name, token="exists")
            elif kind == "agent-version-change":
                seen[key] = Seen(key, s.name, token=s.agent_version or None,
                                 message=f"agent version of {s.name} is {s.agent_version}")
            elif kind == SERVER_CERTIFICATE:
                problem = status_message(s)
                seen[key] = Seen(key, s.name, firing=problem is not None,
                                 message=f"server {s.name}: {problem}")
            elif kind == "runtime-version-change":
                seen[key] = Seen(key, s.name, token=s.mule_version or None,
                                 message=f"runtime version of {s.name} is {s.mule_version}")
            elif measure:
                holds, value = _measured(measure, readings.get(sid), condition, covered_by)
                seen[key] = Seen(key, s.name, firing=holds, value=value,
                                 message=_threshold_message(kind, s.name, value, condition))
        return seen
    if rtype in ("server-group", "cluster"):
        names = fleet.groups if rtype == "server-group" else \
            {i: c.name for i, c in fleet.clusters.items()}
        what = kind.removeprefix(f"{rtype}-")
        measure = _measure(what) if what.startswith("member-") else None
        if measure:
            since, covered_by = _window(condition, interval, now)
            readings = measurements.latest_servers(session, since)
        for tid in chosen(names):
            name = names[tid]
            members = fleet.members.get(tid, [])
            statuses = [fleet.servers[m].status for m in members]
            down = bool(members) and not any(_up(s) for s in statuses)
            key = str(tid)
            if what == "down":
                seen[key] = Seen(key, name, firing=down,
                                 message=f"{rtype} {name}: no member is running")
            elif what == "up":
                seen[key] = Seen(key, name, token="down" if down else "up" if members else None,
                                 message=f"{rtype} {name} is running again")
            elif what == "deletion":
                seen[key] = Seen(key, name, token="exists")
            elif what == "visibility-change":
                c = fleet.clusters[tid]
                seen[key] = Seen(key, name, token=json.dumps(
                    [c.primary_node_id, c.visibility], sort_keys=True, default=str),
                    message=f"cluster {name}: primary node {c.primary_node_id}")
            elif what in ("member-added", "member-removed"):
                seen[key] = Seen(key, name, token=",".join(map(str, sorted(members))))
            else:
                for m in members:
                    s = fleet.servers[m]
                    mkey = f"{tid}:{m}"
                    if what == "member-down":
                        seen[mkey] = Seen(mkey, s.name, firing=s.status == "DISCONNECTED",
                                          message=f"{s.name} of {rtype} {name} is {s.status}")
                    elif what == "member-up":
                        seen[mkey] = Seen(mkey, s.name, token=s.status,
                                          message=f"{s.name} of {rtype} {name} is {s.status}")
                    elif measure:
                        holds, value = _measured(measure, readings.get(m), condition, covered_by)
                        seen[mkey] = Seen(mkey, s.name, firing=holds, value=value,
                                          message=_threshold_message(kind, s.name, value,
                                                                     condition))
        return seen
    # hybrid-application
    if kind in PUSHED:
        since, covered_by = _window(condition, interval, now)
        pushed = measurements.pushed_totals(session, since)
    elif kind in APP_MEASURED:
        since, covered_by = _window(condition, interval, now)
        instances = measurements.latest_instances(session, since, chosen(fleet.apps))
    for app_id in chosen(fleet.apps):
        app = fleet.apps[app_id]
        key = str(app_id)
        if kind == "application-undeployed":
            seen[key] = Seen(key, app.name, token="exists")
        elif kind == "application-failure":
            statuses = fleet.statuses.get(app_id, [])
            failed = "DEPLOYMENT_FAILED" in statuses
            seen[key] = Seen(key, app.name, firing=failed,
                             message=f"application {app.name} failed on "
                                     f"{statuses.count('DEPLOYMENT_FAILED')} server(s)")
        elif kind == "application-success":
            number = fleet.succeeded.get(app_id)
            seen[key] = Seen(key, app.name, token=None if number is None else str(number),
                             message=f"application {app.name} deployed successfully")
        elif kind == ROLLOUT_FAILED:
            last = fleet.rollouts.get(app_id)
            seen[key] = Seen(key, app.name, token=None if last is None else str(last[0]),
                             message="" if last is None else
                             f"rollout of {app.name} {last[1].lower()}: {last[2]}")
        elif kind in APP_MEASURED:
            holds, value = _measured(APP_MEASURED[kind], instances.get(app_id), condition,
                                     covered_by)
            seen[key] = Seen(key, app.name, firing=holds, value=value,
                             message=_threshold_message(kind, app.name, value, condition))
        elif kind in PUSHED:
            totals = pushed.get(app_id)
            if totals is None or totals["oldest"] > covered_by:
                seen[key] = Seen(key, app.name, firing=False)
                continue
            value = totals[PUSHED[kind]]
            value = None if value is None else float(value)
            seen[key] = Seen(key, app.name, firing=_compare(value, condition), value=value,
                             message=_threshold_message(kind, app.name, value, condition))
    return seen


def _threshold_message(kind: str, name: str, value: float | None,
                       condition: dict[str, Any]) -> str:
    shown = "no reading" if value is None else f"{value:.1f}"
    relation = ">" if condition.get("operator") == "GREATER_THAN" else "<"
    period = condition.get("period")
    over = f" for {period} min" if period else ""
    return f"{kind} of {name}: {shown} ({relation} {condition.get('threshold')}{over})"


EventRule = Callable[[str, str], bool]
"""(previous token, new token) → does the change fire the event"""
EVENT_RULES: dict[str, EventRule] = {
    "server-up": lambda old, new: _up(new) and not _up(old),
    "member-up": lambda old, new: _up(new) and not _up(old),
    "up": lambda old, new: new == "up" and old == "down",
}
GONE = frozenset({"server-deletion", "server-group-deletion", "cluster-deletion",
                  "application-undeployed"})
FIRST_VALUE_FIRES = frozenset({"application-success", ROLLOUT_FAILED})
"""Events whose first value is itself news (the first successful deployment); for the others
(a version seen for the first time) only a change is."""


def _rule(kind: str) -> EventRule:
    for suffix, rule in EVENT_RULES.items():
        if kind == suffix or kind.endswith("-" + suffix):
            return rule
    return lambda old, new: old != new


def _members_changed(kind: str, old: str, new: str) -> list[str]:
    before = set(filter(None, old.split(",")))
    after = set(filter(None, new.split(",")))
    return sorted(after - before if kind.endswith("added") else before - after, key=int)


# --- the evaluator ---------------------------------------------------------------------------

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
    fleets = {env: _fleet(session, env, kinds) for env, kinds in needs.items()}
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
    seen = _seen(session, fleet, condition, interval, now)
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
                for member in _members_changed(kind, old, what.token):
                    server = fleet.servers.get(int(member))
                    verb = "joined" if kind.endswith("added") else "left"
                    fire("FIRING", what, f"server {server.name if server else member} {verb} "
                                         f"{rtype} {what.name}")
            elif _rule(kind)(old, what.token):
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


# --- delivery bookkeeping (the sending is the gateway's) ------------------------------------

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
