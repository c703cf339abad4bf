"""Attacks through what reaches a managed server: property values, hostile applications, long
log lines, deleted servers, the agent's local API, and registration over an untrusted network."""

from __future__ import annotations

import io
import json
import pwd
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import Operator
from tests.e2e.processes import AgentProcess, ServeProcess, register_agent
from tests.support import eventually, local_http

Agents = Callable[..., AgentProcess]

PROBE_APP = '''
import http.server, json, os, sys
def can_read(path):
    try:
        open(path, "rb").read(1)
        return True
    except OSError:
        return False
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        agent = os.environ["AGENT_DIR"]
        body = json.dumps({"uid": os.getuid(), "argv": sys.argv[1:],
            "reads": {n: can_read(os.path.join(agent, n))
                      for n in ("server.key", "state.json", "identity.json", "agent.json")},
            "lists_artifacts": can_read(os.path.join(agent, "artifacts")),
            "env": dict(os.environ)}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def probe_zip(procfile: str = "web: python3 app.py ${greeting}\n",
              extra: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", procfile)
        z.writestr("app.py", PROBE_APP)
        for name, content in (extra or {}).items():
            z.writestr(name, content)
    return buf.getvalue()


HOSTILE = "$(touch pwned) `touch pwned2` ' \" a  b * ; ${HOME} \\ end"


# --- 7 and 9: property values reach the process untouched, as an unprivileged user ---------------


def test_property_values_and_application_rights(operator: Operator, agents: Agents) -> None:
    agent = agents("probe-host")
    app = operator.deploy("probe", agent.server_id, probe_zip(),
                          {"greeting": HOSTILE, "AGENT_DIR": str(agent.directory)})
    operator.wait_app(app["id"], "STARTED")
    seen = ask(app_port(agent, "probe"))
    assert seen["argv"] == [HOSTILE]  # one argument, byte for byte
    app_dir = next((agent.directory / "apps" / "probe").iterdir())
    assert not (app_dir / "pwned").exists() and not (app_dir / "pwned2").exists()
    # the agent runs as root; the application does not, and cannot read what is the agent's
    assert seen["uid"] == pwd.getpwnam("nobody").pw_uid
    assert seen["reads"] == {"server.key": False, "state.json": False, "identity.json": False,
                             "agent.json": False}
    assert seen["lists_artifacts"] is False
    for name, mode in (("server.key", 0o600), ("state.json", 0o600), ("artifacts", 0o700),
                       ("logs", 0o700)):
        assert stat.S_IMODE((agent.directory / name).stat().st_mode) == mode, name
    # the cluster key in the agent's state is sealed; the local API URL carries a credential
    assert seen["env"]["CORRAL_AGENT_URL"].startswith(agent.local_api + "/a/")
    assert seen["env"]["PYTHONUNBUFFERED"] == "1"  # a Python app's output reaches its log live


def test_property_keys_and_values_are_checked_at_the_api(operator: Operator,
                                                         agents: Agents) -> None:
    agent = agents("checked")
    for props in ({"x=y": "1"}, {"ok": "nul\x00inside"}, {"k" * 200: "v"}, {"ok": "v" * 40_000}):
        form = {"artifactName": "bad", "targetId": str(agent.server_id), "configuration":
                json.dumps({"mule.agent.application.properties.service": {"properties": props}})}
        r = operator.call("POST", "/applications", data=form,
                          files={"file": ("b.zip", app_zip(), "application/zip")})
        assert r.status_code == 400, (props.keys(), r.text)


# --- 8: one bad application does not hold up the others --------------------------------------


def test_one_bad_application_fails_alone(operator: Operator, agents: Agents) -> None:
    agent = agents("shared")
    # an archive whose own defaults carry an impossible variable name, and a broken manifest
    odd = operator.deploy("odd", agent.server_id, app_zip(
        extra={"corral.toml": '[properties]\n"x=y" = "1"\ngreeting = "ok"\n'}))
    broken = operator.deploy("broken", agent.server_id, app_zip(extra={"corral.toml": "[health\n"}))
    good = operator.deploy("good", agent.server_id, app_zip())
    operator.wait_app(good["id"], "STARTED")
    operator.wait_app(odd["id"], "STARTED")  # the bad name is left out, not fatal
    failed = operator.wait_app(broken["id"], "DEPLOYMENT_FAILED")
    assert "corral.toml" in (failed["serverArtifacts"][0]["message"] or "")
    operator.call("PATCH", f"/applications/{good['id']}", json={"desiredStatus": "STOPPED"},
                  expect=200)
    operator.wait_app(good["id"], "STOPPED")
    assert agent.app_copies("good") == 0 and agent.app_copies("odd") == 1


# --- 11: a deleted server stops what it runs ------------------------------------------------------


def test_deleting_a_server_stops_its_applications(operator: Operator, agents: Agents) -> None:
    agent = agents("doomed")
    app = operator.deploy("orphan", agent.server_id, app_zip())
    operator.wait_app(app["id"], "STARTED")
    assert agent.app_copies("orphan") == 1
    operator.call("DELETE", f"/servers/{agent.server_id}", expect=204)
    eventually(lambda: agent.app_copies("orphan"), lambda n: n == 0, timeout=30,
               what="the deleted server's application stopped")
    eventually(agent.output, lambda out: "refused this server" in out,
               what="the agent saying its server was refused")
    # and it stays empty across a restart of the agent
    agent.stop()
    before = len(agent.output())
    agent.start()
    eventually(lambda: agent.output()[before:], lambda out: "refused this server" in out,
               what="the restarted agent being refused")
    assert agent.app_copies("orphan") == 0


# --- 12: a hostile log neither disconnects the agent nor forges events ---------------------------


LOUD_APP = '''
import os, sys, time, http.server
sys.stdout.write("x" * (6 * 1024 * 1024))
sys.stdout.write("\\nfine line\\nsneaky\\rdata: forged\\n")
sys.stdout.flush()
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])),
                       http.server.BaseHTTPRequestHandler).serve_forever()
