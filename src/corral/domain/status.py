"""Status vocabulary and aggregation.

ARM's clients wait on ARM's words, so the fields they read (`lastReportedStatus`, a target's
`status`, `desiredStatus`) use those words only. Corral's finer aggregate (partially started,
deploying, partially running) goes in `detailedStatus` beside them. ADR 0006 says why a group
or cluster with some servers down reads as it does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DESIRED_STATUSES = ("STARTED", "STOPPED")
TRANSITIONAL = frozenset({"DEPLOYING", "STARTING", "STOPPING", "UPDATED"})
NOT_YET_RUNNING = frozenset({"UNDEPLOYED", "DEPLOYING", "STARTING"})


def aggregate_application(statuses: Iterable[str]) -> str:
    """Corral's finer view of one application over its servers (`detailedStatus`)."""
    values = list(statuses)
    if not values or all(s == "UNDEPLOYED" for s in values):
        return "UNDEPLOYED"
    if any(s == "DEPLOYMENT_FAILED" for s in values):
        return "DEPLOYMENT_FAILED"
    started = sum(s == "STARTED" for s in values)
    if started == len(values):
        return "STARTED"
    if started:
        return "PARTIALLY_STARTED"
    if any(s in TRANSITIONAL for s in values):
        return "DEPLOYING"
    return "STOPPED"


def aggregate_servers(statuses: Iterable[str]) -> str:
    """Corral's finer view of a group's or cluster's servers (`detailedStatus`)."""
    values = list(statuses)
    if not values:
        return "CREATED"
    running = sum(s == "RUNNING" for s in values)
    if running == len(values):
        return "RUNNING"
    if running:
        return "PARTIALLY_RUNNING"
    if all(s == "CREATED" for s in values):
        return "CREATED"
    return "DISCONNECTED"


def target_status(statuses: Iterable[str]) -> str:
    """A group's or cluster's `status` in ARM's server words: RUNNING while any of its servers
    runs (the target takes deployments, and its absent servers converge when they return)."""
    detailed = aggregate_servers(statuses)
    return "RUNNING" if detailed == "PARTIALLY_RUNNING" else detailed


@dataclass(frozen=True)
class Instance:
    status: str
    """The instance's own last reported status (Corral's words, transitions included)."""
    connected: bool
    """Whether its server's agent is connected now."""
    serving: bool = False
    """A deployment of the application passed its checks and runs there: this one, or an
    earlier one still running while the next is fetched."""


@dataclass(frozen=True)
class ApplicationStatus:
    desired: str
    """`desiredStatus`: the operator's wish, or UPDATED while a redeploy settles."""
    reported: str
    """`lastReportedStatus` in ARM's words: UNDEPLOYED, STARTED, STOPPED, DEPLOYMENT_FAILED."""
    detailed: str
    """Corral's finer aggregate over every instance."""

    @property
    def started(self) -> bool:
        return self.reported == "STARTED"


def instance_report(reported: str, message: str | None, reported_deployment: int,
                    deployment: int) -> tuple[str, str | None]:
    """What one instance shows, (status, message). Its row holds the agent's last report and the
    deployment it was about; until the agent reports the application's current deployment, an
    instance that ran something is DEPLOYING, one that never did stays UNDEPLOYED."""
    if reported_deployment == deployment:
        return reported, message
    return ("UNDEPLOYED" if reported == "UNDEPLOYED" else "DEPLOYING"), None


def _arm_word(status: str) -> str:
    if status in ("STARTED", "STOPPED", "DEPLOYMENT_FAILED"):
        return status
    if status == "STOPPING":
        return "STOPPED"
    return "UNDEPLOYED"  # nothing of the current deployment runs yet


def application_status(
    instances: Sequence[Instance], *, desired: str, redeployed: bool, cluster: bool
) -> ApplicationStatus:
    """One application's status as ARM's clients read it.

    Only instances on connected servers count while any server is connected: a server that is
    away keeps its last report, and the application converges there when it returns. The
    application is done (`STARTED` with `desiredStatus` `STARTED`) on a cluster while its current
    deployment runs on at least one node (as ARM documents), on a server or group when it runs
    on every counted server. Before that, a failure or a stop says so; otherwise it reads
    `STARTED` wherever some deployment of it serves (a redeploy, or a group partly started, with
    `desiredStatus` `UPDATED` until it is done), and `UNDEPLOYED` only when nothing of it runs."""
    detailed = aggregate_application(i.status for i in instances)
    counted = [i for i in instances if i.connected] or list(instances)
    words = [_arm_word(i.status) for i in counted]
    done = bool(words) and ("STARTED" in words if cluster else
                            all(w == "STARTED" for w in words))
    if done:
        reported = "STARTED"
    elif "DEPLOYMENT_FAILED" in words:
        reported = "DEPLOYMENT_FAILED"
    elif "STOPPED" in words:
        reported = "STOPPED"
    elif any(i.serving or i.status == "STARTED" for i in counted):
        reported = "STARTED"  # it runs, the current deployment not everywhere yet
    else:
        reported = "UNDEPLOYED"
    settling = any(i.status in NOT_YET_RUNNING for i in counted)
    updating = (redeployed and settling) or (reported == "STARTED" and not done)
    shown = "UPDATED" if desired == "STARTED" and updating else desired
    return ApplicationStatus(desired=shown, reported=reported, detailed=detailed)
