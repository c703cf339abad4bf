"""Each server's desired state, assembled when it is pushed (ADR 0007).

Nothing per server is stored but a revision number: what a server should run is the
applications of its own target, of its group and of its cluster, read from those rows at push
time by a few set-based queries. A change bumps the revision of every server it reaches in one
`UPDATE`, and the after-commit hook tells the gateway which servers moved; an agent that missed
a push converges on the next sweep or on reconnect, because the revision it was sent no longer
matches (ADR 0001: level-triggered)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, or_, select, update
from sqlalchemy.orm import Session

from corral import jsontext, wire
from corral.db.chunks import IDS_PER_QUERY, chunked
from corral.db.models import (
    Application,
    Artifact,
    Cluster,
    Deployment,
    RolloutPin,
    Server,
    TargetComponent,
    now_ms,
)
from corral.domain.configuration import LOGGING_SERVICE, log_levels_of, properties_of

CHANGED_KEY = "corral.changed_servers"

SecretOf = Callable[[int, str], str]
"""(cluster id, stored nonce) → the cluster's secret; the gateway derives it with its sealer."""
Opener = Callable[[dict[str, Any] | None, str], dict[str, str]]
"""(stored configuration, application name) → its secure property values (`secure.opened`)."""


def _no_secrets(configuration: dict[str, Any] | None, name: str) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Told:
    """What the control plane tells every server beside its own applications, the same for a
    whole batch (`ControlPlane.told`)."""

    secret_of: SecretOf
    gateways: list[str] | None = None
    """every gateway URL the agents may use (`CORRAL_GATEWAY_URLS`)"""
    metrics_seconds: float | None = None
    """how often they measure (`CORRAL_METRICS_SECONDS`)"""
    trusted_cas: list[str] | None = None
    """the fingerprints of the CAs the control plane trusts (a rotation ends with one)"""
    open_secrets: Opener = _no_secrets
    """opens each application's secure property values, for the servers that run it only"""


_servers = cast(Table, Server.__table__)


def changed(session: Session, *, servers: Iterable[int] = (), targets: Iterable[int] = ()) -> None:
    """The desired state of these servers, and of every member of these groups and clusters,
    moved: one `UPDATE` bumps their revisions (an application on a server's own target is named
    by that server's id in `servers`)."""
    server_ids, target_ids = sorted(set(servers)), sorted(set(targets))
    if not (server_ids or target_ids):
        return
    session.flush()
    found: set[int] = session.info.setdefault(CHANGED_KEY, set())
    for start in range(0, max(len(server_ids), len(target_ids)), IDS_PER_QUERY):
        some_servers = server_ids[start : start + IDS_PER_QUERY]
        some_targets = target_ids[start : start + IDS_PER_QUERY]
        reached = or_(_servers.c.id.in_(some_servers),
                      _servers.c.server_group_id.in_(some_targets),
                      _servers.c.cluster_id.in_(some_targets))
        if session.get_bind().dialect.name == "postgresql":
            # in id order first: two changes reaching the same servers wait for each other
            # instead of deadlocking (an UPDATE locks rows in whatever order it scans them)
            session.execute(select(_servers.c.id).where(reached).order_by(_servers.c.id)
                            .with_for_update(key_share=True))
        bumped = session.execute(
            update(_servers).where(reached)
            .values(desired_revision=_servers.c.desired_revision + 1)
            .returning(_servers.c.id))
        found.update(bumped.scalars())


def messages(session: Session, server_ids: list[int], told: Told) -> dict[int, tuple[int, str]]:
    """The desired-state message of each of these servers as (revision, wire text); a deleted
    server is absent. Each application's part is encoded once per call, however many servers
    share it, so a group of ten thousand costs one encoding of the group's applications. The
    database holds a nonce per cluster; each member gets the secret derived from it, so no
    cluster key is ever kept in the database."""
    out: dict[int, tuple[int, str]] = {}
    told_all = wire.fields_text(gateways=told.gateways or None,
                                metricsSeconds=told.metrics_seconds,
                                trustedCas=told.trusted_cas or None)
    now = now_ms()
    for chunk in chunked(server_ids):
        found = session.execute(
            select(Server.id, Server.name, Server.desired_revision, Server.server_group_id,
                   Server.cluster_id, Server.renewal_due)
            .where(Server.id.in_(chunk))).all()
        renewals = {sid: due for sid, *_, due in found if due is not None}
        rows = [row[:5] for row in found]
        reaching = {sid for sid, *_ in rows} | {g for *_, g, _c in rows if g} | \
            {c for *_, c in rows if c}
        apps = _application_parts(session, reaching, told.open_secrets)
        clusters = _cluster_parts(session, {c for *_, c in rows if c}, told.secret_of)
        pinned = _pinned_parts(session, chunk, told.open_secrets)
        for sid, name, revision, group_id, cluster_id in rows:
            mine = sorted(apps.get(sid, []) + apps.get(group_id or 0, [])
                          + apps.get(cluster_id or 0, []))
            if sid in pinned:  # a rollout has not reached this server: what it ran before
                kept = [(n, pinned[sid].get(n, part)) for n, part in mine]
                mine = [(n, part) for n, part in kept if part is not None]
            out[sid] = (revision, wire.desired_text(
                revision=revision, server_id=sid, server_name=name,
                cluster=clusters.get(cluster_id or 0), applications=[p for _n, p in mine],
                tail=told_all + _renewal(renewals.get(sid), now)))
    return out


