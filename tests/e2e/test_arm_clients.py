"""ARM's clients other than anypoint-cli, against a real Corral with real agents.

`MavenDeployer` does what the mule-maven-plugin's ARM deployer does (`mule-deployer/.../client/
arm/*` and `AbstractMuleClient` in its public source): the same calls in the same order, the
same fields read, the same waits. It fails where the plugin would fail."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.arm_shapes import check_answer
from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import ADMIN_PASSWORD, Operator
from tests.e2e.processes import AgentProcess, ServeProcess, enroll
from tests.support import eventually

pytestmark = pytest.mark.every_database


class MavenDeployer:
    def __init__(self, serve: ServeProcess, username: str, password: str,
                 environment: str) -> None:
        self.http = httpx.Client(base_url=serve.url, verify=serve.verify, timeout=30)
        self.credentials = {"username": username, "password": password}
        self.environment = environment
        self.headers: dict[str, str] = {}

    def _get(self, path: str) -> Any:
        r = self.http.get(path, headers=self.headers)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        check_answer(path, r)
        return r.json()

    # AbstractMuleClient.init(): token, business group, environment
    def init(self) -> None:
        r = self.http.post("/accounts/login", json=self.credentials)
        assert r.status_code == 200, r.text
        self.headers = {"Authorization": f"bearer {r.json()['access_token']}"}
        org_id = self._root_organization()
        envs = self._get(f"/accounts/api/organizations/{org_id}/environments")["data"]
        env = next(e for e in envs if e["name"] == self.environment)
        self.headers |= {"X-ANYPNT-ENV-ID": env["id"], "X-ANYPNT-ORG-ID": org_id}

    def _root_organization(self) -> str:
        """`buildOrganization`: every member and contributor organization by id, its children
        from `subOrganizationIds` (a missing list throws in the plugin), then the tree from
        `user.organization` down."""
        user = self._get("/accounts/api/me")["user"]
        orgs = user["memberOfOrganizations"] + user["contributorOfOrganizations"]
        children = {o["id"]: list(o["subOrganizationIds"]) for o in orgs}
        names = {o["id"]: o["name"] for o in orgs}

        def tree(org_id: str) -> dict[str, Any]:
            return {"id": org_id, "name": names[org_id],
                    "subOrganizations": [tree(c) for c in children[org_id]]}

        root = tree(user["organization"]["id"])
        assert root["subOrganizations"] == []  # no business groups: the root is the org
        return str(root["id"])

    # ArmClient
    def find_target(self, kind: str, name: str) -> int:
        path = {"server": "servers", "serverGroup": "serverGroups", "cluster": "clusters"}[kind]
        found = [t for t in self._get(f"/hybrid/api/v1/{path}")["data"] if t["name"] == name]
        if not found:
            raise RuntimeError(f"Couldn't find target named [{name}]")
        return int(found[0]["id"])

    def find_application(self, name: str, target_id: int) -> int | None:
        for app in self._get("/hybrid/api/v1/applications")["data"]:
            if app["artifact"]["name"] == name and app["target"]["id"] == target_id:
                return int(app["id"])
        return None

    def deploy(self, name: str, target_id: int, archive: bytes) -> httpx.Response:
        return self.http.post("/hybrid/api/v1/applications", headers=self.headers,
                              data={"artifactName": name, "targetId": str(target_id)},
                              files={"file": (f"{name}.jar", archive)})

    def redeploy(self, app_id: int, name: str, target_id: int, archive: bytes) -> Any:
        r = self.http.patch(f"/hybrid/api/v1/applications/{app_id}", headers=self.headers,
                            data={"artifactName": name, "targetId": str(target_id)},
                            files={"file": (f"{name}.jar", archive)})
        assert r.status_code == 200, r.text
        check_answer(f"/hybrid/api/v1/applications/{app_id}", r)
        return r.json()["data"]

    def application(self, app_id: int) -> dict[str, Any]:
        return dict(self._get(f"/hybrid/api/v1/applications/{app_id}")["data"])

    def wait(self, app_id: int, check: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 60) -> dict[str, Any]:
        return eventually(lambda: self.application(app_id), check, timeout=timeout, what=what)

    def undeploy(self, app_id: int) -> None:
        r = self.http.delete(f"/hybrid/api/v1/applications/{app_id}", headers=self.headers)
        assert r.status_code == 204, r.text
        eventually(lambda: self.http.get(f"/hybrid/api/v1/applications/{app_id}",
                                         headers=self.headers).status_code,
                   lambda status: status == 404, what="the application going away")


def _running(app: dict[str, Any]) -> bool:
    return (app["desiredStatus"] == "STARTED" and app["started"]
            and app["lastReportedStatus"] == "STARTED")


@pytest.mark.slow
def test_maven_plugin_deploys_redeploys_and_undeploys(
    control_plane: ServeProcess, operator: Operator,
    agents: Callable[..., AgentProcess],
) -> None:
    a, b = agents("mvn-a"), agents("mvn-b")
    operator.call("POST", "/serverGroups", expect=201,
                  json={"name": "mvn-group", "serverIds": [a.server_id, b.server_id]})

    wrong = MavenDeployer(control_plane, "admin", "not-the-password", "Production")
    r = wrong.http.post("/accounts/login", json=wrong.credentials)
    assert (r.status_code, r.text) == (401, "Unauthorized")  # what the plugin reports
    # scripts put the credentials in the query string; the access log must not keep them
    r = wrong.http.post("/accounts/login", params={"username": "admin",
                                                   "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    assert "POST /accounts/login?" in control_plane.output()
    assert ADMIN_PASSWORD not in control_plane.output()

    mvn = MavenDeployer(control_plane, "admin", ADMIN_PASSWORD, "Production")
    mvn.init()
    group = mvn.find_target("serverGroup", "mvn-group")
    assert mvn.find_application("orders", group) is None
    r = mvn.deploy("orders", group, app_zip("v1"))
    assert r.status_code == 202, r.text
    app_id = int(r.json()["data"]["id"])
    first = mvn.wait(app_id, _running, "the first deployment")
    assert first["desiredStatus"] == "STARTED"
    assert ask(app_port(b, "orders"))["version"] == "v1"

    # a second run finds the application and redeploys it; desiredStatus reads UPDATED until
    # every server runs the new deployment
    assert mvn.find_application("orders", group) == app_id
    answer = mvn.redeploy(app_id, "orders", group, app_zip("v2"))
    assert answer["desiredStatus"] == "UPDATED"
    done = mvn.wait(app_id, lambda x: _running(x) and all(
        i["deploymentId"] == 2 and i["lastReportedStatus"] == "STARTED"
        for i in x["serverArtifacts"]), "the redeploy")
    assert done["desiredStatus"] == "STARTED"
    assert {ask(app_port(s, "orders"))["version"] for s in (a, b)} == {"v2"}

    mvn.undeploy(app_id)
    assert operator.data("/applications") == []


@pytest.mark.slow
def test_maven_plugin_deploy_to_a_server_that_never_connected_fails(
    control_plane: ServeProcess, operator: Operator, tmp_path: Path,
) -> None:
    """The plugin's own test expects this failure, as ARM refuses such a target."""
    enroll(control_plane, operator.registration_token(), "never-ran", tmp_path / "agent")
    mvn = MavenDeployer(control_plane, "admin", ADMIN_PASSWORD, "Production")
    mvn.init()
    r = mvn.deploy("orders", mvn.find_target("server", "never-ran"), app_zip("v1"))
    assert r.status_code == 409
    assert "must be a running server" in r.json()["message"]
    assert operator.data("/applications") == []


