"""`corral serve` as a real process: first start, HTTP, graceful stop, restart with everything."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.e2e.processes import CORRAL, FORKS, ServeProcess
from tests.support import make_csr


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", "web: python -m http.server $PORT\n")
    return buf.getvalue()


@pytest.mark.every_database
def test_records_survive_restart(serve: ServeProcess) -> None:
    serve.start()
    creds_file = serve.data_dir / "admin-credentials"
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    creds = dict(line.split("=", 1) for line in creds_file.read_text().splitlines())
    assert creds["password"] in serve.output()  # printed once, at first start
    assert stat.S_IMODE((serve.data_dir / "pki" / "ca.key").stat().st_mode) == 0o600

    http = httpx.Client(base_url=serve.url, timeout=10)
    token = http.post("/accounts/login", json={"username": "admin", "password": creds["password"]}
                      ).json()["access_token"]
    me = http.get("/accounts/api/users/me", headers={"Authorization": f"Bearer {token}"}).json()
    org = me["organization"]["id"]
    envs = http.get(f"/accounts/api/organizations/{org}/environments",
                    headers={"Authorization": f"Bearer {token}"}).json()["data"]
    env = next(e["id"] for e in envs if e["name"] == "Production")
    h = {"Authorization": f"Bearer {token}", "X-ANYPNT-ORG-ID": org, "X-ANYPNT-ENV-ID": env}
    reg = http.get("/hybrid/api/v1/servers/registrationToken", headers=h).json()["data"]
    ca_before = None
    ids = []
    for name in ("n1", "n2"):
        r = http.post("/hybrid/api/v1/servers", headers={"Authorization": f"Bearer {reg}"},
                      json={"muleLabel": name, "signatureRequest": make_csr(),
                            "muleVersion": "4.4.0", "gatewayVersion": "1.0"})
        assert r.status_code == 200, r.text
        ca_before = r.json()["caCertificate"]
        ids.append(r.json()["serverId"])
    gid = http.post("/hybrid/api/v1/serverGroups", headers=h,
                    json={"name": "web", "serverIds": ids}).json()["data"]["id"]
    archive = _zip()
    r = http.post("/hybrid/api/v1/applications", headers=h,
                  data={"artifactName": "hello", "targetId": str(gid)},
                  files={"file": ("hello.zip", archive, "application/zip")})
    assert r.status_code == 202, r.text
    app_id = r.json()["data"]["id"]
    before = {
        "servers": http.get("/hybrid/api/v1/servers", headers=h).json(),
        "groups": http.get("/hybrid/api/v1/serverGroups", headers=h).json(),
        "apps": http.get("/hybrid/api/v1/applications", headers=h).json(),
    }

    assert serve.stop() == 0  # SIGTERM: graceful
    serve.start()
    assert serve.output().count(creds["password"]) == 1  # not printed again

    # the same token still works: tokens are stored, not held in memory
    after = {
        "servers": http.get("/hybrid/api/v1/servers", headers=h).json(),
        "groups": http.get("/hybrid/api/v1/serverGroups", headers=h).json(),
        "apps": http.get("/hybrid/api/v1/applications", headers=h).json(),
    }
    for key in ("servers", "groups"):
        assert after[key] == before[key]
    strip = [{k: v for k, v in a.items() if k != "uptime"} for a in before["apps"]["data"]]
    assert [{k: v for k, v in a.items() if k != "uptime"} for a in after["apps"]["data"]] == strip
    assert http.get(f"/hybrid/api/v1/applications/{app_id}/artifact", headers=h).content == archive
    assert http.get("/hybrid/api/v1/servers/registrationToken", headers=h).json()["data"] == reg
    r = http.post("/hybrid/api/v1/servers", headers={"Authorization": f"Bearer {reg}"},
                  json={"muleLabel": "n3", "signatureRequest": make_csr()})
    assert r.json()["caCertificate"] == ca_before  # the CA is kept, not re-created
    assert serve.stop() == 0


@pytest.mark.slow
@pytest.mark.every_database
def test_admin_and_db_commands(serve: ServeProcess) -> None:
    env = {**os.environ, "CORRAL_DATABASE_URL": serve.database_url,
           "CORRAL_ADMIN_PASSWORD": "first-admin-pw", "CORRAL_NEW_USER_PASSWORD": "ops-password-1"}
    data = ["--data-dir", str(serve.data_dir)]

    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return FORKS.run([*args, *data], env=env, timeout=60)

    if serve.database_url.startswith("sqlite"):  # `db upgrade` from no database at all
        Path(str(make_url(serve.database_url).database)).unlink()
    assert corral("db", "upgrade").returncode == 0
    r = corral("admin", "create-user", "ops")
    assert r.returncode == 0, r.stderr
    assert corral("admin", "create-user", "ops").returncode == 1
    r = corral("admin", "create-env", "Staging")
    assert r.returncode == 0 and "Staging" in r.stdout
    r = corral("admin", "create-connected-app", "ci")
    assert r.returncode == 0
    app = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert "Staging" in corral("admin", "list-envs").stdout

    serve.env["CORRAL_ADMIN_PASSWORD"] = "first-admin-pw"
    serve.start()
    http = httpx.Client(base_url=serve.url, timeout=10)
    assert http.post("/accounts/login", json={"username": "ops", "password": "ops-password-1"}
                     ).status_code == 200
    assert http.post("/accounts/login", json={"username": "admin", "password": "first-admin-pw"}
                     ).status_code == 200
    r = http.post("/accounts/api/v2/oauth2/token",
                  data={"grant_type": "client_credentials", "client_id": app["client_id"],
                        "client_secret": app["client_secret"]})
    assert r.status_code == 200
    assert not (serve.data_dir / "admin-credentials").exists()
    assert serve.stop() == 0

    # the way back in for a locked-out operator, and roles from the command line; a file
    # that held the first password goes with it
    (serve.data_dir / "admin-credentials").write_text("username=admin\npassword=first-admin-pw\n")
    r = corral("admin", "set-user", "admin", "--password", "second-admin-pw")
    assert r.returncode == 0 and "admin, enabled" in r.stdout, r.stderr
    assert "removed" in r.stdout and not (serve.data_dir / "admin-credentials").exists()
    r = corral("admin", "set-user", "ops", "--role", "operator", "--disable")
    assert r.returncode == 0 and "operator, disabled" in r.stdout, r.stderr
    assert corral("admin", "set-user", "ghost", "--role", "viewer").returncode == 1
    serve.start()
    assert http.post("/accounts/login", json={"username": "admin", "password": "second-admin-pw"}
                     ).status_code == 200
    assert http.post("/accounts/login", json={"username": "ops", "password": "ops-password-1"}
                     ).status_code == 401


def test_first_run_messages(serve: ServeProcess) -> None:
    """A taken port or an unusable setting is one clear line; a password that cannot apply any
    more is said so."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run([*CORRAL, "serve", "--data-dir", str(serve.data_dir), "--port",
                            str(port), "--gateway-port", str(serve.gateway_port)],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env={**os.environ, "CORRAL_DATABASE_URL": serve.database_url})
    assert r.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}, the API port (--port, CORRAL_PORT)" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout and len(r.stderr.splitlines()) == 1

    # a setting that cannot work (servers would flap between two heartbeats) is one line too
    def refusal(timeout: str) -> list[str]:
        r = subprocess.run([*CORRAL, "serve", "--data-dir", str(serve.data_dir)],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env={**os.environ, "CORRAL_HEARTBEAT_TIMEOUT_SECONDS": timeout})
        assert r.returncode == 2
        return r.stderr.splitlines()

    assert refusal("5") == [("error: CORRAL_HEARTBEAT_TIMEOUT_SECONDS ('5'): Input should be "
                             "greater than or equal to 15")]
    assert refusal("20") == [
        ("error: CORRAL_HEARTBEAT_TIMEOUT_SECONDS (20) must be at least 1.5 x "
         "CORRAL_HEARTBEAT_SECONDS (30): healthy servers would flap between two heartbeats")]

    serve.env["CORRAL_ADMIN_PASSWORD"] = "first-password"
    serve.start()
    assert "is ignored" not in serve.output()
    serve.stop()
    serve.env["CORRAL_ADMIN_PASSWORD"] = "second-password"
    serve.start()
    assert "CORRAL_ADMIN_PASSWORD is ignored" in serve.output()
    r = httpx.post(f"{serve.url}/accounts/login",
                   json={"username": "admin", "password": "first-password"}, timeout=10)
    assert r.status_code == 200
    # one log format: uvicorn's own lines read like the others (a time, a level, a logger)
    stamped = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
    logged = [line for line in serve.output().splitlines() if stamped.match(line)]
    assert any("uvicorn" in line for line in logged) and any("corral" in line for line in logged)
    assert not [line for line in serve.output().splitlines() if line.startswith("INFO:")]


