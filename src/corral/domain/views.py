"""ORM objects to ARM's JSON shapes, as plain dicts: the API answers them and the console
renders them (the API's response models document them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from corral.db.models import (
    Alert,
    AlertDelivery,
    AlertEvent,
    AuditEvent,
    Cluster,
    ConnectedApp,
    Deployment,
    Environment,
    Organization,
    RegistrationToken,
    Server,
    ServerGroup,
    Target,
    TargetComponent,
    User,
    now_ms,
)
from corral.domain import registration, secure
from corral.domain.certificates import status_message
from corral.domain.configuration import properties_of
from corral.domain.status import (
    Instance,
    aggregate_servers,
    application_status,
    instance_report,
    target_status,
)


def environment(env: Environment) -> dict[str, Any]:
    return {
        "id": env.id,
        "name": env.name,
        "organizationId": env.organization_id,
        "isProduction": env.is_production,
        "type": env.type,
        "clientId": env_client_id(env.id),
    }


def env_client_id(env_id: str) -> str:
    """ARM gives every environment a client id (32 hex digits). Corral issues no
    per-environment credentials, so it is the environment's UUID without dashes: stable,
    and unique across environments."""
    return env_id.replace("-", "")


def organization_ref(org: Organization) -> dict[str, Any]:
    """An organization as ARM lists it. Corral has one organization per installation and no
    business groups: the tree lists are empty, and the mule-maven-plugin walks them."""
    return {"id": org.id, "name": org.name, "isRoot": True, "isMaster": True,
            "parentId": None, "parentName": None, "subOrganizationIds": [],
            "parentOrganizationIds": [], "tenantOrganizationIds": []}


def hierarchy(org: Organization) -> dict[str, Any]:
    """`/organizations/{id}/hierarchy`, which older mule-maven-plugin versions walk."""
    return {**organization_ref(org), "subOrganizations": [], "tenantOrganizations": []}


def member(u: User) -> dict[str, Any]:
    return {"id": u.id, "username": u.username, "firstName": u.first_name,
            "lastName": u.last_name, "email": u.email, "enabled": u.enabled}


def organization(org: Organization) -> dict[str, Any]:
    return {**organization_ref(org), "environments": [environment(e) for e in org.environments]}


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def user(u: User) -> dict[str, Any]:
    org = organization_ref(u.organization)
    return {
        "id": u.id,
        "username": u.username,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "email": u.email,
        "createdAt": _iso(u.created_at),
        "organization": org,
        "organizationId": u.organization_id,
        "memberOfOrganizations": [org],
        "contributorOfOrganizations": [org],
        "organizationPreferences": {},
        "role": u.role,
        "enabled": u.enabled,
        "environments": u.environment_ids,
    }


def app_as_user(app: ConnectedApp) -> dict[str, Any]:
    """A connected app shown where ARM's clients expect a user."""
    org = organization_ref(app.organization)
    return {
        "id": app.client_id,
        "username": app.name,
        "firstName": app.name,
        "lastName": "",
        "email": "",
        "createdAt": _iso(app.created_at),
        "organization": org,
        "organizationId": app.organization_id,
        "memberOfOrganizations": [org],
        "contributorOfOrganizations": [org],
        "organizationPreferences": {},
        "role": app.role,
        "enabled": app.enabled,
        "environments": app.environment_ids,
    }


def connected_app(app: ConnectedApp, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"client_id": app.client_id, "client_name": app.name,
                           "org_id": app.organization_id, "role": app.role,
                           "enabled": app.enabled}
    if secret:
        out["client_secret"] = secret
    return out


def server(s: Server) -> dict[str, Any]:
    return server_fields(s, s.server_group.name if s.server_group is not None else None,
                         s.cluster.name if s.cluster is not None else None)


