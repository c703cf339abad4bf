"""Status vocabulary and aggregation (ARM's values first)."""

from __future__ import annotations

from collections.abc import Iterable

DESIRED_STATUSES = ("STARTED", "STOPPED")
TRANSITIONAL = frozenset({"DEPLOYING", "STARTING", "STOPPING", "UPDATED"})


def aggregate_application(statuses: Iterable[str]) -> str:
    """One application's status over its servers."""
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
    """A group's or cluster's status over its servers' connection states."""
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
