"""Secure properties with a real control plane, a real agent and a real application: the values
reach the process byte for byte, and nothing else holds them in clear — no answer, console
page, CLI output, log, metric, file of the data folder or the agent's folder, database row or
backup (ADR 0011)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import Cli, Operator
from tests.e2e.processes import AgentProcess, ServeProcess
from tests.support import eventually

pytestmark = pytest.mark.every_database

# what a shell would make something of, a quote, and a character outside ASCII
PASSWORD = "pa55-$(touch /tmp/pwned)-'q'-\u00e9-`id`"
API_KEY = "k3y-0f-the-payments-API-9c1e5d"
ROTATED = "r0tated-pa55word-41b7"


def _in_clear(root: Path, *values: str) -> list[str]:
    """The files under `root` holding one of the values as bytes (UTF-8)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {v[:6]}…" for v in values if v.encode() in data]
    return found


def _database_dump(serve: ServeProcess) -> bytes:
    """What the documented backup of the database holds (docs/security.md, "Backups")."""
    url = make_url(serve.database_url)
    if url.get_backend_name() == "sqlite":
        return b"".join(p.read_bytes() for p in Path(str(url.database)).parent.glob("corral.db*"))
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(["pg_dump", "--dbname", plain], check=True, capture_output=True,
                          timeout=120).stdout


def test_secure_values_reach_the_application_and_nothing_else(
        operator: Operator, agents: Callable[..., AgentProcess], cli: Cli,
        control_plane: ServeProcess, tmp_path: Path) -> None:
    agent = agents("vault-1")
    archive = tmp_path / "vault.zip"
    archive.write_bytes(app_zip("v1"))
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY)
    r = cli("app", "deploy", str(archive), "--name", "vault", "--target", "vault-1",
            "-p", "greeting=hello", "-s", "db.password=-",
            "--secure-property-file", f"api.key={key_file}", "--wait", stdin=PASSWORD + "\n")
    assert PASSWORD not in r.stdout + r.stderr
    [app] = [a for a in operator.data("/applications") if a["name"] == "vault"]

    env = ask(app_port(agent, "vault"))["env"]
    # byte for byte, never through a shell (a name with a dot reaches the process upper-cased:
    # the Procfile's shell drops what cannot be a variable's name)
    assert env["DB_PASSWORD"] == PASSWORD
    assert env["API_KEY"] == API_KEY and env["greeting"] == "hello"
    assert not Path("/tmp/pwned").exists()

    # a redeploy changes one: the other is kept, the plain properties too
    cli("app", "redeploy", "vault", "-s", f"db.password={ROTATED}", "--wait")
    env = ask(app_port(agent, "vault"))["env"]
    assert (env["DB_PASSWORD"], env["API_KEY"], env["greeting"]) == (ROTATED, API_KEY, "hello")
    history = operator.data(f"/applications/{app['id']}/deployments")
    assert history[0]["note"] == "secure properties changed: db.password"
    assert history[0]["secureProperties"] == {"api.key": "********", "db.password": "********"}

    secrets = (PASSWORD, API_KEY, ROTATED)
    shown = [operator.call("GET", p, expect=200).text for p in (
        "/applications", f"/applications/{app['id']}", f"/applications/{app['id']}/deployments",
        "/servers", "/targets")]
    org = operator.headers["X-ANYPNT-ORG-ID"]
    shown += [operator.http.get(p, headers=operator.headers).text for p in (
        "/armui/api/v1/applications", "/armui/api/v1/servers",
        f"/accounts/api/organizations/{org}/auditEvents", "/metrics")]
    cookie = {"Cookie": f"corral_session={operator.headers['Authorization'].split()[-1]}"}
    pages = [operator.http.get(p, headers=cookie) for p in
             ("/apps", f"/apps/{app['id']}", "/audit", "/overview")]
    assert all(p.status_code == 200 for p in pages)
    assert "db.password" in pages[1].text
    shown += [p.text for p in pages]
    shown += [cli(*args).stdout for args in (
        ("app", "show", "vault"), ("app", "show", "vault", "-o", "json"),
        ("app", "history", "vault", "-o", "json"), ("audit",), ("app", "list"))]
    shown += [control_plane.output(), agent.output()]
    assert "api.key" in "".join(shown)
    assert not [v for v in secrets if any(v in text for text in shown)]

    # at rest: sealed in the data folder, the database and its backup, the agent's folder
    assert _in_clear(control_plane.data_dir, *secrets) == []
    dump = _database_dump(control_plane)
    assert b"secureProperties" in dump and not [v for v in secrets if v.encode() in dump]
    assert _in_clear(agent.directory, *secrets) == []

    # deleted: the server no longer holds the values, not even sealed
    operator.call("DELETE", f"/applications/{app['id']}", expect=204)
    eventually(lambda: (agent.directory / "state.json").read_text(),
               lambda record: "db.password" not in record and '"vault"' not in record,
               what="the application and its secrets gone from the agent's record")