def _renewal(due: int | None, now: int) -> str:
    """An operator or a CA rotation asked this server to renew its certificate: within how
    many seconds (the agent picks a moment in that window, so a fleet does not renew at once)."""
    if due is None:
        return ""
    return wire.fields_text(renewCertificateWithin=round(max(0.0, (due - now) / 1000), 1))


def _json(value: object) -> str:
    return jsontext.dumps(value).decode()


def _application_parts(session: Session, target_ids: set[int], open_secrets: Opener
                       ) -> dict[int, list[tuple[str, str]]]:
    """Per target: (name, encoded application) of every application deployed to it."""
    found: dict[int, list[tuple[str, str]]] = defaultdict(list)
    if not target_ids:
        return found
    rows = session.execute(
        select(Application.target_id, Application.id, Application.name,
               Application.deployment_id, Application.desired_status, Application.configuration,
               Artifact.sha256, Artifact.sha1, Artifact.size, Artifact.file_name)
        .join(Artifact, Artifact.id == Application.artifact_id)
        .where(Application.target_id.in_(sorted(target_ids)))).all()
    logging = _logging(session, {r[0] for r in rows})
    for target_id, app_id, name, deployment, status, conf, sha256, sha1, size, file_name in rows:
        found[target_id].append((name, _part(
            app_id, name, deployment, status, conf, sha256, sha1, size, file_name,
            levels=log_levels_of(logging.get(target_id), name),
            secrets=open_secrets(conf, name))))
    return found


def _part(app_id: int, name: str, deployment: int, status: str, conf: dict[str, Any] | None,
          sha256: str, sha1: str, size: int, file_name: str,
          levels: dict[str, str] | None = None, secrets: dict[str, str] | None = None) -> str:
    """One application as a desired-state message lists it (log levels only where set: a
    change of level reaches the application without a redeployment; secure properties only
    where there are some)."""
    part: dict[str, Any] = {
        "name": name,
        "applicationId": app_id,
        "deploymentId": deployment,
        "desiredStatus": status,
        "artifact": {"sha256": sha256, "sha1": sha1, "size": size, "fileName": file_name},
        "properties": properties_of(conf or {}),
    }
    if levels:
        part["logLevels"] = levels
    if secrets:
        part["secureProperties"] = secrets
    return _json(part)


def _pinned_parts(session: Session, server_ids: list[int], open_secrets: Opener
                  ) -> dict[int, dict[str, str | None]]:
    """Per server a rollout has not reached: (name → encoded application) of the deployment
    it keeps running (a `RolloutPin`), or None where the application is not to run yet."""
    found: dict[int, dict[str, str | None]] = defaultdict(dict)
    rows = session.execute(
        select(RolloutPin.server_id, Application.target_id, Application.id, Application.name,
               Application.desired_status, RolloutPin.desired_status,
               Deployment.number, Deployment.configuration,
               Artifact.sha256, Artifact.sha1, Artifact.size, Artifact.file_name)
        .join(Application, Application.id == RolloutPin.application_id)
        .outerjoin(Deployment, Deployment.id == RolloutPin.history_id)
        .outerjoin(Artifact, Artifact.id == Deployment.artifact_id)
        .where(RolloutPin.server_id.in_(server_ids))).all()
    logging = _logging(session, {r[1] for r in rows})
    for sid, target_id, app_id, name, status, kept, number, conf, sha256, sha1, size, \
            file_name in rows:
        found[sid][name] = None if number is None else _part(
            app_id, name, number, kept or status, conf, sha256, sha1, size, file_name,
            levels=log_levels_of(logging.get(target_id), name),
            secrets=open_secrets(conf, name))
    return found


def _logging(session: Session, target_ids: set[int]) -> dict[int, dict[str, Any]]:
    """Per target: its logging service's configuration, where that service is enabled."""
    if not target_ids:
        return {}
    return dict(session.execute(
        select(TargetComponent.target_id, TargetComponent.configuration)
        .where(TargetComponent.target_id.in_(sorted(target_ids)),
               TargetComponent.name == LOGGING_SERVICE,
               TargetComponent.enabled.is_(True))).all())


def _cluster_parts(session: Session, cluster_ids: set[int], secret_of: SecretOf
                   ) -> dict[int, str]:
    """Per cluster: its encoded section (membership, where each member listens, the key)."""
    if not cluster_ids:
        return {}
    ids = sorted(cluster_ids)
    members: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for sid, cid, ip, info in session.execute(
            select(Server.id, Server.cluster_id, Server.cluster_ip, Server.runtime_information)
            .where(Server.cluster_id.in_(ids)).order_by(Server.id)):
        members[cid].append({"serverId": sid, "serverIp": ip,
                             "clusterPort": (info or {}).get("clusterPort")})
    return {
        cid: _json({"id": cid, "name": name, "multicastEnabled": multicast,
                    "secret": secret_of(cid, nonce), "members": members[cid]})
        for cid, name, multicast, nonce in session.execute(
            select(Cluster.id, Cluster.name, Cluster.multicast_enabled, Cluster.secret)
            .where(Cluster.id.in_(ids)))
    }
