"""Target components (ARM's CLI) and the logs endpoint's checks before it reaches an agent."""

from __future__ import annotations

from tests.api.conftest import Api


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
