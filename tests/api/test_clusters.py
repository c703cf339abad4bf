"""Clusters: multicast or unicast (every server's IP), one group or cluster per server."""

from __future__ import annotations

from corral.controlplane import ControlPlane
from tests.api.conftest import Api, desired


class TestCreate:
    def test_multicast_as_string_true(self, api: Api) -> None:
        a, b = api.register("a"), api.register("b")
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": "true",
                                        "servers": [{"serverId": str(a)}, {"serverId": b}]})
        assert r.status_code == 201, r.text
        c = r.json()["data"]
        assert c["type"] == "CLUSTER" and c["multicastEnabled"] is True
        assert c["primaryNodeId"] is None
        assert [s["id"] for s in c["servers"]] == [a, b]
        assert c["visibilityMap"]["mapNodes"] == [
            {"serverId": a, "visibleNodeIds": [], "unknownNodeIps": []},
            {"serverId": b, "visibleNodeIds": [], "unknownNodeIps": []},
        ]
        server = api.get(f"/servers/{a}").json()["data"]
        assert server["clusterId"] == c["id"] and server["clusterName"] == "C"

    def test_unicast_needs_every_ip(self, api: Api) -> None:
        a, b = api.register("a"), api.register("b")
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": "false",
                                        "servers": [{"serverId": a, "serverIp": "10.0.0.1"},
                                                    {"serverId": b}]})
        assert r.status_code == 400
        assert f"server {b}" in r.json()["message"]
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": False,
                                        "servers": [{"serverId": a, "serverIp": "not-an-ip"}]})
        assert r.status_code == 400
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": False,
                                        "servers": [{"serverId": a, "serverIp": "10.0.0.1"},
                                                    {"serverId": b, "serverIp": "10.0.0.2"}]})
        assert r.status_code == 201
        ips = {s["id"]: s["serverIp"] for s in r.json()["data"]["servers"]}
        assert ips == {a: "10.0.0.1", b: "10.0.0.2"}

    def test_membership_rules(self, api: Api) -> None:
        a = api.register("a")
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [a]}).json()["data"]["id"]
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": True,
                                        "servers": [{"serverId": a}]})
        assert r.status_code == 409
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": True,
                                        "servers": [{"serverId": gid}]})
        assert r.status_code == 400
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": "maybe"})
        assert r.status_code == 400
        assert "multicastEnabled" in r.json()["message"]
        # an empty cluster is refused (an empty one once made the console's list answer 500)
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": True, "servers": []})
        assert r.status_code == 400 and "at least one server" in r.json()["message"]

    def test_listed_twice_400(self, api: Api) -> None:
        a = api.register("a")
        r = api.post("/clusters", json={"name": "C", "multicastEnabled": True,
                                        "servers": [{"serverId": a}, {"serverId": str(a)}]})
        assert r.status_code == 400


class TestMembership:
    def test_add_and_remove(self, api: Api, plane: ControlPlane) -> None:
        a, b = api.register("a"), api.register("b")
        cid = api.post("/clusters", json={"name": "C", "multicastEnabled": False,
                                          "servers": [{"serverId": a, "serverIp": "10.0.0.1"}]}
                       ).json()["data"]["id"]
        app_id = api.deploy("shared", cid).json()["data"]["id"]
        assert api.post(f"/clusters/{cid}/servers", json={"serverId": str(b)}).status_code == 400
        r = api.post(f"/clusters/{cid}/servers", json={"serverId": str(b), "serverIp": "10.0.0.2"})
        assert r.status_code == 200, r.text
        assert [s["id"] for s in r.json()["data"]["servers"]] == [a, b]
        app = api.get(f"/applications/{app_id}").json()["data"]
        assert sorted(i["serverId"] for i in app["serverArtifacts"]) == [a, b]
        members = desired(plane, a)["cluster"]["members"]
        assert members == [{"serverId": a, "serverIp": "10.0.0.1", "clusterPort": None},
                           {"serverId": b, "serverIp": "10.0.0.2", "clusterPort": None}]
        assert api.delete(f"/clusters/{cid}/servers/{b}").status_code == 204
        app = api.get(f"/applications/{app_id}").json()["data"]
        assert [i["serverId"] for i in app["serverArtifacts"]] == [a]
        assert api.get("/applications", params={"targetId": b}).json()["total"] == 0
        assert desired(plane, b)["applications"] == []
        assert desired(plane, b)["cluster"] is None
        assert api.delete(f"/clusters/{cid}/servers/{b}").status_code == 404

    def test_delete_with_apps_removes_them(self, api: Api, plane: ControlPlane) -> None:
        a = api.register("a")
        cid = api.post("/clusters", json={"name": "C", "multicastEnabled": True,
                                          "servers": [{"serverId": a}]}).json()["data"]["id"]
        app_id = api.deploy("shared", cid).json()["data"]["id"]
        assert [x["name"] for x in desired(plane, a)["applications"]] == ["shared"]
        assert api.delete(f"/clusters/{cid}").status_code == 204
        assert api.get(f"/clusters/{cid}").status_code == 404
        assert api.get(f"/applications/{app_id}").status_code == 404
        server = api.get(f"/servers/{a}").json()["data"]
        assert "clusterId" not in server
        assert desired(plane, a)["applications"] == []
        assert desired(plane, a)["cluster"] is None

    def test_rename_list_and_scope(self, api: Api) -> None:
        cid = api.post("/clusters", json={"name": "C", "multicastEnabled": True,
                                          "servers": [{"serverId": api.register("m")}]}
                       ).json()["data"]["id"]
        assert api.patch(f"/clusters/{cid}", json={"name": "D"}).json()["data"]["name"] == "D"
        assert [c["name"] for c in api.get("/clusters").json()["data"]] == ["D"]
        assert api.in_env("Sandbox").get(f"/clusters/{cid}").status_code == 404
        assert api.get(f"/serverGroups/{cid}").status_code == 404  # one id space, one kind