class PromoteScript:
    """MuleSoft's published "ARM API wrapper" for promoting applications between environments:
    it finds the target environment's application by name, then redeploys it with
    `PATCH /applications/{id}/artifact` or deploys it with `POST /applications`, both as JSON
    naming the source application (`applicationSource`)."""

    def __init__(self, serve: ServeProcess, token: str, org_id: str, env_id: str) -> None:
        self.http = httpx.Client(base_url=serve.url, verify=serve.verify, timeout=30)
        self.headers = {"content-type": "application/json", "Authorization": f"Bearer {token}",
                        "X-ANYPNT-ORG-ID": org_id, "X-ANYPNT-ENV-ID": env_id}

    def application_id(self, name: str) -> int | None:
        r = self.http.get("/hybrid/api/v1/applications", headers=self.headers)
        assert r.status_code == 200, r.text
        return next((a["id"] for a in r.json()["data"] if a["name"] == name), None)

    def promote(self, source_id: int, name: str, target_id: int) -> dict[str, Any]:
        body: dict[str, Any] = {"applicationSource": {"source": "HYBRID", "id": source_id}}
        existing = self.application_id(name)
        if existing is not None:
            r = self.http.patch(f"/hybrid/api/v1/applications/{existing}/artifact",
                                headers=self.headers, json=body)
        else:
            r = self.http.post("/hybrid/api/v1/applications", headers=self.headers,
                               json=body | {"targetId": target_id, "artifactName": name,
                                            "configuration": {}})
        assert r.status_code in (200, 202), r.text
        check_answer("/applications", r)
        return dict(r.json()["data"])


