"""What the evaluator sees: an environment's fleet read once per evaluation, and for each
condition type a small function from one resource to what the condition sees of it (`Seen`).
The tables below are the whole list: a condition type with no entry sees nothing."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.db.models import (
    AppInstance,
    Application,
    Cluster,
    Deployment,
    Rollout,
    Server,
    ServerGroup,
)
from corral.domain import measurements
from corral.domain.alerts.rules import (
    APP_MEASURED,
    PUSHED,
    ROLLOUT_FAILED,
    SERVER_CERTIFICATE,
    measure_of,
)
from corral.domain.certificates import status_message


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


def fleet_of(session: Session, environment_id: str, needs: set[str]) -> Fleet:
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


def compare(value: float | None, condition: dict[str, Any]) -> bool:
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


def up(status: str) -> bool:
    return status == "RUNNING"


@dataclass
class Look:
    """One condition looked at once: the fleet, and the readings it needs, read on first use."""

    session: Session
    fleet: Fleet
    condition: dict[str, Any]
    interval: float
    now: int

    @property
    def kind(self) -> str:
        return str(self.condition["type"])

    @functools.cached_property
    def wanted(self) -> set[int] | None:
        resources = self.condition["resources"]
        return None if resources == ["*"] else {int(r) for r in resources}

    def chosen(self, ids: Iterable[int]) -> list[int]:
        return [i for i in ids if self.wanted is None or i in self.wanted]

    @functools.cached_property
    def window(self) -> tuple[int, int]:
        return _window(self.condition, self.interval, self.now)

    @functools.cached_property
    def server_readings(self) -> dict[int, Any]:
        servers = None if self.wanted is None or self.condition["resourceType"] != "server" \
            else {i: self.fleet.servers[i] for i in self.chosen(self.fleet.servers)}
        return measurements.latest_servers(self.session, self.window[0], servers)

    @functools.cached_property
    def instance_readings(self) -> dict[int, Any]:
        return measurements.latest_instances(self.session, self.window[0],
                                             self.chosen(self.fleet.apps))

    @functools.cached_property
    def pushed(self) -> dict[int, Any]:
        return measurements.pushed_totals(self.session, self.window[0])

    def measured(self, key: str, name: str, measure: str, reading: dict[str, Any] | None
                 ) -> Seen:
        """A threshold: every reading of the window past it (so its extreme is), the window
        covered."""
        condition, covered_by = self.condition, self.window[1]
        value = None if reading is None else reading.get(measure)
        holds = False
        if reading is not None and value is not None and reading["oldest"] <= covered_by:
            extreme = reading[f"{measure}_min" if condition["operator"] == "GREATER_THAN"
                              else f"{measure}_max"]
            holds = compare(extreme, condition)
        return Seen(key, name, firing=holds, value=value,
                    message=threshold_message(self.kind, name, value, condition))


def threshold_message(kind: str, name: str, value: float | None,
                      condition: dict[str, Any]) -> str:
    shown = "no reading" if value is None else f"{value:.1f}"
    relation = ">" if condition.get("operator") == "GREATER_THAN" else "<"
    period = condition.get("period")
    over = f" for {period} min" if period else ""
    return f"{kind} of {name}: {shown} ({relation} {condition.get('threshold')}{over})"


# --- servers ----------------------------------------------------------------------------------

ServerLook = Callable[[Look, str, Any], Seen]
"""(look, resource key, server row) → what the condition sees of that server"""


def _certificate(look: Look, key: str, s: Any) -> Seen:
    problem = status_message(s)
    return Seen(key, s.name, firing=problem is not None, message=f"server {s.name}: {problem}")


SERVER: dict[str, ServerLook] = {
    "server-down": lambda look, key, s: Seen(key, s.name, firing=s.status == "DISCONNECTED",
                                             message=f"server {s.name} is {s.status}"),
    "server-up": lambda look, key, s: Seen(key, s.name, token=s.status,
                                           message=f"server {s.name} is {s.status}"),
    "server-deletion": lambda look, key, s: Seen(key, s.name, token="exists"),
    "agent-version-change": lambda look, key, s: Seen(
        key, s.name, token=s.agent_version or None,
        message=f"agent version of {s.name} is {s.agent_version}"),
    "runtime-version-change": lambda look, key, s: Seen(
        key, s.name, token=s.mule_version or None,
        message=f"runtime version of {s.name} is {s.mule_version}"),
    SERVER_CERTIFICATE: _certificate,
}


def _servers(look: Look) -> dict[str, Seen]:
    rule = SERVER.get(look.kind)
    measure = measure_of(look.kind)
    seen: dict[str, Seen] = {}
    for sid in look.chosen(look.fleet.servers):
        s, key = look.fleet.servers[sid], str(sid)
        if rule is not None:
            seen[key] = rule(look, key, s)
        elif measure:
            seen[key] = look.measured(key, s.name, measure, look.server_readings.get(sid))
    return seen


# --- server groups and clusters (the condition type's suffix after the resource type) ---------

TargetLook = Callable[[Look, str, str, list[int], int], Seen]
"""(look, resource key, target name, member ids, target id) → what the condition sees"""
MemberLook = Callable[[Look, str, str, Any], Seen]
"""(look, resource key `target:member`, target name, member's server row) → what it sees"""


def _down(look: Look, members: list[int]) -> bool:
    return bool(members) and not any(up(look.fleet.servers[m].status) for m in members)


TARGET: dict[str, TargetLook] = {
    "down": lambda look, key, name, members, tid: Seen(
        key, name, firing=_down(look, members),
        message=f"{look.condition['resourceType']} {name}: no member is running"),
    "up": lambda look, key, name, members, tid: Seen(
        key, name, token="down" if _down(look, members) else "up" if members else None,
        message=f"{look.condition['resourceType']} {name} is running again"),
    "deletion": lambda look, key, name, members, tid: Seen(key, name, token="exists"),
    "visibility-change": lambda look, key, name, members, tid: Seen(
        key, name, token=json.dumps([look.fleet.clusters[tid].primary_node_id,
                                     look.fleet.clusters[tid].visibility],
                                    sort_keys=True, default=str),
        message=f"cluster {name}: primary node {look.fleet.clusters[tid].primary_node_id}"),
    "member-added": lambda look, key, name, members, tid: Seen(
        key, name, token=",".join(map(str, sorted(members)))),
    "member-removed": lambda look, key, name, members, tid: Seen(
        key, name, token=",".join(map(str, sorted(members)))),
}
MEMBER: dict[str, MemberLook] = {
    "member-down": lambda look, key, name, s: Seen(
        key, s.name, firing=s.status == "DISCONNECTED",
        message=f"{s.name} of {look.condition['resourceType']} {name} is {s.status}"),
    "member-up": lambda look, key, name, s: Seen(
        key, s.name, token=s.status,
        message=f"{s.name} of {look.condition['resourceType']} {name} is {s.status}"),
}


def _targets(look: Look) -> dict[str, Seen]:
    rtype = look.condition["resourceType"]
    names = look.fleet.groups if rtype == "server-group" else \
        {i: c.name for i, c in look.fleet.clusters.items()}
    what = look.kind.removeprefix(f"{rtype}-")
    measure = measure_of(what) if what.startswith("member-") else None
    seen: dict[str, Seen] = {}
    for tid in look.chosen(names):
        name, members = names[tid], look.fleet.members.get(tid, [])
        if what in TARGET:
            seen[str(tid)] = TARGET[what](look, str(tid), name, members, tid)
            continue
        for m in members:
            s, key = look.fleet.servers[m], f"{tid}:{m}"
            if what in MEMBER:
                seen[key] = MEMBER[what](look, key, name, s)
            elif measure:
                seen[key] = look.measured(key, s.name, measure, look.server_readings.get(m))
    return seen


# --- applications -----------------------------------------------------------------------------

AppLook = Callable[[Look, str, int, Any], Seen]
"""(look, resource key, application id, application row) → what the condition sees"""


def _failure(look: Look, key: str, app_id: int, app: Any) -> Seen:
    statuses = look.fleet.statuses.get(app_id, [])
    return Seen(key, app.name, firing="DEPLOYMENT_FAILED" in statuses,
                message=f"application {app.name} failed on "
                        f"{statuses.count('DEPLOYMENT_FAILED')} server(s)")


def _success(look: Look, key: str, app_id: int, app: Any) -> Seen:
    number = look.fleet.succeeded.get(app_id)
    return Seen(key, app.name, token=None if number is None else str(number),
                message=f"application {app.name} deployed successfully")


def _rollout_failed(look: Look, key: str, app_id: int, app: Any) -> Seen:
    last = look.fleet.rollouts.get(app_id)
    return Seen(key, app.name, token=None if last is None else str(last[0]),
                message="" if last is None else
                f"rollout of {app.name} {last[1].lower()}: {last[2]}")


def _pushed(look: Look, key: str, app_id: int, app: Any) -> Seen:
    """A count or time the application pushed, summed over the window."""
    totals = look.pushed.get(app_id)
    if totals is None or totals["oldest"] > look.window[1]:
        return Seen(key, app.name, firing=False)
    raw = totals[PUSHED[look.kind]]
    value = None if raw is None else float(raw)
    return Seen(key, app.name, firing=compare(value, look.condition), value=value,
                message=threshold_message(look.kind, app.name, value, look.condition))


APPLICATION: dict[str, AppLook] = {
    "application-undeployed": lambda look, key, app_id, app: Seen(key, app.name, token="exists"),
    "application-failure": _failure,
    "application-success": _success,
    ROLLOUT_FAILED: _rollout_failed,
    **dict.fromkeys(PUSHED, _pushed),
    **{kind: (lambda look, key, app_id, app: look.measured(
        key, app.name, APP_MEASURED[look.kind], look.instance_readings.get(app_id)))
       for kind in APP_MEASURED},
}


def _applications_seen(look: Look) -> dict[str, Seen]:
    rule = APPLICATION.get(look.kind)
    if rule is None:
        return {}
    return {str(i): rule(look, str(i), i, look.fleet.apps[i])
            for i in look.chosen(look.fleet.apps)}


BY_RESOURCE: dict[str, Callable[[Look], dict[str, Seen]]] = {
    "server": _servers, "server-group": _targets, "cluster": _targets,
    "hybrid-application": _applications_seen,
}


def seen(session: Session, fleet: Fleet, condition: dict[str, Any], interval: float,
         now: int) -> dict[str, Seen]:
    """Each resource the condition watches, as it sees it now (resource key → `Seen`)."""
    look = Look(session, fleet, condition, interval, now)
    return BY_RESOURCE[condition["resourceType"]](look)


# --- events -----------------------------------------------------------------------------------

EventRule = Callable[[str, str], bool]
"""(previous token, new token) → does the change fire the event"""
EVENT_RULES: dict[str, EventRule] = {
    "server-up": lambda old, new: up(new) and not up(old),
    "member-up": lambda old, new: up(new) and not up(old),
    "up": lambda old, new: new == "up" and old == "down",
}
GONE = frozenset({"server-deletion", "server-group-deletion", "cluster-deletion",
                  "application-undeployed"})
FIRST_VALUE_FIRES = frozenset({"application-success", ROLLOUT_FAILED})
"""Events whose first value is itself news (the first successful deployment); for the others
(a version seen for the first time) only a change is."""


def rule(kind: str) -> EventRule:
    for suffix, fires in EVENT_RULES.items():
        if kind == suffix or kind.endswith("-" + suffix):
            return fires
    return lambda old, new: old != new


def members_changed(kind: str, old: str, new: str) -> list[str]:
    before = set(filter(None, old.split(",")))
    after = set(filter(None, new.split(",")))
    return sorted(after - before if kind.endswith("added") else before - after, key=int)
