"""`GET /metrics`: Prometheus' format, for the scrape token or an admin only; the fleet's counts
from the database, request latency by route template, failed sign-ins."""

from __future__ import annotations

import re

from pydantic import SecretStr

from corral.controlplane import ControlPlane
from tests.api.conftest import Api


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{series} not in the scrape"
    return float(match.group(1))


def test_only_the_scrape_token_or_an_admin_reads_it(api: Api, plane: ControlPlane) -> None:
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers={"Authorization": "Bearer wrong"}
                          ).status_code == 401
    r = api.client.post(f"/accounts/api/organizations/{api.org_id}/users", headers=api.headers,
                        json={"username": "watcher", "password": "watcher-password-1"})
    assert r.status_code == 201
    viewer = api.client.post("/accounts/login", json={"username": "watcher",
                                                      "password": "watcher-password-1"})
    r = api.client.get("/metrics", headers={
        "Authorization": f"Bearer {viewer.json()['access_token']}"})
    assert r.status_code == 403
    r = api.client.get("/metrics", headers={"Authorization": f"Bearer {api.token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    plane.settings.metrics_token = SecretStr("a-scrape-token-for-prometheus")
    r = api.client.get("/metrics", headers={
        "Authorization": "Bearer a-scrape-token-for-prometheus"})
    assert r.status_code == 200


def test_the_fleet_latency_and_failed_sign_ins(api: Api) -> None:
    auth = {"Authorization": f"Bearer {api.token}"}
    before = api.client.get("/metrics", headers=auth).text
    failed = _value(before, "corral_logins_failed_total")
    api.client.post("/accounts/login", json={"username": "admin", "password": "nope"})
    r = api.client.post("/accounts/api/v2/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": "no-such-app", "client_secret": "x"})
    assert r.status_code == 401  # a connected app's failed sign-in counts too
    for name in ("m-1", "m-2"):
        api.register(name)
    api.get("/servers")
    api.get("/servers/999999")
    text = api.client.get("/metrics", headers=auth).text
    assert _value(text, "corral_logins_failed_total") == failed + 2
    assert _value(text, 'corral_servers{status="DISCONNECTED"}') == 2
    route = 'route="/hybrid/api/v1/servers/{server_id}"'
    assert re.search(rf'corral_http_request_duration_seconds_count{{method="GET",{route},'
                     r'status="4xx"} [1-9]', text)
    assert "/servers/999999" not in text  # a template, never an id
    assert "corral_connected_agents" in text and "corral_push_duration_seconds" in text


def test_it_parses_and_per_instance_series_are_opt_in(api: Api, plane: ControlPlane) -> None:
    import time

    from prometheus_client.parser import text_string_to_metric_families

    from corral import wire
    from corral.db.session import transaction
    from corral.domain import alerts, measurements

    server_id = api.register("web-1")
    api.post("/alerts", json={"name": "down", "severity": "CRITICAL", "condition": {
        "resourceType": "server", "type": "server-down"}})
    with transaction(plane.sessions) as s:
        measurements.record(s, [(server_id, int(time.time() * 1000), wire.Measurements(
            server=wire.ServerSample(cpu=42.5, memoryUsed=100, memoryTotal=400, diskUsed=1,
                                     diskTotal=2, loadAverage=0.1, threads=3)))])
        alerts.evaluate(s, 15.0)  # the server is DISCONNECTED: the alert fires

    def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
        text = api.client.get("/metrics", headers={"Authorization": f"Bearer {api.token}"}).text
        return {f.name: [(s.labels, s.value) for s in f.samples]
                for f in text_string_to_metric_families(text)}

    families = scrape()
    assert ({"status": "DISCONNECTED"}, 1.0) in families["corral_servers"]
    assert ({"severity": "CRITICAL"}, 1.0) in families["corral_alerts_firing"]
    assert "corral_server_cpu_percent" not in families  # opt-in
    plane.settings.metrics_per_instance = True
    assert scrape()["corral_server_cpu_percent"] == [({"server": "web-1"}, 42.5)]