def test_json_logs_carry_the_request_id(serve: ServeProcess) -> None:
    """`--log-format json` (here CORRAL_LOG_FORMAT): one JSON object per line, the request's
    id in the access line and in X-Request-Id; a hostile id is replaced, not logged."""
    import json

    from tests.support import eventually

    serve.env.update({"CORRAL_LOG_FORMAT": "json", "CORRAL_ADMIN_PASSWORD": "pw-for-json-logs"})
    serve.start()
    r = httpx.get(f"{serve.url}/hybrid/api/v1/servers", headers={"X-Request-Id": "trace-42"})
    assert r.status_code == 401 and r.headers["x-request-id"] == "trace-42"
    bad = httpx.get(f"{serve.url}/healthz", headers={"X-Request-Id": 'x"{evil} \\u2028'})
    assert len(bad.headers["x-request-id"]) == 32 and "evil" not in bad.headers["x-request-id"]
    serve.stop()

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in serve.output().splitlines()
                if line.startswith("{")]

    logged = eventually(lines, lambda ls: any(entry.get("requestId") == "trace-42"
                                              for entry in ls), timeout=5)
    access = next(entry for entry in logged if entry.get("requestId") == "trace-42")
    assert (access["logger"], access["method"], access["path"], access["status"]) == (
        "uvicorn.access", "GET", "/hybrid/api/v1/servers", 401)
    assert "evil" not in serve.output()
    assert any(entry["logger"] == "corral.gateway.gateway" or "Uvicorn running" in
               str(entry["message"]) for entry in logged)
