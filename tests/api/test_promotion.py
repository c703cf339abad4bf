"""Deploy and redeploy by reference (`applicationSource`), as MuleSoft's promote script does:
the artifact of an application in one environment goes to the next, shared by its checksum."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import func, select

from corral.controlplane import ControlPlane
from corral.db.models import Application, Artifact
from tests.api.conftest import Api, make_zip

PROPS = {"mule.agent.application.properties.service": {
    "applicationName": "ignored", "properties": {"api.id": "42"}}}


def _counts(plane: ControlPlane) -> tuple[int, int]:
    with plane.sessions() as s:
        return (s.scalar(select(func.count()).select_from(Artifact)) or 0,
                s.scalar(select(func.count()).select_from(Application)) or 0)


def _source(app_id: Any) -> dict[str, Any]:
    return {"source": "HYBRID", "id": app_id}


def _sandbox_app(api: Api, archive: bytes) -> dict[str, Any]:
    sandbox = api.in_env("Sandbox")
    r = sandbox.deploy("orders", sandbox.register("sb-1"), archive)
    assert r.status_code == 202, r.text
    return dict(r.json()["data"])


def test_promote_deploys_another_environments_artifact_without_copying_it(
        api: Api, plane: ControlPlane) -> None:
    archive = make_zip({"Procfile": "web: python -m http.server $PORT\n", "v": "1"})
    source = _sandbox_app(api, archive)
    target = api.register("prod-1")
    blobs = sorted(p.name for p in plane.settings.data_dir.rglob("*") if p.is_file())
    r = api.post("/applications", json={"applicationSource": _source(source["id"]),
                                         "targetId": target, "artifactName": "orders-prod",
                                         "configuration": PROPS})
    assert r.status_code == 202, r.text
    app = r.json()["data"]
    assert (app["name"], app["desiredStatus"], app["target"]["id"]) == \
        ("orders-prod", "STARTED", target)
    assert app["artifact"]["name"] == "orders-prod"
    assert app["artifact"]["fileChecksum"] == source["artifact"]["fileChecksum"]
    assert app["artifact"]["id"] != source["artifact"]["id"]
    # the same bytes, and no new file in the store
    assert api.get(f"/applications/{app['id']}/artifact").content == archive
    assert sorted(p.name for p in plane.settings.data_dir.rglob("*") if p.is_file()) == blobs
    history = api.get(f"/applications/{app['id']}/deployments").json()["data"]
    assert history[0]["properties"] == {"api.id": "42"}


def test_redeploy_by_reference_replaces_the_artifact(api: Api) -> None:
    old = make_zip({"Procfile": "web: python -m http.server $PORT\n", "v": "old"})
    new = make_zip({"Procfile": "web: python -m http.server $PORT\n", "v": "new"})
    source = _sandbox_app(api, new)
    target = api.register("prod-1")
    app = api.deploy("orders", target, old).json()["data"]
    r = api.patch(f"/applications/{app['id']}/artifact",
                  json={"applicationSource": _source(source["id"]), "configuration": PROPS})
    assert r.status_code == 200, r.text
    redeployed = r.json()["data"]
    assert redeployed["id"] == app["id"] and redeployed["name"] == "orders"
    assert redeployed["artifact"]["fileChecksum"] == source["artifact"]["fileChecksum"]
    assert api.get(f"/applications/{app['id']}/artifact").content == new
    numbers = [d["id"] for d in api.get(f"/applications/{app['id']}/deployments").json()["data"]]
    assert len(numbers) == 2
    # without configuration the properties stay
    again = api.patch(f"/applications/{app['id']}/artifact",
                      json={"applicationSource": _source(str(source["id"]))})
    assert again.status_code == 200, again.text
    history = api.get(f"/applications/{app['id']}/deployments").json()["data"]
    assert history[0]["properties"] == history[1]["properties"] == {"api.id": "42"}


def test_the_artifact_route_takes_a_file_too(api: Api) -> None:
    target = api.register("prod-1")
    app = api.deploy("orders", target).json()["data"]
    # larger than the small-body cap: the upload limit applies on this route too
    archive = make_zip({"Procfile": "web: python -m http.server $PORT\n",
                        "v": os.urandom(200_000).hex()})
    r = api.patch(f"/applications/{app['id']}/artifact",
                  files={"file": ("orders-2.zip", archive, "application/zip")})
    assert r.status_code == 200, r.text
    assert api.get(f"/applications/{app['id']}/artifact").content == archive
    empty = api.patch(f"/applications/{app['id']}/artifact", data={"configuration": "{}"},
                      files={"nothing": ("", b"", "text/plain")})
    assert empty.status_code == 400 and "file part" in empty.json()["message"]


def test_unknown_unreadable_or_malformed_sources_change_nothing(
        api: Api, plane: ControlPlane) -> None:
    source = _sandbox_app(api, make_zip())
    target = api.register("prod-1")
    app = api.deploy("orders", target).json()["data"]
    # a user limited to Production cannot take Sandbox's application
    r = api.client.post(f"/accounts/api/organizations/{api.org_id}/users",
                        headers={"Authorization": f"Bearer {api.token}"},
                        json={"username": "prod-op", "password": "longenough1",
                              "role": "operator", "environments": [api.env_id]})
    assert r.status_code == 201, r.text
    token = api.client.post("/accounts/login", json={
        "username": "prod-op", "password": "longenough1"}).json()["access_token"]
    limited = Api(api.client, api.plane, token, api.org_id, api.env_id, api.envs)
    before = _counts(plane)
    deploy = {"targetId": target, "artifactName": "promoted"}
    sources: list[tuple[Api, Any, int]] = [
        (api, _source(999999), 404),
        (limited, _source(source["id"]), 404),
        (api, {"source": "EXCHANGE", "id": source["id"]}, 400),
        (api, _source("x1"), 400),
        (api, _source(True), 400),
        (api, "HYBRID", 400),
    ]
    for who, given, status in sources:  # the same refusal from both calls
        r = who.post("/applications", json={**deploy, "applicationSource": given})
        assert r.status_code == status and r.json()["message"], (given, r.text)
        r = who.patch(f"/applications/{app['id']}/artifact", json={"applicationSource": given})
        assert r.status_code == status and r.json()["message"], (given, r.text)
    good = _source(source["id"])
    for body, status in [
        ({"targetId": target, "applicationSource": good}, 400),
        ({**deploy, "targetId": 999999, "applicationSource": good}, 404),
        ({**deploy, "artifactName": "orders", "applicationSource": good}, 409),
        ({**deploy, "configuration": "{", "applicationSource": good}, 400),
    ]:
        r = api.post("/applications", json=body)
        assert r.status_code == status and r.json()["message"], (body, r.text)
    r = api.patch(f"/applications/{app['id']}/artifact", json={"configuration": {}})
    assert r.status_code == 400 and "applicationSource" in r.json()["message"]
    assert _counts(plane) == before
    assert api.post("/applications", content=b"{not json",
                    headers={"Content-Type": "application/json"}).status_code == 400
    # another environment's application is not redeployed from here
    r = api.in_env("Sandbox").patch(f"/applications/{app['id']}/artifact",
                                    json={"applicationSource": _source(source["id"])})
    assert r.status_code == 404
    assert len(api.get(f"/applications/{app['id']}/deployments").json()["data"]) == 1
