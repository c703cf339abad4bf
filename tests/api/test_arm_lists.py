"""The lists scripts written for ARM read: every target in one list, ARM's console aggregation
(`/armui/api/v1`), and the clustering information of a cluster's members."""

from __future__ import annotations

from tests.api.conftest import Api


def _fleet(api: Api) -> tuple[int, int, int, int]:
    """A server on its own with an application, a group of one, a cluster of one."""
    alone, grouped, clustered = api.register("alone"), api.register("g1"), api.register("c1")
    gid = api.post("/serverGroups", json={"name": "G", "serverIds": [grouped]}).json()["data"]["id"]
    r = api.post("/clusters", json={"name": "C", "servers": [
        {"serverId": clustered, "serverIp": "10.0.0.3"}]})
    assert r.status_code == 201, r.text
    api.deploy("solo", alone)
    api.deploy("grouped", gid)
    return alone, grouped, clustered, gid


def test_targets_lists_every_kind(api: Api) -> None:
    alone, grouped, clustered, gid = _fleet(api)
    body = api.get("/targets").json()
    kinds = {t["id"]: t["type"] for t in body["data"]}
    assert body["total"] == 5
    assert kinds[alone] == kinds[grouped] == kinds[clustered] == "SERVER"
    assert kinds[gid] == "SERVER_GROUP"
    assert "CLUSTER" in kinds.values()
    assert api.in_env("Sandbox").get("/targets").json() == {"data": [], "total": 0}


def test_armui_servers_nest_members_and_deployments(api: Api) -> None:
    alone, grouped, clustered, gid = _fleet(api)
    r = api.client.get("/armui/api/v1/servers", headers=api.headers)
    assert r.status_code == 200
    entries = {e["name"]: e for e in r.json()["data"]}
    assert set(entries) == {"alone", "G", "C"}  # members appear inside their group or cluster
    assert (entries["G"]["id"], entries["G"]["type"]) == (gid, "SERVER_GROUP")
    assert [s["id"] for s in entries["G"]["details"]["servers"]] == [grouped]
    assert [s["id"] for s in entries["C"]["details"]["servers"]] == [clustered]
    assert entries["alone"]["details"]["servers"][0]["id"] == alone
    assert [d["name"] for d in entries["G"]["deployments"]] == ["grouped"]
    assert entries["C"]["deployments"] == []


def test_armui_applications(api: Api) -> None:
    alone, _, _, gid = _fleet(api)
    r = api.client.get("/armui/api/v1/applications", headers=api.headers)
    assert r.status_code == 200
    apps = {a["name"]: a for a in r.json()["data"]}
    assert apps["grouped"]["target"] == {"id": gid, "name": "G", "type": "SERVER_GROUP"}
    assert apps["solo"]["target"]["type"] == "SERVER"
    assert apps["solo"]["lastReportedStatus"] == "UNDEPLOYED"
    assert [s["id"] for s in apps["solo"]["details"]["servers"]] == [alone]
    assert api.client.get("/armui/api/v1/applications").status_code == 401
    other = {**api.headers, "X-ANYPNT-ENV-ID": api.envs["Sandbox"]}
    assert api.client.get("/armui/api/v1/applications", headers=other).json()["total"] == 0


def test_cluster_member_ip_and_server_fields(api: Api) -> None:
    _, _, clustered, _ = _fleet(api)
    [cluster] = api.get("/clusters").json()["data"]
    server = api.get(f"/servers/{clustered}").json()["data"]
    assert server["serverIp"] == server["currentClusteringIp"] == "10.0.0.3"
    assert "currentClusteringPort" in server
    assert server["licenseExpirationDate"] == server["certificateExpirationDate"] > 0
    path = f"/clusters/{cluster['id']}/servers/{clustered}"
    r = api.patch(path, json={"serverIp": "10.0.0.9"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["servers"][0]["serverIp"] == "10.0.0.9"
    assert api.get(f"/servers/{clustered}").json()["data"]["serverIp"] == "10.0.0.9"
    assert api.patch(path, json={"serverIp": "not-an-ip"}).status_code == 400
    assert api.patch(path, json={"serverIp": ""}).status_code == 400  # unicast needs one
    assert api.patch(path, json={}).status_code == 400
    assert api.patch(f"/clusters/{cluster['id']}/servers/424242",
                     json={"serverIp": "10.0.0.1"}).status_code == 404
    assert api.in_env("Sandbox").patch(path, json={"serverIp": "10.0.0.1"}).status_code == 404


def test_new_reads_need_a_token_and_stay_in_their_organization(api: Api) -> None:
    for path in ("/hybrid/api/v1/targets", "/armui/api/v1/servers",
                 "/armui/api/v1/applications",
                 f"/accounts/api/organizations/{api.org_id}/hierarchy",
                 f"/accounts/api/organizations/{api.org_id}/members",
                 f"/accounts/api/organizations/{api.org_id}/clients/x"):
        r = api.client.get(path, headers={"X-ANYPNT-ENV-ID": api.env_id})
        assert r.status_code == 401, path
        assert r.json()["status"] == 401
    other = "00000000-0000-4000-8000-000000000000"
    token = {"Authorization": f"Bearer {api.token}"}
    for path in ("hierarchy", "members", "clients/x"):
        r = api.client.get(f"/accounts/api/organizations/{other}/{path}", headers=token)
        assert r.status_code == 404, path  # an organization it does not know
    r = api.client.get("/armui/api/v1/servers",
                       headers={**api.headers, "X-ANYPNT-ORG-ID": other})
    assert r.status_code == 403
