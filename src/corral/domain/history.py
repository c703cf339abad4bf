"""Deployment history: every deployment of an application (its first deploy, each redeploy,
each rollback) with the exact artifact and configuration, who made it, and how it ended on each
server. A deployment is IN_PROGRESS until every instance reported about it: SUCCEEDED when all
reached the desired status, FAILED as soon as one failed (or, while a rollout carries it, when
the rollout fails without a revert); CANCELLED when a newer one replaced it first,
ROLLED_BACK when a rollback or a revert undid it."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, case, delete, func, select
from sqlalchemy.orm import Session

from corral.db.models import (
    ACTIVE_ROLLOUT,
    AppInstance,
    Application,
    Artifact,
    Deployment,
    Rollout,
    RolloutPin,
    Server,
    now_ms,
)
from corral.domain import views
from corral.domain.names import as_id
from corral.errors import Conflict, NotFound

OPEN = "IN_PROGRESS"
FAILED_STATUSES = frozenset({"DEPLOYMENT_FAILED"})


def begin(session: Session, app: Application, kind: str, by: str,
          rolled_back_to: int | None = None, note: str = "") -> Deployment:
    """Record the deployment `app` now holds (its number, artifact and configuration); one
    still in progress is CANCELLED: this one replaced it (a first deployment replaces none)."""
    for earlier in session.scalars(select(Deployment).where(
            Deployment.application_id == app.id, Deployment.state == OPEN)) \
            if kind != "deploy" else ():
        end(session, earlier, "CANCELLED")
    row = Deployment(application_id=app.id, number=app.deployment_id, kind=kind,
                     artifact_id=app.artifact_id, configuration=dict(app.configuration or {}),
                     created_by=by[:255], state=OPEN, started_at=now_ms(), servers=[],
                     rolled_back_to=rolled_back_to, note=note)
    session.add(row)
    session.flush()
    return row


def _instances(session: Session, app_ids: Iterable[int]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = defaultdict(list)
    for row in session.execute(
            select(AppInstance.application_id, AppInstance.server_id, Server.name,
                   AppInstance.deployment_id, AppInstance.last_reported_status,
                   AppInstance.message)
            .join(Server, Server.id == AppInstance.server_id)
            .where(AppInstance.application_id.in_(sorted(set(app_ids))))
            .order_by(AppInstance.server_id)):
        found[row.application_id].append(row)
    return found


def _per_server(number: int, instances: list[Any], waiting: frozenset[int] = frozenset(),
                *, ended: bool = False) -> list[dict[str, Any]]:
    """What each server did with deployment `number`: its report about it, that a rollout has
    not reached it (WAITING: it ran the deployment before, or nothing), or that it has not
    reported about it yet (DEPLOYING). `ended`: the words of a deployment that is over, which
    promise nothing more (no restart to come, no rollout to reach a server)."""
    def one(i: Any) -> dict[str, Any]:
        if i.deployment_id == number:
            message = i.message or ""
            return {"status": i.last_reported_status,
                    "message": PROMISED_RESTART.sub("", message) if ended else message}
        if i.server_id in waiting:
            runs = f"runs deployment {i.deployment_id}" if i.deployment_id else "runs nothing"
            return {"status": "WAITING", "message": f"never reached: {runs}" if ended
                    else f"{runs} until the rollout reaches it"}
        return {"status": "DEPLOYING", "message": ""}

    return [{"serverId": i.server_id, "serverName": i.name, **one(i)} for i in instances]


PROMISED_RESTART = re.compile(r"; restart \d+ in [\d.]+s$")
"""The agent's "…; restart 3 in 2.0s": true while the deployment runs, not once it ended."""


def end(session: Session, row: Deployment, state: str) -> None:
    """What each server did, kept as it stands when the deployment ends (servers a rollout
    never reached are still pinned then: they read WAITING, not DEPLOYING)."""
    row.state = state
    row.ended_at = now_ms()
    waiting = frozenset(session.scalars(select(RolloutPin.server_id)
                                        .where(RolloutPin.application_id == row.application_id)))
    row.servers = _per_server(row.number, _instances(session, [row.application_id])
                              .get(row.application_id, []), waiting, ended=True)