def server_fields(s: Any, group_name: str | None, cluster_name: str | None) -> dict[str, Any]:
    """A server from anything with its attributes: the ORM object, or a row of plain columns
    named like them (`corral.domain.reads`)."""
    out: dict[str, Any] = {
        "id": s.id,
        "timeCreated": s.time_created,
        "timeUpdated": s.time_updated,
        "name": s.name,
        "type": "SERVER",
        "serverType": "MULE",
        "muleVersion": s.mule_version,
        "gatewayVersion": s.gateway_version,
        "agentVersion": s.agent_version,
        "status": s.status,
        "addresses": s.addresses or [],
        "runtimeInformation": s.runtime_information or {},
        "certificateExpirationDate": s.certificate_expires_at,
        # no licence ends under Corral; the date after which the server cannot connect
        # without a renewed certificate is the nearest thing
        "licenseExpirationDate": s.certificate_expires_at,
        "lastSeen": s.last_seen,
        # Corral's: which CA signed it (a rotation waits for the old one's), a renewal asked
        # for, and what went wrong with renewing it
        "certificateAuthority": s.certificate_issuer,
    }
    if s.renewal_due is not None:
        out["certificateRenewalDue"] = s.renewal_due
    message = status_message(s)
    if message:
        out["statusMessage"] = message
    if s.server_group_id is not None:
        out["serverGroupId"] = s.server_group_id
        out["serverGroupName"] = group_name
    if s.cluster_id is not None:
        out["clusterId"] = s.cluster_id
        out["clusterName"] = cluster_name
        out["serverIp"] = s.cluster_ip
        out["currentClusteringIp"] = s.cluster_ip
        out["currentClusteringPort"] = (s.runtime_information or {}).get("clusterPort")
    return out


def server_group(g: ServerGroup) -> dict[str, Any]:
    return server_group_fields(g, [server(s) for s in g.servers])


def server_group_fields(g: Any, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": g.id,
        "timeCreated": g.time_created,
        "timeUpdated": g.time_updated,
        "name": g.name,
        "type": "SERVER_GROUP",
        "status": target_status(s["status"] for s in members),
        "detailedStatus": aggregate_servers(s["status"] for s in members),
        "servers": members,
    }


def cluster(c: Cluster) -> dict[str, Any]:
    return cluster_fields(c, [server(s) for s in c.servers])


def cluster_fields(c: Any, members: list[dict[str, Any]]) -> dict[str, Any]:
    reported = (c.visibility or {}).get("mapNodes", {})
    return {
        "id": c.id,
        "timeCreated": c.time_created,
        "timeUpdated": c.time_updated,
        "name": c.name,
        "type": "CLUSTER",
        "multicastEnabled": c.multicast_enabled,
        "status": target_status(s["status"] for s in members),
        "detailedStatus": aggregate_servers(s["status"] for s in members),
        "primaryNodeId": c.primary_node_id,
        "servers": members,
        "visibilityMap": {
            "mapNodes": [
                {
                    "serverId": s["id"],
                    "visibleNodeIds": reported.get(str(s["id"]), {}).get("visibleNodeIds", []),
                    "unknownNodeIps": reported.get(str(s["id"]), {}).get("unknownNodeIps", []),
                }
                for s in members
            ]
        },
    }


def render_target(t: Target) -> dict[str, Any]:
    if isinstance(t, Server):
        return server(t)
    if isinstance(t, ServerGroup):
        return server_group(t)
    if isinstance(t, Cluster):
        return cluster(t)
    raise TypeError(f"unknown target type {t.type}")


def target_servers(shown: dict[str, Any]) -> list[dict[str, Any]]:
    """The servers a rendered target reaches: a server itself, a group's or cluster's members
    (none at all for an empty one)."""
    return [shown] if shown["type"] == "SERVER" else list(shown["servers"])


def armui_target(shown: dict[str, Any], apps: list[dict[str, Any]]) -> dict[str, Any]:
    """A target as ARM's console lists it (`/armui/api/v1/servers`): its kind in `type`, its
    servers in `details.servers`, its applications (as `application` renders them) in
    `deployments`."""
    members = target_servers(shown)
    return {
        "id": shown["id"],
        "name": shown["name"],
        "type": shown["type"],
        "status": shown["status"],
        "timeCreated": shown["timeCreated"],
        "timeUpdated": shown["timeUpdated"],
        "details": {
            "servers": [{"id": s["id"], "name": s["name"], "status": s["status"],
                         "addresses": s["addresses"], "agentVersion": s["agentVersion"],
                         "runtimeVersion": s["muleVersion"]} for s in members],
        },
        "deployments": [armui_application(a) for a in apps],
    }


