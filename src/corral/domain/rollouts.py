"""Rollouts: a redeploy of a group's or cluster's application that reaches its servers a few at
a time. Servers not reached yet are pinned to the deployment they ran (`RolloutPin`), so they
are sent exactly what they run and nothing restarts there. Each batch must be healthy (its
instances report STARTED about the new deployment, and stay so for `minHealthySeconds`)
within `healthDeadlineSeconds` before the next is released. A failure stops the rollout at
once: the servers not reached keep the old version, and with `autoRevert` every server updated
is returned to it. A `canary` releases that many servers first and waits for a promote.

The leader advances every active rollout (`advance_all`) from the database alone, so a control
plane killed mid-rollout resumes it on restart, or another replica does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from corral.db.models import (
    ACTIVE_ROLLOUT,
    AppInstance,
    Application,
    Deployment,
    Rollout,
    RolloutPin,
    Server,
    now_ms,
)
from corral.domain import desired_state, history
from corral.errors import Conflict, InvalidInput, NotFound


@dataclass(frozen=True)
class Policy:
    maxParallel: int | None = None
    """Servers updated at once; None: all (ARM's behaviour)."""
    minHealthySeconds: float = 0
    healthDeadlineSeconds: float = 300
    autoRevert: bool = False
    canary: int = 0

    def batch(self, first: bool, promoted: bool) -> int | None:
        if first and self.canary and not promoted:
            return self.canary
        return self.maxParallel


def parse_policy(raw: object) -> Policy | None:
    """A `rollout` object (or its JSON text) as the API receives it; None when absent."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidInput("rollout is not valid JSON") from exc
    if not isinstance(raw, Mapping):
        raise InvalidInput("rollout must be an object")
    known = {"maxParallel", "minHealthySeconds", "healthDeadlineSeconds", "autoRevert",
             "canary"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"rollout: unknown field {unknown[0]!r}; known: "
                           f"{', '.join(sorted(known))}")

    def number(name: str, low: float, high: float, whole: bool) -> Any:
        value = raw.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (whole and not isinstance(value, int)) or not low <= value <= high:
            kind = "an integer" if whole else "a number"
            raise InvalidInput(f"rollout.{name} must be {kind} from {low:g} to {high:g}")
        return value

    auto = raw.get("autoRevert", False)
    if not isinstance(auto, bool):
        raise InvalidInput("rollout.autoRevert must be true or false")
    defaults = Policy()
    return Policy(
        maxParallel=number("maxParallel", 1, 100_000, True),
        minHealthySeconds=number("minHealthySeconds", 0, 86_400, False)
        or defaults.minHealthySeconds,
        healthDeadlineSeconds=number("healthDeadlineSeconds", 1, 86_400, False)
        or defaults.healthDeadlineSeconds,
        autoRevert=auto, canary=number("canary", 0, 100_000, True) or 0)


def policy_of(stored: Mapping[str, Any] | None) -> Policy | None:
    """A policy as stored (`shown_policy`), checked when it was given."""
    return Policy(**stored) if stored else None


def shown_policy(policy: Policy) -> dict[str, Any]:
    return asdict(policy)


def start(session: Session, app: Application, previous: Deployment | None, new: Deployment,
          policy: Policy) -> Rollout | None:
    """Pin every server of the application to `previous` (None, for a first deployment: to
    nothing), then release the first batch. None when the policy releases every server at
    once anyway (nothing to orchestrate). The caller has ended any rollout before
    (`supersede`)."""
    return _launch(session, app, policy.batch(first=True, promoted=False),
                   pinned_to=previous.id if previous else None, kept_status=None,
                   history_id=new.id, previous_id=previous.id if previous else None,
                   policy=shown_policy(policy), promoted=False)


def start_status(session: Session, app: Application, old: str, current: Deployment,
                 policy: Policy) -> Rollout | None:
    """A start or stop reaching the servers `maxParallel` at a time: the others keep `old`
    meanwhile. None when every server can have it at once."""
    return _launch(session, app, policy.maxParallel, pinned_to=current.id, kept_status=old,
                   history_id=current.id, previous_id=current.id,
                   policy=shown_policy(policy), desired_status=app.desired_status,
                   promoted=True)


def _servers(session: Session, app_id: int) -> list[int]:
    return list(session.scalars(select(AppInstance.server_id)
                                .where(AppInstance.application_id == app_id)
                                .order_by(AppInstance.server_id)))


def _pin(session: Session, app_id: int, servers: list[int], history_id: int | None,
         kept_status: str | None = None) -> None:
    """These servers keep `history_id` (None: nothing of the application) meanwhile."""
    if servers:
        session.execute(insert(RolloutPin), [
            {"application_id": app_id, "server_id": sid, "history_id": history_id,
             "desired_status": kept_status} for sid in servers])


def _launch(session: Session, app: Application, first: int | None, *, pinned_to: int | None,
            kept_status: str | None, **fields: Any) -> Rollout | None:
    servers = _servers(session, app.id)
    if first is None or first >= len(servers):
        return None
    _pin(session, app.id, servers, pinned_to, kept_status)
    now = now_ms()
    rollout = Rollout(application_id=app.id, state="RUNNING", updated=[], healthy_since={},
                      batch_started_at=now, message="", started_at=now, **fields)
    session.add(rollout)
    session.flush()
    _release(session, rollout, servers[:first])
    return rollout


def in_progress(session: Session, app_id: int) -> Rollout | None:
    return session.scalars(select(Rollout).where(Rollout.application_id == app_id,
                                                 Rollout.state.in_(ACTIVE_ROLLOUT))).first()


def _release(session: Session, rollout: Rollout, servers: list[int],
             now: int | None = None) -> None:
    session.execute(delete(RolloutPin).where(RolloutPin.application_id == rollout.application_id,
                                             RolloutPin.server_id.in_(servers)))
    rollout.updated = [*rollout.updated, *servers]
    rollout.batch_started_at = now or now_ms()
    desired_state.changed(session, servers=servers)


def _finish(session: Session, rollout: Rollout, state: str, message: str) -> None:
    rollout.state = state
    rollout.message = message[:2000]
    rollout.ended_at = now_ms()


def any_running(session: Session) -> bool:
    """Cheap, read-only: whether `advance_all` has anything to do."""
    return session.scalar(select(Rollout.id).where(Rollout.state == "RUNNING").limit(1)) \
        is not None


def advance_all(session: Session) -> int:
    """One step of every running rollout; how many moved on."""
    moved = 0
    for rollout in session.scalars(select(Rollout).where(Rollout.state == "RUNNING")
                                   .order_by(Rollout.id)):
        moved += advance(session, rollout)
    return moved


def advance(session: Session, rollout: Rollout, now: int | None = None) -> int:
    now = now or now_ms()
    policy = policy_of(rollout.policy) or Policy()
    new = session.get_one(Deployment, rollout.history_id)
    instances = {sid: (about, status, message) for sid, about, status, message in
                 session.execute(select(AppInstance.server_id, AppInstance.deployment_id,
                                        AppInstance.last_reported_status,
                                        AppInstance.message)
                                 .where(AppInstance.application_id
                                        == rollout.application_id))}
    healthy = dict(rollout.healthy_since)
    wanted = rollout.desired_status or "STARTED"
    for sid in [s for s in rollout.updated if s in instances]:  # left the group: not counted
        about, status, message = instances[sid]
        if about == new.number and status == "DEPLOYMENT_FAILED":
            return _failed(session, rollout, sid, message or "deployment failed")
        if about == new.number and status == wanted:
            healthy.setdefault(str(sid), now)
        else:
            healthy.pop(str(sid), None)
            if now - rollout.batch_started_at > policy.healthDeadlineSeconds * 1000:
                return _failed(session, rollout, sid, f"not healthy within "
                               f"{policy.healthDeadlineSeconds:g} s (last: {status})")
    if healthy != rollout.healthy_since:
        rollout.healthy_since = healthy
    ready = all(str(sid) in healthy and now - healthy[str(sid)]
                >= policy.minHealthySeconds * 1000 for sid in rollout.updated if sid in instances)
    if not ready:
        return 0
    waiting = [sid for sid in sorted(instances) if sid not in rollout.updated]
    if not waiting:
        _finish(session, rollout, "SUCCEEDED", f"{len(rollout.updated)} servers updated")
        session.execute(delete(RolloutPin).where(
            RolloutPin.application_id == rollout.application_id))
        return 1
    if policy.canary and not rollout.promoted and rollout.desired_status is None:
        rollout.state = "WAITING"
        rollout.message = (f"canary of {len(rollout.updated)} healthy; promote to go on, or "
                           "cancel to revert")
        return 1
    size = policy.batch(first=False, promoted=True) or len(waiting)
    _release(session, rollout, waiting[:size], now)
    return 1


def _failed(session: Session, rollout: Rollout, server_id: int, why: str) -> int:
    server = session.get(Server, server_id)
    message = f"{server.name if server else f'server {server_id}'}: {why}"
    if rollout.desired_status is not None:  # a start or stop: stopped where it is
        _finish(session, rollout, "FAILED", message)
        return 1
    if (policy_of(rollout.policy) or Policy()).autoRevert:
        _revert(session, rollout)
        _finish(session, rollout, "REVERTED", message)
    else:
        _finish(session, rollout, "FAILED", message)
        deployment = session.get_one(Deployment, rollout.history_id)
        if deployment.state == history.OPEN:
            history.end(session, deployment, "FAILED")
    return 1


def _revert(session: Session, rollout: Rollout) -> None:
    """Every server back on the previous deployment: the application row itself returns to it
    (servers never reached run it already and restart nothing), and the pins go."""
    app = session.get_one(Application, rollout.application_id)
    # the servers first, then the deployment: the order of a report that ends a deployment
    # (`history.settle`); the other order deadlocked with it on PostgreSQL
    desired_state.changed(session, targets=[app.target_id])
    new = session.get_one(Deployment, rollout.history_id)
    history.end(session, new, "ROLLED_BACK")
    if rollout.previous_id is None:
        # a first deployment: what ran before was nothing; the servers it reached stop and
        # remove it, and the application waits for a deployment that works
        session.execute(delete(RolloutPin).where(RolloutPin.application_id == app.id))
        _pin(session, app.id, _servers(session, app.id), None)
        return
    previous = session.get_one(Deployment, rollout.previous_id)
    app.artifact_id = previous.artifact_id
    app.configuration = dict(previous.configuration or {})
    app.deployment_id = previous.number
    app.time_updated = now_ms()
    session.execute(delete(RolloutPin).where(RolloutPin.application_id == app.id))


def _active(session: Session, app_id: int, history_id: int) -> Rollout:
    rollout = session.scalars(select(Rollout).where(
        Rollout.application_id == app_id, Rollout.history_id == history_id,
        Rollout.state.in_(ACTIVE_ROLLOUT))).first()
    if rollout is None:
        raise NotFound(f"deployment {history_id} of application {app_id} has no rollout in "
                       "progress")
    return rollout


def promote(session: Session, app_id: int, history_id: int) -> Rollout:
    rollout = _active(session, app_id, history_id)
    if rollout.state != "WAITING" and rollout.promoted:
        raise Conflict("this rollout was promoted already")
    rollout.promoted = True
    rollout.state = "RUNNING"
    rollout.message = "promoted"
    advance(session, rollout)
    return rollout


def cancel(session: Session, app_id: int, history_id: int) -> Rollout:
    """Stop now and return every updated server to the previous deployment."""
    rollout = _active(session, app_id, history_id)
    _revert(session, rollout)
    session.get_one(Deployment, rollout.history_id).state = "CANCELLED"
    _finish(session, rollout, "CANCELLED", "cancelled; every server is back on the previous "
                                           "deployment")
    return rollout


def supersede(session: Session, app: Application) -> None:
    """A new deployment without a rollout: any rollout still going ends, and every server is
    sent the new deployment."""
    for earlier in session.scalars(select(Rollout).where(
            Rollout.application_id == app.id, Rollout.state.in_(ACTIVE_ROLLOUT))):
        _finish(session, earlier, "CANCELLED", "replaced by a newer deployment")
    session.execute(delete(RolloutPin).where(RolloutPin.application_id == app.id))


def set_default(session: Session, target: Any, raw: object) -> None:
    """A group's or cluster's default policy for redeploys (None clears it)."""
    if target.type == "SERVER":
        raise InvalidInput("a rollout policy is for server groups and clusters")
    policy = parse_policy(raw)
    target.rollout_policy = shown_policy(policy) if policy else None