def settle(session: Session, app_ids: Iterable[int]) -> None:
    """After reports: end the open deployments of these applications that every instance
    has settled (SUCCEEDED), or that one instance failed (FAILED). One aggregate query for
    all of them: a group of ten thousand reporting in bursts is counted, not loaded."""
    ids = sorted(set(app_ids))
    if not ids:
        return
    about = AppInstance.deployment_id == Deployment.number
    settled = func.sum(case((and_(about, AppInstance.last_reported_status
                                  == Application.desired_status), 1), else_=0))
    failed = func.sum(case((and_(about, AppInstance.last_reported_status
                                 .in_(FAILED_STATUSES)), 1), else_=0))
    counts = session.execute(
        select(Deployment.id, func.count(), settled, failed)
        .join(AppInstance, AppInstance.application_id == Deployment.application_id)
        .join(Application, Application.id == Deployment.application_id)
        .where(Deployment.application_id.in_(ids), Deployment.state == OPEN)
        .group_by(Deployment.id)).all()
    ending = {deployment_id: "FAILED" if bad else "SUCCEEDED"
              for deployment_id, total, ok, bad in counts if bad or ok == total}
    failing = sorted(d for d, state in ending.items() if state == "FAILED")
    for carried in session.scalars(select(Rollout.history_id).where(
            Rollout.history_id.in_(failing), Rollout.state.in_(ACTIVE_ROLLOUT),
            Rollout.desired_status.is_(None))) if failing else ():
        # its rollout ends it (ROLLED_BACK with autoRevert, FAILED without): a FAILED here
        # would have turned into ROLLED_BACK a second later
        ending.pop(carried, None)
    if not ending:
        return
    # still open once locked: a rollout may have ended one meanwhile (reverted it: ROLLED_BACK),
    # and on PostgreSQL the lock waits for that change and the condition reads its outcome
    for row in session.scalars(select(Deployment).where(
            Deployment.id.in_(sorted(ending)), Deployment.state == OPEN)
            .with_for_update().execution_options(populate_existing=True)):
        end(session, row, ending[row.id])


def listing(session: Session, app: Application) -> list[dict[str, Any]]:
    """Newest first; an open deployment shows each server as it stands now."""
    rows = session.scalars(select(Deployment).where(Deployment.application_id == app.id)
                           .order_by(Deployment.number.desc())).all()
    live = _instances(session, [app.id]).get(app.id, [])
    spread = {r.history_id: {"policy": r.policy, "state": r.state, "updated": r.updated,
                             "message": r.message, "startedAt": r.started_at,
                             "endedAt": r.ended_at, "desiredStatus": r.desired_status}
              for r in session.scalars(select(Rollout).where(Rollout.application_id == app.id)
                                       .order_by(Rollout.id))}  # a deployment's latest
    waiting = frozenset(session.scalars(select(RolloutPin.server_id)
                                        .where(RolloutPin.application_id == app.id)))
    return [{**views.deployment(d, _per_server(d.number, live, waiting) if d.state == OPEN
                     else d.servers), "rollout": spread.get(d.id)} for d in rows]




def rollback_target(session: Session, app: Application, history_id: int | None) -> Deployment:
    """The deployment to restore: the one named, or the latest successful one before the
    current deployment."""
    if history_id is not None:
        row = session.get(Deployment, history_id) if as_id(history_id) is not None else None
        if row is None or row.application_id != app.id:
            raise NotFound(f"deployment {history_id} of application {app.id} not found")
        if row.number == app.deployment_id:
            raise Conflict(f"deployment {history_id} is the current one")
        return row
    row = session.scalars(select(Deployment).where(
        Deployment.application_id == app.id, Deployment.state == "SUCCEEDED",
        Deployment.number < app.deployment_id).order_by(Deployment.number.desc())
        .limit(1)).first()
    if row is None:
        raise Conflict(f"application {app.id} has no earlier successful deployment to roll "
                       "back to; name one with deploymentId")
    return row


SPARE_MS = 3600 * 1000
"""An artifact recorded within the hour is never collected (a deploy may be about to use it)."""


def collect(session: Session, keep: int) -> list[str]:
    """Forget all but the newest `keep` deployments of each application, and the artifacts
    that no application nor remaining deployment uses. Returns the checksums no artifact
    refers to any more: the caller deletes those blobs from the store after the commit."""
    ranked = select(Deployment.id, func.row_number().over(
        partition_by=Deployment.application_id, order_by=Deployment.number.desc())
        .label("rank")).subquery()
    session.execute(delete(Deployment).where(Deployment.id.in_(
        select(ranked.c.id).where(ranked.c.rank > keep))))
    used = select(Application.artifact_id).union(select(Deployment.artifact_id))
    unused = session.execute(select(Artifact.id, Artifact.sha256).where(
        Artifact.id.not_in(used), Artifact.time_updated < now_ms() - SPARE_MS)).all()
    if not unused:
        return []
    session.execute(delete(Artifact).where(Artifact.id.in_([a for a, _ in unused])))
    shas = sorted({sha for _, sha in unused})
    still = set(session.scalars(select(Artifact.sha256).where(Artifact.sha256.in_(shas))))
    return [sha for sha in shas if sha not in still]
