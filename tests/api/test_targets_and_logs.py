"""Target components (ARM's CLI) and the logs endpoint's checks before it reaches an agent."""

from __future__ import annotations

import pytest

from corral.controlplane import ControlPlane
from tests.api.conftest import Api, desired


class TestComponents:
    def test_defaults_and_patch(self, api: Api) -> None:
        sid = api.register("a")
        body = api.get(f"/targets/{sid}/components").json()
        names = {c["component"]["name"]: c for c in body["data"]}
        assert set(names) == {"mule.agent.tracking.handler.analytics",
                              "mule.agent.tracking.service", "mule.agent.logging.service"}
        tracking = names["mule.agent.tracking.service"]
        r = api.patch(f"/targets/{sid}/components/{tracking['component']['id']}",
                      json={"enabled": True, "configuration": {"trackedApplications": [
                          {"appName": "x", "trackingLevel": "DEBUG"}]}})
        assert r.status_code == 200
        again = {c["component"]["name"]: c for c in api.get(f"/targets/{sid}/components").json()["data"]}
        assert again["mule.agent.tracking.service"]["enabled"] is True
        assert again["mule.agent.tracking.service"]["configuration"]["trackedApplications"][0]["appName"] == "x"
        assert len(again) == 3  # listing twice does not duplicate

    def test_bad_input_and_scope(self, api: Api) -> None:
        sid = api.register("a")
        cid = api.get(f"/targets/{sid}/components").json()["data"][0]["component"]["id"]
        assert api.patch(f"/targets/{sid}/components/{cid}", json={"enabled": "yes"}).status_code == 400
        assert api.patch(f"/targets/{sid}/components/{cid}", json={"configuration": []}).status_code == 400
        assert api.patch(f"/targets/{sid}/components/9999", json={}).status_code == 404
        assert api.get("/targets/9999/components").status_code == 404
        assert api.in_env("Sandbox").get(f"/targets/{sid}/components").status_code == 404

    def _logging(self, api: Api, target: int) -> int:
        found = api.get(f"/targets/{target}/components").json()["data"]
        return next(c["component"]["id"] for c in found
                    if c["component"]["name"] == "mule.agent.logging.service")

    def test_log_levels_reach_the_desired_state_without_a_redeployment(
            self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("a")
        api.deploy("web", sid)
        before = desired(plane, sid)
        levels = [{"artifactName": "web", "scopeLoggingConfigurations": [
            {"logLevel": "WARN", "scope": "org.example"}, {"logLevel": "DEBUG", "scope": ""}]},
            {"artifactName": "other", "scopeLoggingConfigurations": [
                {"logLevel": "ERROR", "scope": "x"}]}]
        r = api.patch(f"/targets/{sid}/components/{self._logging(api, sid)}",
                      json={"configuration": {"applicationLogLevels": levels}})
        assert r.status_code == 200
        after = desired(plane, sid)
        assert after["revision"] > before["revision"]
        [app] = after["applications"]
        assert app["logLevels"] == {"org.example": "WARN", "root": "DEBUG"}
        assert app["deploymentId"] == before["applications"][0]["deploymentId"]

    @pytest.mark.parametrize("levels", [
        "WARN",
        [{"artifactName": "web", "scopeLoggingConfigurations": [
            {"logLevel": "LOUD", "scope": "x"}]}],
        [{"artifactName": "web", "scopeLoggingConfigurations": [
            {"logLevel": "WARN", "scope": "x\nroot=TRACE"}]}],
        [{"artifactName": "web", "scopeLoggingConfigurations": [
            {"logLevel": "WARN", "scope": "a,b=c"}]}],
        [{"scopeLoggingConfigurations": []}],
        [{"artifactName": "web", "scopeLoggingConfigurations": [
            {"logLevel": "WARN", "scope": f"s{i}"} for i in range(101)]}],
    ])
    def test_hostile_log_levels_refused(self, api: Api, levels: object) -> None:
        sid = api.register("a")
        cid = self._logging(api, sid)
        r = api.patch(f"/targets/{sid}/components/{cid}",
                      json={"configuration": {"applicationLogLevels": levels}})
        assert r.status_code == 400, r.text
        assert r.json()["message"]
        stored = next(c for c in api.get(f"/targets/{sid}/components").json()["data"]
                      if c["component"]["id"] == cid)
        assert stored["configuration"]["applicationLogLevels"] == []


class TestLogs:
    def test_several_servers_need_server_id(self, api: Api) -> None:
        a, b = api.register("a"), api.register("b")
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [a, b]}).json()["data"]["id"]
        app_id = api.deploy("web", gid).json()["data"]["id"]
        r = api.get(f"/applications/{app_id}/logs")
        assert r.status_code == 400
        assert "serverId is required" in r.json()["message"]
        assert api.get(f"/applications/{app_id}/logs", params={"serverId": 999}).status_code == 404
        assert api.get(f"/applications/{app_id}/logs", params={"lines": -1}).status_code == 400

    def test_unconnected_server_is_503(self, api: Api) -> None:
        sid = api.register("a")
        app_id = api.deploy("web", sid).json()["data"]["id"]
        r = api.get(f"/applications/{app_id}/logs")
        assert r.status_code == 503
        assert "cannot read logs" in r.json()["message"]
        assert api.get("/applications/4242/logs").status_code == 404
