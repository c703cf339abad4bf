"""Alerts end to end: a real agent measures a real application that burns CPU and pushes its
counts; the alert fires once, the email reaches a real SMTP server and the signed webhook a
real HTTP receiver; calm again, it resolves once. An agent killed: "server down" fires, and
"server up" when it returns. A notification whose mail server is away waits, survives a
kill -9 of the control plane, and is sent once when the mail server is back."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.apps import app_zip
from tests.e2e.operator import Operator
from tests.e2e.processes import AgentProcess, ServeProcess
from tests.e2e.sinks import SmtpSink, WebhookSink
from tests.support import eventually

pytestmark = [pytest.mark.slow, pytest.mark.every_database]
SECRET = "webhook-secret-for-the-test"
BURNER = '''
import json, os, threading, time, urllib.request
flag = os.environ["BURN_FLAG"]
def push():
    while True:
        burning = os.path.exists(flag)
        body = json.dumps({"messages": 5, "errors": 2 if burning else 0,
                           "responseTimeMs": 12}).encode()
        request = urllib.request.Request(os.environ["CORRAL_AGENT_URL"] + "/v1/metrics",
                                         data=body, method="POST")
        try:
            urllib.request.urlopen(request, timeout=2).read()
        except Exception as exc:
            print("push failed", exc, flush=True)
        time.sleep(0.3)
threading.Thread(target=push, daemon=True).start()
while True:  # burning: half of one core at most, so the rest of the suite keeps its share
    if os.path.exists(flag):
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            pass
    time.sleep(0.1)
'''


@pytest.fixture
def attempts() -> str:
    """Sending attempts before a dead letter (CORRAL_ALERT_ATTEMPTS)."""
    return "2"


@pytest.fixture
def control_plane(serve: ServeProcess, smtp_sink: SmtpSink, attempts: str) -> ServeProcess:
    from tests.e2e.operator import ADMIN_PASSWORD
    serve.env.update({
        "CORRAL_ADMIN_PASSWORD": ADMIN_PASSWORD, "CORRAL_METRICS_SECONDS": "1",
        "CORRAL_SMTP_URL": f"smtp://127.0.0.1:{smtp_sink.port}",
        "CORRAL_SMTP_FROM": "corral@example.com", "CORRAL_ALERT_ATTEMPTS": attempts,
        "CORRAL_ALERT_RETRY_SECONDS": "0.3",
        "CORRAL_WEBHOOK_DENY": "[]"})  # the test's receivers listen on loopback
    serve.start()
    return serve


def history(operator: Operator, alert_id: str) -> list[dict[str, Any]]:
    return list(reversed(operator.data(f"/alerts/{alert_id}/history")))


def create(operator: Operator, body: dict[str, Any]) -> str:
    return str(operator.call("POST", "/alerts", expect=200, json=body).json()["data"][0]["id"])


def test_application_cpu_and_pushed_errors_fire_once_and_resolve_once(
        operator: Operator, agents: Callable[..., AgentProcess], smtp_sink: SmtpSink,
        webhook_sink: WebhookSink) -> None:
    agent = agents("burner-host")
    flags = Path(tempfile.mkdtemp(prefix="corral-burn-"))
    flags.chmod(0o755)  # the application runs as nobody
    flag = flags / "burn"
    app = operator.deploy("burner", agent.server_id,
                          app_zip(procfile="worker: python3 burn.py\n",
                                  extra={"burn.py": BURNER}),
                          {"BURN_FLAG": str(flag)})
    operator.wait_app(app["id"], "STARTED")
    org = operator.headers["X-ANYPNT-ORG-ID"]
    r = operator.http.post(f"/accounts/api/organizations/{org}/users", headers=operator.headers,
                           json={"username": "oncall", "password": "oncall-password-1",
                                 "email": "oncall@example.com"})
    assert r.status_code == 201, r.text
    oncall = r.json()["id"]
    cpu = create(operator, {
        "name": "burner hot", "severity": "CRITICAL",
        "condition": {"resourceType": "hybrid-application", "type": "application-cpu",
                      "resources": [str(app["id"])], "threshold": 10,
                      "operator": "GREATER_THAN"},
        "actions": [{"type": "email", "emails": ["ops@example.com"], "userIds": [oncall],
                     "subject": "${severity}: ${alertName} ${state} on ${resource}"},
                    {"type": "webhook", "url": webhook_sink.url + "/hook", "secret": SECRET},
                    {"type": "webhook", "url": webhook_sink.url + "/fail"}]})
    errors = create(operator, {
        "name": "burner errors", "severity": "WARNING",
        "condition": {"resourceType": "hybrid-application", "type": "application-error-count",
                      "resources": ["*"], "threshold": 0, "operator": "GREATER_THAN"},
        "actions": [{"type": "email", "emails": ["ops@example.com"]}]})

    # calm: a second of readings and nothing fires
    eventually(lambda: operator.data(f"/applications/{app['id']}/metrics")["series"]["cpu"],
               lambda cpu: len([c for c in cpu if c is not None]) >= 2, what="CPU readings")
    assert history(operator, cpu) == [] and history(operator, errors) == []

    flag.touch()
    # the burner takes half a core when it has one, less under a loaded suite: the threshold
    # is low (a calm instance reads about 0 %)
    fired = eventually(lambda: history(operator, cpu), lambda h: len(h) >= 1, timeout=60,
                       what="the CPU alert firing")
    assert fired[0]["state"] == "FIRING" and fired[0]["value"] > 10
    mail = eventually(lambda: smtp_sink.with_subject("CRITICAL: burner hot FIRING on burner"),
                      timeout=20, what="the alert's email")
    assert mail[0]["to"] == ["oncall@example.com", "ops@example.com"]
    assert mail[0]["from"] == "corral@example.com"
    hook = eventually(lambda: [r for r in webhook_sink.received if r[0] == "/hook"],
                      timeout=20, what="the signed webhook")
    _path, headers, body = hook[0]
    stamp = headers["X-Corral-Timestamp"]
    assert abs(int(stamp) - time.time()) < 120
    expected = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    assert headers["X-Corral-Signature"] == expected
    event = json.loads(body)
    assert event["event"]["state"] == "FIRING" and event["alert"]["name"] == "burner hot"
    eventually(lambda: history(operator, errors), lambda h: len(h) == 1, timeout=20,
               what="the pushed error count firing")

    flag.unlink()
    resolved = eventually(lambda: history(operator, cpu), lambda h: len(h) >= 2, timeout=60,
                          what="the CPU alert resolving")
    assert [e["state"] for e in resolved] == ["FIRING", "RESOLVED"]
    eventually(lambda: smtp_sink.with_subject("burner hot RESOLVED"), timeout=20,
               what="the resolving email")
    eventually(lambda: history(operator, errors), lambda h: len(h) == 2, timeout=20,
               what="the error count resolving")
    time.sleep(6)  # more readings and evaluations, all calm: no second firing (no storm)
    assert [e["state"] for e in history(operator, cpu)] == ["FIRING", "RESOLVED"]
    assert len(smtp_sink.with_subject("burner hot")) == 2
    # the receiver that answers 500 got each notification twice, then it is a dead letter
    dead = eventually(lambda: [d for e in history(operator, cpu) for d in e["deliveries"]
                               if d["state"] == "DEAD"], lambda d: len(d) == 2, timeout=20,
                      what="two dead letters")
    assert all(d["attempts"] == 2 and "500" in d["lastError"] for d in dead)
    assert len([r for r in webhook_sink.received if r[0] == "/fail"]) == 4

    series = operator.data(f"/applications/{app['id']}/metrics")
    assert max(c for c in series["series"]["cpu"] if c is not None) > 10
    assert max(m for m in series["series"]["messages"] if m is not None) >= 5
    server = operator.data(f"/servers/{agent.server_id}/metrics")
    assert all(t > 0 for t in server["series"]["memoryTotal"] if t is not None)


@pytest.mark.parametrize("attempts", ["100"])
def test_server_down_and_up_and_a_notification_that_outlives_a_restart(
        control_plane: ServeProcess, operator: Operator, agents: Callable[..., AgentProcess],
        smtp_sink: SmtpSink) -> None:
    agent = agents("watched")
    down = create(operator, {"name": "down", "severity": "CRITICAL", "condition": {
        "resourceType": "server", "type": "server-down", "resources": [str(agent.server_id)]},
        "actions": [{"type": "email", "emails": ["ops@example.com"]}]})
    up = create(operator, {"name": "up", "severity": "INFO", "condition": {
        "resourceType": "server", "type": "server-up", "resources": ["*"]},
        "actions": [{"type": "email", "emails": ["ops@example.com"]}]})
    eventually(lambda: operator.data(f"/alerts/{down}")["watching"], lambda n: n == 1,
               timeout=30, what="the evaluator seeing the server running")
    assert history(operator, down) == []

    killed_at = time.monotonic()
    agent.stop(signal.SIGKILL)
    eventually(lambda: history(operator, down), lambda h: len(h) == 1, timeout=30,
               what="server down firing")
    print(f"server down fired {time.monotonic() - killed_at:.1f} s after kill -9")
    eventually(lambda: smtp_sink.with_subject("down: FIRING"), timeout=20, what="its email")

    agent.start()
    eventually(lambda: history(operator, up), lambda h: len(h) == 1, timeout=30,
               what="server up firing")
    assert [e["state"] for e in eventually(lambda: history(operator, down),
                                           lambda h: len(h) == 2)] == ["FIRING", "RESOLVED"]
    eventually(lambda: smtp_sink.with_subject("up: FIRING"), timeout=20, what="its email")
    eventually(lambda: smtp_sink.with_subject("down: RESOLVED"), timeout=20,
               what="the resolving email")

    # the mail server goes away; the next firing waits for it, through a kill -9
    smtp_sink.stop()
    agent.stop(signal.SIGKILL)
    eventually(lambda: history(operator, down), lambda h: len(h) == 3, timeout=30,
               what="the second firing")
    eventually(lambda: [d for e in history(operator, down) for d in e["deliveries"]
                        if d["attempts"] >= 1 and d["state"] == "PENDING"],
               timeout=20, what="a failed first attempt")
    control_plane.stop(signal.SIGKILL)
    before = len(smtp_sink.messages)
    smtp_sink.start()
    control_plane.start()
    mails = eventually(lambda: smtp_sink.with_subject("down: FIRING"),
                       lambda m: len(m) == 2, timeout=60, what="the waiting email")
    time.sleep(3)  # proves something does not happen: no third email
    assert len(smtp_sink.with_subject("down: FIRING")) == 2, "sent once, not twice"
    assert len(smtp_sink.messages) == before + 1, "nothing sent before was sent again"
    assert mails[1]["to"] == ["ops@example.com"]


def test_deployments_rollouts_and_renewals_fire_through_the_real_code(
        control_plane: ServeProcess, operator: Operator, tmp_path: Path) -> None:
    """`application-success`, `rollout-failed` and `server-certificate` from what the control
    plane itself records (agents' reports settling a deployment, a rollout reverting, a refused
    renewal), not from rows written by hand; and none of them fires before its event."""
    import hashlib as sha

    from corral import wire
    from tests.model.machine import ZIPS, bundle_zip
    from tests.model.simulated import Fleet, SimAgent, identity

    bad = bundle_zip("fails its health check")
    fleet = Fleet()
    try:
        sids = []
        for name in ("a1", "a2"):
            key, csr = identity(tmp_path, name)
            token = operator.registration_token()
            r = operator.http.post("/hybrid/api/v1/servers", json={
                "muleLabel": name, "signatureRequest": csr},
                headers={"Authorization": f"Bearer {token}"})
            key.write_text(r.json()["certificate"] + key.read_text())
            sid = int(r.json()["serverId"])
            fleet.add(SimAgent(sid, key, f"wss://127.0.0.1:{control_plane.gateway_port}"
                                         "/agent/v1/connect", control_plane.ca_path.read_text(),
                               failing={sha.sha256(bad).hexdigest()}))
            operator.wait_server(sid, "RUNNING")
            sids.append(sid)
        group = operator.call("POST", "/serverGroups", expect=201,
                              json={"name": "pair", "serverIds": sids}).json()["data"]["id"]
        watch = {kind: create(operator, {"name": kind, "severity": "WARNING", "condition": {
            "resourceType": rtype, "type": kind, "resources": ["*"]}})
            for rtype, kind in (("hybrid-application", "application-success"),
                                ("hybrid-application", "rollout-failed"),
                                ("server", "server-certificate"))}
        app = operator.deploy("site", group, ZIPS["v1"])
        operator.wait_app(app["id"], "STARTED", timeout=60)
        for kind in ("application-success", "rollout-failed"):  # both looked at the app
            eventually(lambda kind=kind: operator.data(f"/alerts/{watch[kind]}")["watching"],
                       lambda n: n >= 1, timeout=30, what=f"{kind} watching the application")
        before = len(history(operator, watch["application-success"]))
        operator.call("PATCH", f"/applications/{app['id']}", expect=200,
                      files={"file": ("v2.zip", ZIPS["v2"], "application/zip")})
        success = eventually(lambda: history(operator, watch["application-success"]),
                             lambda h: len(h) == before + 1, timeout=60,
                             what="the successful redeployment firing")
        assert success[-1]["resourceName"] == "site"
        operator.call("PATCH", f"/applications/{app['id']}", expect=200,
                      data={"rollout": json.dumps({"maxParallel": 1, "autoRevert": True})},
                      files={"file": ("bad.zip", bad, "application/zip")})
        reverted = eventually(lambda: history(operator, watch["rollout-failed"]), timeout=60,
                              what="the reverted rollout firing")
        assert "reverted" in reverted[0]["message"]
        # what did not happen did not fire: no certificate problem yet, one success only
        assert history(operator, watch["server-certificate"]) == []
        assert len(history(operator, watch["application-success"])) == before + 1
        fleet.send(sids[0], wire.RenewCertificate(signatureRequest="not a request"))
        problem = eventually(lambda: history(operator, watch["server-certificate"]),
                             timeout=60, what="the refused renewal firing")
        assert [e["resourceId"] for e in problem] == [str(sids[0])]
    finally:
        fleet.close()