def armui_application(full: dict[str, Any]) -> dict[str, Any]:
    """An application as ARM's console lists it (`/armui/api/v1/applications`), from its
    hybrid rendering."""
    target = full["target"]
    return {
        "id": full["id"],
        "name": full["name"],
        "type": "MULE",
        "artifact": full["artifact"],
        "target": {"id": target["id"], "name": target["name"], "type": target["type"]},
        "desiredStatus": full["desiredStatus"],
        "lastReportedStatus": full["lastReportedStatus"],
        "isDeploymentWaiting": full["desiredStatus"] == "UPDATED",
        "application": {"status": full["lastReportedStatus"]},
        "details": {
            "domain": full["name"],
            "servers": [{"id": i["serverId"], "name": i["serverName"],
                         "status": i["lastReportedStatus"], "deploymentId": i["deploymentId"]}
                        for i in full["serverArtifacts"]],
        },
        "timeCreated": full["timeCreated"],
        "timeUpdated": full["timeUpdated"],
    }


def _listening(port: int | None, addresses: list[Any] | None) -> dict[str, Any]:
    """Corral's addition: where an instance listens, as its agent reports (`PORT`), and a URL
    on the server's first non-loopback address."""
    if not port:
        return {}
    ips = [a.get("ip") for a in addresses or [] if isinstance(a, dict)]
    host = next((ip for ip in ips if ip and not ip.startswith("127.")), "127.0.0.1")
    return {"port": port, "url": f"http://{host}:{port}/"}


def artifact(name: str, art: Any) -> dict[str, Any]:
    return {
        "id": art.id,
        "storageId": art.id,  # an integer, as ARM's (Go clients declare it int)
        "name": name,
        "fileName": art.file_name,
        "fileChecksum": art.sha1,
        "fileSize": art.size,
        "timeUpdated": art.time_updated,
        "sha256": art.sha256,  # Corral: the store's address of the bytes
    }


def application_fields(app: Any, art: Any, target: dict[str, Any],
                       instances: Sequence[Any],
                       pinned: Mapping[int, int] | None = None) -> dict[str, Any]:
    """An application from anything with the attributes of `Application`, its artifact's, its
    rendered target and its instance rows (ORM objects or plain rows alike). `pinned`: the
    servers a rollout has not reached yet, and the deployment each keeps running."""
    members = {s["id"]: s for s in target_servers(target)}
    placed = [(i, members[i.server_id]) for i in instances if i.server_id in members]
    expected = {i.server_id: (pinned or {}).get(i.server_id, app.deployment_id)
                for i, _s in placed}
    shown = [instance_report(i.last_reported_status, i.message, i.deployment_id,
                             expected[i.server_id]) for i, _s in placed]
    status = application_status(
        [Instance(word, on["status"] == "RUNNING", bool(i.serving))
         for (word, _m), (i, on) in zip(shown, placed, strict=False)],
        desired=app.desired_status, redeployed=app.deployment_id > 1,
        cluster=target["type"] == "CLUSTER")
    art_view = artifact(app.name, art)
    return {
        "id": app.id,
        "timeCreated": app.time_created,
        "timeUpdated": app.time_updated,
        "name": app.name,
        "uptime": max(0, now_ms() - app.time_started)
        if status.started and app.time_started else 0,
        "artifact": art_view,
        "target": target,
        "desiredStatus": status.desired,
        "lastReportedStatus": status.reported,
        "detailedStatus": status.detailed,
        "started": status.started,
        "configuration": secure.masked(app.configuration),
        "serverArtifacts": [
            {
                "id": i.id,
                "serverId": i.server_id,
                "serverName": on["name"],
                "artifactName": app.name,
                "artifact": art_view,
                "deploymentId": expected[i.server_id],
                "desiredStatus": app.desired_status,
                "lastReportedStatus": word,
                "message": message,
                **_listening(i.port, on["addresses"]),
                "discovered": i.discovered,
                "timeCreated": i.time_created,
                "timeUpdated": i.time_updated,
            }
            for (word, message), (i, on) in zip(shown, placed, strict=False)
        ],
    }


