"""`GET /metrics`: Prometheus' exposition of this control plane (`corral.metrics`) and of the
fleet's counts and alerts firing, read from the database at each scrape. Each server's and
instance's CPU and memory are opt-in (`CORRAL_METRICS_PER_INSTANCE`): a series per server
and per instance, which at 10,000 servers is more than many Prometheus set-ups want. It needs `Authorization: Bearer` with
the scrape token (`CORRAL_METRICS_TOKEN`) or an admin's token. `RequestTimer` times every
request by its route's template (never by id: the series stay few whatever the fleet)."""

from __future__ import annotations

import hmac
import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Receive, Scope, Send

from corral import metrics
from corral.api.deps import TokenDep
from corral.api.middleware import StatusOf
from corral.db.session import transaction
from corral.domain import alerts, measurements, reads
from corral.errors import Forbidden, Unauthenticated
from corral.http_context import PlaneDep

router = APIRouter(include_in_schema=False)


class _Fleet:
    """The fleet's counts as gauges, collected at scrape time."""

    def __init__(self, counts: dict[str, Any]) -> None:
        self.counts = counts

    def collect(self):  # type: ignore[no-untyped-def]
        for name, label, what in (
                ("servers", "status", "servers by status"),
                ("instances", "status", "application instances by reported status"),
                ("applications", "desired_status", "applications by desired status")):
            family = GaugeMetricFamily(f"corral_{name}", what, labels=[label])
            for value, n in sorted(self.counts[name].items()):
                family.add_metric([value], n)
            yield family
        family = GaugeMetricFamily("corral_alerts_firing",
                                   "resources in an enabled alert's condition, by severity",
                                   labels=["severity"])
        for severity in alerts.SEVERITIES:
            family.add_metric([severity], self.counts["alerts"].get(severity, 0))
        yield family
        latest = self.counts.get("latest")
        if latest is None:
            return
        for name, what, labels in (
                ("server_cpu_percent", "a server's CPU, % of all cores", ["server"]),
                ("server_memory_bytes", "a server's memory in use", ["server"]),
                ("instance_cpu_percent", "an instance's CPU, % of one core",
                 ["application", "server"]),
                ("instance_memory_bytes", "an instance's resident memory",
                 ["application", "server"])):
            family = GaugeMetricFamily(f"corral_{name}", what, labels=labels)
            for key, value in latest[name]:
                family.add_metric(list(key), value)
            yield family


@router.get("/metrics")
async def scrape(plane: PlaneDep, token: TokenDep) -> Response:
    scrape_token = plane.settings.metrics_token
    if not (token and scrape_token and
            hmac.compare_digest(token, scrape_token.get_secret_value())):
        if not token:
            raise Unauthenticated("a bearer token is required: CORRAL_METRICS_TOKEN or an "
                                  "admin's")
        principal = plane.principals.resolve(plane.readers, token, None, None,
                                             scoped=False)[0]
        if not principal.may("admin"):
            raise Forbidden("metrics are for the scrape token or an admin")

    def counts() -> dict[str, Any]:
        with transaction(plane.readers) as session:
            found: dict[str, Any] = {**reads.fleet_counts(session),
                                     "alerts": alerts.firing_counts(session)}
            if plane.settings.metrics_per_instance:
                found["latest"] = measurements.latest_by_instance(
                    session, int(time.time() * 1000) - int(
                        max(plane.settings.metrics_seconds, 1) * 3000))
            return found

    fleet = CollectorRegistry(auto_describe=False)
    fleet.register(_Fleet(await run_in_threadpool(counts)))
    body = generate_latest(metrics.REGISTRY) + generate_latest(fleet)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SIGN_INS = frozenset({"/accounts/login", "/login", "/accounts/api/v2/oauth2/token"})
"""Where a refused sign-in (401) or a throttled one (429) counts in `corral_logins_failed`:
users through the API and the console, connected apps through OAuth2."""


class RequestTimer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        answered = StatusOf(send)
        try:
            await self.app(scope, receive, answered)
        finally:
            # labels from closed sets only: a route's template (not the path), a known method
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            status = answered.status
            metrics.HTTP_SECONDS.labels(method, route, f"{status // 100}xx").observe(
                time.perf_counter() - began)
            if status in (401, 429) and method == "POST" and scope["path"] in SIGN_INS:
                metrics.LOGINS_FAILED.inc()