@pytest.mark.slow
def test_promote_script_moves_an_application_to_the_next_environment(
    control_plane: ServeProcess, operator: Operator,
    agents: Callable[..., AgentProcess],
) -> None:
    """Sandbox's application runs on Production's server with the same bytes, deployed and
    then redeployed by reference; no file is uploaded twice."""
    sandbox = Operator(control_plane, ADMIN_PASSWORD, environment="Sandbox")
    test_server, prod_server = agents("test-1", on=sandbox), agents("prod-1")
    v1 = sandbox.deploy("orders", test_server.server_id, app_zip("v1"))
    sandbox.wait_app(v1["id"], "STARTED")
    script = PromoteScript(control_plane, operator.headers["Authorization"].split()[1],
                           operator.headers["X-ANYPNT-ORG-ID"],
                           operator.headers["X-ANYPNT-ENV-ID"])
    promoted = script.promote(v1["id"], "orders", prod_server.server_id)
    assert promoted["artifact"]["fileChecksum"] == v1["artifact"]["fileChecksum"]
    operator.wait_app(promoted["id"], "STARTED")
    assert ask(app_port(prod_server, "orders"))["version"] == "v1"

    v2 = sandbox.call("PATCH", f"/applications/{v1['id']}", expect=200,
                      files={"file": ("orders.zip", app_zip("v2"), "application/zip")})
    again = script.promote(v2.json()["data"]["id"], "orders", prod_server.server_id)
    assert again["id"] == promoted["id"]  # the same application, redeployed
    eventually(lambda: ask(app_port(prod_server, "orders"))["version"], lambda v: v == "v2",
               what="Production running v2")
    assert ask(app_port(test_server, "orders"))["version"] == "v2"
    assert len(operator.data(f"/applications/{promoted['id']}/deployments")) == 2


@pytest.mark.slow
def test_go_client_alert_calls_and_a_curl_without_redirects(
    control_plane: ServeProcess, operator: Operator,
    agents: Callable[..., AgentProcess],
) -> None:
    """go-facade's alert calls with the status codes it checks (`postAlert` 200 and a list,
    `getResourceAlertHistory`, `deleteSingleAlert` 200), and a Kubernetes de-registration
    script that curls `$hybridAPI/servers/` without following redirects, finds its server by
    name, takes it out of its cluster and deletes it."""
    web, spare = agents("web-1"), agents("web-2")
    http = httpx.Client(base_url=control_plane.url, verify=control_plane.verify, timeout=30,
                        follow_redirects=False, headers=operator.headers)
    r = http.post("/hybrid/api/v1/alerts", json={
        "name": "web-1 down", "severity": "CRITICAL", "condition": {
            "resourceType": "server", "type": "server-down", "resources": [str(web.server_id)]},
        "actions": [{"type": "email", "emails": ["ops@example.com"]}]})
    assert r.status_code == 200, r.text
    alert_id = r.json()["data"][0]["id"]
    web.stop(signal.SIGKILL)
    history = eventually(
        lambda: http.get(f"/hybrid/api/v1/alerts/resource/{web.server_id}/history").json()["data"],
        timeout=60, what="the alert firing for web-1")
    assert history[0]["context"]["resource"] == str(web.server_id)
    assert history[0]["severity"] == "CRITICAL" and history[0]["triggeredAt"] > 0
    assert http.delete(f"/hybrid/api/v1/alerts/{alert_id}").status_code == 200

    cluster = http.post("/hybrid/api/v1/clusters", json={
        "name": "k8s", "multicastEnabled": False,
        "servers": [{"serverId": spare.server_id, "serverIp": "127.0.0.1"}]})
    assert cluster.status_code == 201, cluster.text
    cluster_id = cluster.json()["data"]["id"]
    listed = http.get("/hybrid/api/v1/servers/")  # the script's own spelling, no -L
    assert listed.status_code == 200 and listed.headers["content-type"] == "application/json"
    server_id = next(s["id"] for s in listed.json()["data"] if s["name"] == "web-2")
    r = http.delete(f"/hybrid/api/v1/clusters/{cluster_id}/servers/{server_id}/")
    assert r.status_code in (200, 204), r.text
    assert http.delete(f"/hybrid/api/v1/servers/{server_id}/").status_code == 204
    assert [s["name"] for s in operator.data("/servers")] == ["web-1"]
