"""Server groups: made of individual servers only, one group or cluster per server."""

from __future__ import annotations

from corral.config import Settings
from corral.controlplane import ControlPlane
from tests.api.conftest import Api, desired


def _desired(plane: ControlPlane, server_id: int) -> tuple[int, list[str]]:
    state = desired(plane, server_id)
    return state["revision"], [a["name"] for a in state["applications"]]


def _running_spec(plane: ControlPlane, server_id: int) -> list[tuple[str, int, str, str]]:
    """What decides whether an agent restarts an application."""
    apps = desired(plane, server_id)["applications"]
    return [(a["name"], a["deploymentId"], a["artifact"]["sha256"], a["desiredStatus"])
            for a in apps]


class TestCreate:
    def test_ids_as_strings_answered_as_numbers(self, api: Api) -> None:
        a, b = api.register("a", seen=False), api.register("b", seen=False)
        r = api.post("/serverGroups", json={"name": "G", "serverIds": [str(a), str(b)]})
        assert r.status_code == 201, r.text
        group = r.json()["data"]
        assert group["type"] == "SERVER_GROUP"
        assert group["status"] == "CREATED"
        assert [s["id"] for s in group["servers"]] == [a, b]
        assert all(isinstance(s["id"], int) for s in group["servers"])
        server = api.get(f"/servers/{a}").json()["data"]
        assert server["serverGroupId"] == group["id"]
        assert server["serverGroupName"] == "G"

    def test_group_or_cluster_ids_refused(self, api: Api) -> None:
        a, b = api.register("a"), api.register("b")
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [a]}).json()["data"]["id"]
        r = api.post("/serverGroups", json={"name": "H", "serverIds": [gid]})
        assert r.status_code == 400
        assert "individual servers" in r.json()["message"]
        cid = api.post("/clusters", json={"name": "C", "multicastEnabled": True,
                                          "servers": [{"serverId": b}]}).json()["data"]["id"]
        assert api.post("/serverGroups", json={"name": "H", "serverIds": [cid]}).status_code == 400

    def test_server_already_grouped_409_nothing_written(self, api: Api) -> None:
        a, b = api.register("a"), api.register("b")
        api.post("/serverGroups", json={"name": "G", "serverIds": [a]})
        r = api.post("/serverGroups", json={"name": "H", "serverIds": [b, a]})
        assert r.status_code == 409
        assert "already belongs" in r.json()["message"]
        assert "serverGroupId" not in api.get(f"/servers/{b}").json()["data"]
        assert api.get("/serverGroups").json()["total"] == 1

    def test_server_in_cluster_409(self, api: Api) -> None:
        a = api.register("a")
        api.post("/clusters", json={"name": "C", "multicastEnabled": "true",
                                    "servers": [{"serverId": str(a)}]})
        assert api.post("/serverGroups", json={"name": "G", "serverIds": [a]}).status_code == 409

    def test_server_with_own_applications_409_names_them(self, api: Api) -> None:
        a = api.register("a")
        api.deploy("billing", a)
        r = api.post("/serverGroups", json={"name": "G", "serverIds": [a]})
        assert r.status_code == 409
        assert "billing" in r.json()["message"]

    def test_unknown_other_env_and_bad_ids(self, api: Api) -> None:
        sandbox_server = api.in_env("Sandbox").register("sb")
        assert api.post("/serverGroups", json={"name": "G", "serverIds": [999]}).status_code == 404
        r = api.post("/serverGroups", json={"name": "G", "serverIds": [sandbox_server]})
        assert r.status_code == 404
        r = api.post("/serverGroups", json={"name": "G", "serverIds": ["x1"]})
        assert r.status_code == 400
        assert "serverIds" in r.json()["message"]
        r = api.post("/serverGroups", json={"name": "G", "serverIds": "1"})
        assert r.status_code == 400

    def test_name_rules(self, api: Api) -> None:
        assert api.post("/serverGroups", json={"name": "G"}).status_code == 201
        assert api.post("/serverGroups", json={"name": "G"}).status_code == 409
        assert api.post("/serverGroups", json={"name": "  "}).status_code == 400
        assert api.post("/serverGroups", json={"name": "x" * 256}).status_code == 400
        assert api.post("/serverGroups", json={"name": "x" * 255}).status_code == 201
        assert api.post("/serverGroups", json={}).status_code == 400

    def test_no_cap_by_default_cap_when_configured(
        self, api: Api, plane: ControlPlane, settings: Settings
    ) -> None:
        ids = [api.register(f"s{i}") for i in range(25)]
        assert api.post("/serverGroups", json={"name": "big", "serverIds": ids[:22]}).status_code == 201
        settings.max_group_size = 2
        r = api.post("/serverGroups", json={"name": "capped", "serverIds": ids[22:25]})
        assert r.status_code == 409
        assert "at most 2" in r.json()["message"]


