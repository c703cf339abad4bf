"""The control plane's own measurements, for Prometheus (`GET /metrics`, `api/metrics.py`):
request, push and report latencies, failed sign-ins and connected agents of this process. The
fleet's counts (servers and instances by status) are read from the database at each scrape.
Labels stay few on purpose: a route's template, never a server or an application, so that a
fleet of ten thousand servers costs no more series than one of ten."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_SECONDS = Histogram(
    "corral_http_request_duration_seconds", "API and console requests, by route template",
    ["method", "route", "status"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PUSH_SECONDS = Histogram(
    "corral_push_duration_seconds",
    "assembling and sending desired state to a batch of up to 2,000 agents", registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
REPORT_SECONDS = Histogram(
    "corral_report_store_duration_seconds", "storing one burst of agents' reports",
    registry=REGISTRY, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ANONYMOUS_REFUSED = Counter(
    "corral_anonymous_refusals", "changes asked with no credentials and refused, by status "
    "(counted here instead of the audit trail, which a flood of them would fill)", ["status"],
    registry=REGISTRY)
LOGINS_FAILED = Counter("corral_logins_failed", "sign-ins refused (API and console)",
                        registry=REGISTRY)
CONNECTED_AGENTS = Gauge("corral_connected_agents",
                         "agents connected to this replica's gateway", registry=REGISTRY)
MEASUREMENTS_SECONDS = Histogram(
    "corral_measurements_store_duration_seconds", "storing one burst of agents' measurements",
    registry=REGISTRY, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ANSWERS = Counter(
    "corral_answers", "GETs of the lists and objects answers are kept for: `kept` served again, "
    "`rendered` by the route (a change, a first call, or a caller not yet known)", ["outcome"],
    registry=REGISTRY)