'''


def test_long_and_hostile_log_lines(operator: Operator, agents: Agents) -> None:
    agent = agents("loud-host")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", "web: python3 loud.py\n")
        z.writestr("loud.py", LOUD_APP)
    app = operator.deploy("loud", agent.server_id, buf.getvalue())
    operator.wait_app(app["id"], "STARTED")
    lines = operator.data(f"/applications/{app['id']}/logs?lines=5")
    assert any("more bytes cut" in line and len(line) < 64 * 1024 for line in lines)
    assert "fine line" in lines
    with operator.http.stream("GET", f"/hybrid/api/v1/applications/{app['id']}/logs",
                              params={"lines": 3, "follow": "true"},
                              headers=operator.headers, timeout=10) as r:
        raw = b""
        for chunk in r.iter_bytes():
            raw += chunk
            if b"sneaky" in raw and raw.endswith(b"\n\n"):
                break
    events = raw.decode().split("\n\n")
    assert not any(e.startswith("data: forged") or "\rdata: forged" in e for e in events)
    assert any("sneaky\\rdata: forged" in e for e in events)
    # still the same connection: nothing dropped it
    assert "disconnected" not in agent.output()
    assert operator.data(f"/servers/{agent.server_id}")["status"] == "RUNNING"


# --- 13: the agent's local API ------------------------------------------------------------------


def test_local_api_needs_its_credential_and_a_loopback_host(agents: Agents) -> None:
    agent = agents("api-host")
    saved = json.loads((agent.directory / "agent.json").read_text())
    base = f"http://127.0.0.1:{saved['apiPort']}"
    assert local_http().get(f"{base}/v1/cluster", timeout=5).status_code == 404
    assert local_http().get(f"{base}/{'x' * 32}/v1/cluster", timeout=5).status_code == 404
    assert local_http().get(f"{agent.local_api}/v1/cluster", timeout=5).status_code == 404  # no cluster
    rebound = local_http().get(f"{agent.local_api}/v1/cluster", headers={"Host": "evil.example:80"},
                        timeout=5)
    assert rebound.status_code == 403


# --- 10: registration over an untrusted network --------------------------------------------------


def test_registration_pins_the_ca_and_tokens_are_limited(
    tmp_path: Path, operator: Operator, control_plane: ServeProcess
) -> None:
    token = operator.registration_token()
    r = register_agent(control_plane, token, "n", tmp_path / "plain", "--ca-fingerprint",
                       "sha256:" + "0" * 64)
    assert r.returncode == 1 and "not the pinned one" in r.stderr
    assert not (tmp_path / "plain").exists()
    # what the control plane kept is named, with the command that removes it, which works
    [left] = [s for s in operator.data("/servers") if s["name"] == "n"]
    said = " ".join(r.stderr.split())
    assert f"registered server n (id {left['id']}) all the same" in said, r.stderr
    assert "corral server delete n --yes" in said
    operator.call("DELETE", f"/servers/{left['id']}", expect=204)
    r = register_agent(control_plane, token, "pinned", tmp_path / "pinned")  # pins the real CA
    assert r.returncode == 0, r.stderr
    r = register_agent(control_plane, token, "loose", tmp_path / "loose", "--insecure")
    assert r.returncode == 0, r.stderr

    once = operator.call("POST", "/servers/registrationTokens", json={"maxUses": 1},
                         expect=201).json()
    assert once["maxUses"] == 1 and once["caFingerprint"].startswith("sha256:")
    assert register_agent(control_plane, once["data"], "once-1", tmp_path / "o1").returncode == 0
    r = register_agent(control_plane, once["data"], "once-2", tmp_path / "o2")
    assert r.returncode == 1 and "used-up" in r.stderr
    other = operator.call("POST", "/servers/registrationTokens", json={"maxUses": 5},
                          expect=201).json()
    operator.call("DELETE", f"/servers/registrationTokens/{other['id']}", expect=204)
    r = register_agent(control_plane, other["data"], "revoked", tmp_path / "rv")
    assert r.returncode == 1 and "revoked" in r.stderr
    listed = operator.call("GET", "/servers/registrationTokens", expect=200).json()["data"]
    assert {t["id"]: t["uses"] for t in listed}[once["id"]] == 1
    assert all("data" not in t for t in listed)  # the tokens themselves are never listed again
    assert "registration refused from 127.0.0.1" in control_plane.output()


@pytest.fixture
def strict_plane(serve: ServeProcess) -> ServeProcess:
    serve.env.update({"CORRAL_ADMIN_PASSWORD": "strict-password",
                      "CORRAL_REGISTRATION_RATE_PER_MINUTE": "3"})
    serve.start()
    return serve


def test_registrations_are_rate_limited(tmp_path: Path, strict_plane: ServeProcess) -> None:
    operator = Operator(strict_plane, "strict-password")
    token = operator.registration_token()
    codes = [register_agent(strict_plane, token, f"r{i}", tmp_path / f"r{i}").returncode
             for i in range(3)]
    assert codes == [0, 0, 0]
    r = register_agent(strict_plane, token, "r4", tmp_path / "r4")
    assert r.returncode == 1 and "429" in r.stderr and not (tmp_path / "r4").exists()