def alert(alert: Alert, looked_at: dict[str, bool] | None = None) -> dict[str, Any]:
    """ARM's alert JSON (a webhook's secret is never shown, only whether it has one), with
    Corral's `firing` (the resources it fires for now) and `watching` (how many resources the
    evaluator has looked at: 0 until its first pass)."""
    actions = [{k: v for k, v in a.items() if k != "secret" and v is not None}
               | ({"hasSecret": bool(a.get("secret"))} if a.get("type") == "webhook" else {})
               for a in alert.actions]
    condition = dict(alert.condition)
    return {"id": alert.id, "name": alert.name, "description": alert.description,
            "severity": alert.severity, "enabled": alert.enabled, "productName": "hybrid",
            "isSystem": False, "organizationId": alert.organization_id,
            "environmentId": alert.environment_id,
            "condition": condition | {"event": condition.get("type")},
            "conditionType": condition.get("type"),
            "actions": actions or [{"type": "email", "emails": [], "userIds": []}],
            "createdAt": alert.created_at, "lastModified": alert.updated_at,
            "timeCreated": alert.created_at, "timeUpdated": alert.updated_at,
            "firing": sorted(r for r, on in (looked_at or {}).items() if on),
            "watching": len(looked_at or {})}


def alert_event(e: AlertEvent, deliveries: list[dict[str, Any]],
                alert: Alert | None = None) -> dict[str, Any]:
    """Corral's fields (`time`, `resource*`, `deliveries`), and ARM's as its Go clients read
    them: `triggeredAt`, `context`, `severity`, `condition` and one `actions` entry per
    notification."""
    shown: dict[str, Any] = {
        "id": e.id, "state": e.state, "time": e.at, "resourceType": e.resource_type,
        "resourceId": e.resource_id, "resourceName": e.resource_name,
        "message": e.message, "value": e.value, "deliveries": deliveries,
        "triggeredAt": e.at, "context": {"name": e.resource_name, "resource": e.resource_id},
        "actions": [{"type": d["type"], "state": d["state"]} for d in deliveries]}
    if alert is not None:
        shown |= {"alertId": alert.id, "alertName": alert.name, "severity": alert.severity,
                  "condition": {"type": alert.condition.get("type"),
                                "resourceType": alert.condition.get("resourceType")}}
    return shown


def alert_delivery(d: AlertDelivery, detailed: bool = True) -> dict[str, Any]:
    """`detailed`: the sending error as it was (admins); others read only that an attempt
    failed, so that a webhook is no port scanner for whoever may read the alert."""
    error = d.last_error if detailed or not d.last_error else "the attempt failed"
    return {"id": d.id, "type": d.kind, "destination": d.destination, "state": d.state,
            "attempts": d.attempts, "lastError": error, "deliveredAt": d.delivered_at}


def deployment(d: Deployment, servers: list[dict[str, Any]]) -> dict[str, Any]:
    art = d.artifact
    return {"id": d.id, "deploymentId": d.number, "kind": d.kind, "state": d.state,
            "artifact": {"name": art.file_name, "fileChecksum": art.sha1, "sha256": art.sha256,
                         "fileSize": art.size},
            "properties": properties_of(d.configuration or {}),
            "secureProperties": dict.fromkeys(secure.names(d.configuration), secure.MASK),
            "note": d.note, "createdBy": d.created_by, "startedAt": d.started_at, "endedAt": d.ended_at,
            "rolledBackTo": d.rolled_back_to, "servers": servers}


def audit_event(e: AuditEvent) -> dict[str, Any]:
    return {"id": e.id, "time": e.time, "organizationId": e.organization_id,
            "environmentId": e.environment_id,
            "actor": {"kind": e.actor_kind, "id": e.actor_id, "name": e.actor_name},
            "source": e.source, "action": e.action, "resource": e.resource,
            "description": e.description, "outcome": e.outcome, "status": e.status}


def registration_token(row: RegistrationToken) -> dict[str, Any]:
    return {"id": registration.token_id(row), "createdAt": row.created_at,
            "expiresAt": row.expires_at, "maxUses": row.max_uses, "uses": row.uses,
            "revoked": row.revoked}


def component(c: TargetComponent) -> dict[str, Any]:
    return {"id": c.id, "component": {"id": c.id, "name": c.name}, "enabled": c.enabled,
            "configuration": c.configuration}
