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
    for name in ("m-1", "m-2"):
        api.register(name)
    api.get("/servers")
    api.get("/servers/999999")
    text = api.client.get("/metrics", headers=auth).text
    assert _value(text, "corral_logins_failed_total") == failed + 1
    assert _value(text, 'corral_servers{status="DISCONNECTED"}') == 2
    route = 'route="/hybrid/api/v1/servers/{server_id}"'
    assert re.search(rf'corral_http_request_duration_seconds_count{{method="GET",{route},'
                     r'status="4xx"} [1-9]', text)
    assert "/servers/999999" not in text  # a template, never an id
    assert "corral_connected_agents" in text and "corral_push_duration_seconds" in text
