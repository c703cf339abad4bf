"""ARM's standalone alerts, in four parts: what an alert is and its checks (`rules`), what a
condition sees of the fleet (`conditions`: one small function per condition type), the
evaluator that turns changes into firings (`evaluator`), and the outbox's bookkeeping
(`outbox`; the sending is the gateway's, `gateway/alerting.py`).

A condition is either a *level* (server down, CPU above a threshold): it fires once when it
starts to hold for a resource and resolves once when it stops. Or it is an *event* (a version
changed, a member was added, a resource was deleted, a deployment succeeded): it fires once
when the value it watches changes. What the evaluator last saw is in `alert_states`, so no
condition fires twice for one change, whichever replica leads. Each firing is an
`AlertEvent` with one `AlertDelivery` per destination, written in the same transaction; the
leader sends them afterwards."""

from corral.domain.alerts.evaluator import any_enabled, evaluate, header_text
from corral.domain.alerts.outbox import delivered, due, failed, still_due
from corral.domain.alerts.rules import (
    CONDITIONS,
    SEVERITIES,
    create,
    dead_letters,
    firing_counts,
    get,
    history,
    is_threshold,
    listing,
    looked_at,
    recent_events,
    remove,
    resource_history,
    update,
)

__all__ = [
    "CONDITIONS", "SEVERITIES", "any_enabled", "create", "dead_letters", "delivered", "due",
    "evaluate", "failed", "firing_counts", "get", "header_text", "history", "is_threshold",
    "listing", "looked_at", "recent_events", "remove", "resource_history", "still_due",
    "update",
]