class TestMembership:
    def test_added_server_gets_the_groups_applications(self, api: Api, plane: ControlPlane) -> None:
        a, b = api.register("a"), api.register("b")
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [a]}).json()["data"]["id"]
        app = api.deploy("web", gid).json()["data"]
        assert [i["serverId"] for i in app["serverArtifacts"]] == [a]
        before, _ = _desired(plane, b)
        r = api.post(f"/serverGroups/{gid}/servers/{b}")
        assert r.status_code == 200
        assert [s["id"] for s in r.json()["data"]["servers"]] == [a, b]
        app = api.get(f"/applications/{app['id']}").json()["data"]
        assert sorted(i["serverId"] for i in app["serverArtifacts"]) == [a, b]
        revision, names = _desired(plane, b)
        assert revision > before and names == ["web"]

    def test_membership_alone_pushes_nothing(self, api: Api, plane: ControlPlane) -> None:
        """A group's membership is not part of what its servers run: forming, joining or
        deleting a group without applications moves no revision (nothing to push to
        thousands of agents)."""
        a, b = api.register("a"), api.register("b")
        before = {sid: _desired(plane, sid) for sid in (a, b)}
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [a]}).json()["data"]["id"]
        assert api.post(f"/serverGroups/{gid}/servers/{b}").status_code == 200
        assert api.delete(f"/serverGroups/{gid}/servers/{b}").status_code == 204
        assert api.delete(f"/serverGroups/{gid}").status_code == 204
        assert {sid: _desired(plane, sid) for sid in (a, b)} == before

    def test_add_twice_409_and_unknown_404(self, api: Api) -> None:
        a = api.register("a")
        gid = api.post("/serverGroups", json={"name": "G"}).json()["data"]["id"]
        assert api.post(f"/serverGroups/{gid}/servers/{a}").status_code == 200
        assert api.post(f"/serverGroups/{gid}/servers/{a}").status_code == 409
        assert api.post(f"/serverGroups/{gid}/servers/999").status_code == 404
        assert api.post(f"/serverGroups/999/servers/{a}").status_code == 404

    def test_removed_server_keeps_apps_as_its_own(self, api: Api, plane: ControlPlane) -> None:
        a, b = api.register("a"), api.register("b")
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [a, b]}).json()["data"]["id"]
        app = api.deploy("web", gid).json()["data"]
        spec_before = _running_spec(plane, b)
        assert api.delete(f"/serverGroups/{gid}/servers/{b}").status_code == 204
        group_app = api.get(f"/applications/{app['id']}").json()["data"]
        assert [i["serverId"] for i in group_app["serverArtifacts"]] == [a]
        own = api.get("/applications", params={"targetId": b}).json()["data"]
        assert [x["name"] for x in own] == ["web"]
        assert own[0]["artifact"]["fileChecksum"] == app["artifact"]["fileChecksum"]
        assert own[0]["target"]["id"] == b
        assert _running_spec(plane, b) == spec_before  # the server keeps running it as is
        assert api.delete(f"/serverGroups/{gid}/servers/{b}").status_code == 404

    def test_delete_group_clones_its_apps_onto_each_server(self, api: Api,
                                                           plane: ControlPlane) -> None:
        a, b = api.register("a"), api.register("b")
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [a, b]}).json()["data"]["id"]
        props = ('{"mule.agent.application.properties.service": '
                 '{"applicationName": "web", "properties": {"colour": "blue"}}}')
        app = api.deploy("web", gid, configuration=props).json()["data"]
        specs = {sid: _running_spec(plane, sid) for sid in (a, b)}
        assert api.delete(f"/serverGroups/{gid}").status_code == 204
        assert api.get(f"/serverGroups/{gid}").status_code == 404
        assert api.get(f"/applications/{app['id']}").status_code == 404
        for sid in (a, b):
            assert "serverGroupId" not in api.get(f"/servers/{sid}").json()["data"]
            own = api.get("/applications", params={"targetId": sid}).json()["data"]
            assert [x["name"] for x in own] == ["web"]
            assert own[0]["artifact"]["fileChecksum"] == app["artifact"]["fileChecksum"]
            full = api.get(f"/applications/{own[0]['id']}").json()["data"]
            assert [i["serverId"] for i in full["serverArtifacts"]] == [sid]
            assert _running_spec(plane, sid) == specs[sid]  # nothing restarts
            state = desired(plane, sid)["applications"][0]
            assert state["properties"] == {"colour": "blue"}

    def test_delete_empty_group(self, api: Api) -> None:
        a = api.register("a")
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [a]}).json()["data"]["id"]
        assert api.delete(f"/serverGroups/{gid}").status_code == 204
        assert "serverGroupId" not in api.get(f"/servers/{a}").json()["data"]

    def test_rename_and_read(self, api: Api) -> None:
        gid = api.post("/serverGroups", json={"name": "G"}).json()["data"]["id"]
        assert api.patch(f"/serverGroups/{gid}", json={"name": "H"}).json()["data"]["name"] == "H"
        assert api.get(f"/serverGroups/{gid}").json()["data"]["name"] == "H"
        assert api.get("/serverGroups").json()["data"][0]["servers"] == []
        assert api.in_env("Sandbox").get(f"/serverGroups/{gid}").status_code == 404
        assert api.get(f"/serverGroups/{gid + 1000}").status_code == 404
