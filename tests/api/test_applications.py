"""Applications: multipart deploy, redeploy, start/stop, delete, artifact download."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import func, select

from corral.config import Settings
from corral.controlplane import ControlPlane
from corral.db.models import Artifact
from tests.api.conftest import Api, desired, make_zip

PROPS = json.dumps({"mule.agent.application.properties.service": {
    "applicationName": "ignored", "properties": {"http.port": "8081", "debug": True}}})


def _artifact_rows(plane: ControlPlane) -> int:
    with plane.sessions() as s:
        return s.scalar(select(func.count()).select_from(Artifact)) or 0


class TestDeploy:
    def test_deploy_to_server_answers_arm_shape(self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("a")
        archive = make_zip()
        r = api.deploy("web", str(sid), archive, configuration=PROPS)
        assert r.status_code == 202, r.text
        app = r.json()["data"]
        assert app["name"] == "web"
        assert app["desiredStatus"] == "STARTED"
        assert app["lastReportedStatus"] == "UNDEPLOYED"
        assert app["started"] is False
        assert app["artifact"]["name"] == "web"
        assert app["artifact"]["fileName"] == "web.zip"
        assert app["artifact"]["fileChecksum"] == hashlib.sha1(archive).hexdigest()
        assert app["artifact"]["storageId"] == app["artifact"]["id"]
        assert app["artifact"]["sha256"] == hashlib.sha256(archive).hexdigest()
        assert app["artifact"]["fileSize"] == len(archive)
        assert app["target"]["id"] == sid and app["target"]["type"] == "SERVER"
        assert app["target"]["status"] == "DISCONNECTED"
        props = app["configuration"]["mule.agent.application.properties.service"]
        assert props["applicationName"] == "web"
        [inst] = app["serverArtifacts"]
        assert inst["serverId"] == sid and inst["serverName"] == "a"
        assert inst["lastReportedStatus"] == "UNDEPLOYED"
        assert inst["desiredStatus"] == "STARTED"
        [wanted] = desired(plane, sid)["applications"]
        assert wanted["artifact"]["sha256"] == hashlib.sha256(archive).hexdigest()
        assert wanted["properties"] == {"http.port": "8081", "debug": "true"}
        assert wanted["desiredStatus"] == "STARTED"

    def test_store_is_content_addressed(self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("a")
        archive = make_zip({"Procfile": "web: sleep 1000\n"})
        api.deploy("one", sid, archive)
        api.deploy("two", sid, archive)
        digest = hashlib.sha256(archive).hexdigest()
        path = plane.settings.data_dir / "artifacts" / "sha256" / digest[:2] / digest
        assert path.read_bytes() == archive
        assert list((plane.settings.data_dir / "artifacts" / "tmp").iterdir()) == []

    def test_not_a_zip_400_nothing_kept(self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("a")
        r = api.deploy("web", sid, b"this is plainly not a zip archive")
        assert r.status_code == 400
        assert "zip" in r.json()["message"]
        assert _artifact_rows(plane) == 0
        assert api.get("/applications").json()["total"] == 0
        assert list((plane.settings.data_dir / "artifacts" / "tmp").iterdir()) == []

    @pytest.mark.parametrize(("files", "words"), [
        ({"app.py": "print(1)\n"}, "no Procfile at the archive root"),
        ({"sub/Procfile": "web: x\n"}, "no Procfile at the archive root (sub/Procfile is in "
                                        "a folder: zip the folder's contents, not the folder)"),
        ({"Procfile": "this is not a procfile\n"}, "Procfile line 1"),
        ({"Procfile": "# only a comment\n"}, "declares no process"),
    ], ids=["none", "not-at-root", "malformed", "empty"])
    def test_not_a_bundle_400_nothing_kept(self, api: Api, plane: ControlPlane,
                                           files: dict[str, str], words: str) -> None:
        """Refused at upload, not later on every server: the file is never kept."""
        sid = api.register("a")
        r = api.deploy("web", sid, make_zip(files))
        assert r.status_code == 400, r.text
        assert words in r.json()["message"]
        assert _artifact_rows(plane) == 0
        assert api.get("/applications").json()["total"] == 0
        assert list((plane.settings.data_dir / "artifacts" / "tmp").iterdir()) == []
        app_id = api.deploy("web", sid).json()["data"]["id"]
        r = api.patch(f"/applications/{app_id}",
                      files={"file": ("web.zip", make_zip(files), "application/zip")})
        assert r.status_code == 400 and words in r.json()["message"]
        assert _artifact_rows(plane) == 1  # the redeploy kept nothing either

    def test_too_large_413(self, api: Api, plane: ControlPlane, settings: Settings) -> None:
        sid = api.register("a")
        settings.max_artifact_bytes = 2048
        big = make_zip({"Procfile": "web: x\n", "rand.bin": bytes(range(256)).hex() * 40})
        assert len(big) > 2048
        r = api.deploy("web", sid, big)
        assert r.status_code == 413
        assert _artifact_rows(plane) == 0
        assert list((plane.settings.data_dir / "artifacts" / "tmp").iterdir()) == []

    def test_target_errors(self, api: Api) -> None:
        assert api.deploy("web", 999).status_code == 404
        sandbox_sid = api.in_env("Sandbox").register("sb")
        assert api.deploy("web", sandbox_sid).status_code == 404
        assert api.deploy("web", "abc").status_code == 400
        sid = api.register("a")
        assert api.deploy("web", sid).status_code == 202
        r = api.deploy("web", sid)
        assert r.status_code == 409
        assert "web" in r.json()["message"]

    def test_never_connected_server_is_refused(self, api: Api, plane: ControlPlane) -> None:
        """As ARM: "the target must be a running server". A server that connected once and is
        away takes the deployment (it converges on return)."""
        fresh = api.register("fresh", seen=False)
        r = api.deploy("web", fresh)
        assert r.status_code == 409
        assert "never connected" in r.json()["message"]
        assert api.get("/applications").json()["total"] == 0
        with plane.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Artifact)) == 0
        away = api.register("away")  # DISCONNECTED
        assert api.deploy("web", away).status_code == 202

    def test_server_inside_a_group_is_not_a_target(self, api: Api) -> None:
        sid = api.register("a")
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": [sid]}).json()["data"]["id"]
        r = api.deploy("web", sid)
        assert r.status_code == 409
        assert f"server group {gid}" in r.json()["message"]

    def test_bad_fields(self, api: Api) -> None:
        sid = api.register("a")
        assert api.deploy("../evil", sid).status_code == 400
        assert api.deploy("", sid).status_code == 400
        r = api.deploy("web", sid, configuration="{broken")
        assert r.status_code == 400 and "configuration" in r.json()["message"]
        r = api.deploy("web", sid, configuration='{"mule.agent.application.properties.service": 3}')
        assert r.status_code == 400
        r = api.post("/applications", data={"artifactName": "web", "targetId": str(sid)})
        assert r.status_code == 400
        r = api.post("/applications", json={"artifactName": "web", "targetId": sid})
        assert r.status_code == 400
        assert "multipart" in r.json()["message"]

    def test_deploy_to_group_makes_an_instance_per_server(self, api: Api) -> None:
        ids = [api.register(f"s{i}") for i in range(3)]
        gid = api.post("/serverGroups", json={"name": "G", "serverIds": ids}).json()["data"]["id"]
        app = api.deploy("web", gid).json()["data"]
        assert app["target"]["type"] == "SERVER_GROUP"
        assert [s["id"] for s in app["target"]["servers"]] == ids
        assert [i["serverId"] for i in app["serverArtifacts"]] == ids


class TestRead:
    def test_list_filters_and_paging(self, api: Api) -> None:
        a, b = api.register("a"), api.register("b")
        for name in ("one", "two", "three"):
            api.deploy(name, a)
        api.deploy("one", b)
        everything = api.get("/applications").json()
        assert everything["total"] == 4 and len(everything["data"]) == 4
        page = api.get("/applications", params={"limit": 2, "offset": 1}).json()
        assert page["total"] == 4
        assert [x["name"] for x in page["data"]] == ["two", "three"]
        assert api.get("/applications", params={"targetId": b}).json()["total"] == 1
        named = api.get("/applications", params={"artifactName": "one"}).json()["data"]
        assert sorted(x["target"]["id"] for x in named) == [a, b]
        assert api.get("/applications", params={"limit": 0}).status_code == 400
        assert api.in_env("Sandbox").get("/applications").json()["total"] == 0

    def test_sort_and_a_limit_above_the_cap(self, api: Api) -> None:
        """anypoint-cli always sends `sort`; a `limit` above the page cap is lowered to it."""
        a = api.register("a")
        for name in ("bravo", "alpha", "charlie"):
            api.deploy(name, a)
        def names(**params: object) -> list[str]:
            r = api.get("/applications", params=params)
            assert r.status_code == 200, r.text
            return [x["name"] for x in r.json()["data"]]
        assert names(sort="timeCreated") == ["bravo", "alpha", "charlie"]
        assert names(sort="name") == ["alpha", "bravo", "charlie"]
        assert names(sort="-name", limit=2) == ["charlie", "bravo"]
        assert names(limit=10**6, offset=0, sort="timeCreated") == ["bravo", "alpha", "charlie"]
        r = api.get("/applications", params={"sort": "color"})
        assert r.status_code == 400 and "sort" in r.json()["message"]

    def test_get_by_name_fails_so_clients_fall_back(self, api: Api) -> None:
        sid = api.register("a")
        api.deploy("web", sid)
        r = api.get("/applications/web")
        assert r.status_code == 400  # not an id: a JSON error, and ARM's CLI looks by name
        assert r.json()["message"]

    def test_other_env_404(self, api: Api) -> None:
        sid = api.register("a")
        app_id = api.deploy("web", sid).json()["data"]["id"]
        assert api.in_env("Sandbox").get(f"/applications/{app_id}").status_code == 404

    def test_artifact_download_is_identical(self, api: Api) -> None:
        sid = api.register("a")
        archive = make_zip({"Procfile": "web: python app.py\n", "app.py": "print('hi')\n" * 100})
        app_id = api.deploy("web", sid, archive).json()["data"]["id"]
        r = api.get(f"/applications/{app_id}/artifact")
        assert r.status_code == 200
        assert r.content == archive
        assert api.in_env("Sandbox").get(f"/applications/{app_id}/artifact").status_code == 404


class TestChange:
    def test_stop_and_start(self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("a")
        app_id = api.deploy("web", sid).json()["data"]["id"]
        r = api.patch(f"/applications/{app_id}", json={"desiredStatus": "STOPPED"})
        assert r.status_code == 200
        body = r.json()["data"]
        assert body["desiredStatus"] == "STOPPED"
        assert body["serverArtifacts"][0]["desiredStatus"] == "STOPPED"
        stopped = desired(plane, sid)
        assert stopped["applications"][0]["desiredStatus"] == "STOPPED"
        r = api.patch(f"/applications/{app_id}", json={"desiredStatus": "STARTED"})
        assert r.json()["data"]["desiredStatus"] == "STARTED"
        assert desired(plane, sid)["revision"] == stopped["revision"] + 1

    def test_bad_status_bodies(self, api: Api) -> None:
        sid = api.register("a")
        app_id = api.deploy("web", sid).json()["data"]["id"]
        for body in ({"desiredStatus": "RUNNING"}, {"desiredStatus": 5}, {"id": app_id},
                     [1, 2]):
            r = api.patch(f"/applications/{app_id}", json=body)
            assert r.status_code == 400, body
        # what ARM's clients send along (the object's id) is ignored
        r = api.patch(f"/applications/{app_id}", json={"id": app_id, "desiredStatus": "STOPPED"})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["desiredStatus"] == "STOPPED"
        r = api.patch(f"/applications/{app_id}", content=b"{oops",
                      headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert api.patch("/applications/424242", json={"desiredStatus": "STOPPED"}).status_code == 404
        assert api.get(f"/applications/{app_id}").json()["data"]["desiredStatus"] == "STOPPED"

    def test_redeploy_with_new_file(self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("a")
        app = api.deploy("web", sid).json()["data"]
        new = make_zip({"Procfile": "web: python -m http.server 9999\n"})
        r = api.patch(f"/applications/{app['id']}",
                      files={"file": ("web-2.zip", new, "application/zip")})
        assert r.status_code == 200, r.text
        assert r.headers["connection"] == "close"
        body = r.json()["data"]
        assert body["artifact"]["fileChecksum"] == hashlib.sha1(new).hexdigest()
        assert body["artifact"]["fileName"] == "web-2.zip"
        assert body["serverArtifacts"][0]["deploymentId"] == app["serverArtifacts"][0]["deploymentId"] + 1
        assert api.get(f"/applications/{app['id']}/artifact").content == new
        wanted = desired(plane, sid)["applications"][0]
        assert wanted["artifact"]["sha256"] == hashlib.sha256(new).hexdigest()

    def test_redeploy_without_file_same_artifact(self, api: Api) -> None:
        sid = api.register("a")
        app = api.deploy("web", sid).json()["data"]
        # ARM's CLI `restart` sends a multipart body with only an id part
        r = api.patch(f"/applications/{app['id']}", files={"id": (None, str(app["id"]))})
        assert r.status_code == 200, r.text
        body = r.json()["data"]
        assert body["artifact"]["fileChecksum"] == app["artifact"]["fileChecksum"]
        assert body["serverArtifacts"][0]["deploymentId"] == 2
        r = api.patch(f"/applications/{app['id']}")
        assert r.status_code == 200
        assert r.json()["data"]["serverArtifacts"][0]["deploymentId"] == 3

    def test_redeploy_with_configuration_and_bad_file(self, api: Api) -> None:
        sid = api.register("a")
        app = api.deploy("web", sid).json()["data"]
        r = api.patch(f"/applications/{app['id']}", files={"configuration": (None, PROPS)})
        assert r.status_code == 200
        props = r.json()["data"]["configuration"]["mule.agent.application.properties.service"]
        assert props["properties"]["http.port"] == "8081"
        r = api.patch(f"/applications/{app['id']}", files={"file": ("x.zip", b"nope", "x/y")})
        assert r.status_code == 400
        after = api.get(f"/applications/{app['id']}").json()["data"]
        assert after["artifact"]["fileChecksum"] == app["artifact"]["fileChecksum"]
        assert after["serverArtifacts"][0]["deploymentId"] == 2


class TestDelete:
    def test_204_always_and_other_env_untouched(self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("a")
        app_id = api.deploy("web", sid).json()["data"]["id"]
        assert api.in_env("Sandbox").delete(f"/applications/{app_id}").status_code == 204
        assert api.get(f"/applications/{app_id}").status_code == 200
        assert api.delete(f"/applications/{app_id}").status_code == 204
        assert api.get(f"/applications/{app_id}").status_code == 404
        assert api.delete(f"/applications/{app_id}").status_code == 204
        assert api.delete("/applications/123456").status_code == 204
        for odd in ("web", "-1", "1e9", "99999999999999999999", "%C3%A9"):
            assert api.delete(f"/applications/{odd}").status_code == 204, odd
        assert desired(plane, sid)["applications"] == []
