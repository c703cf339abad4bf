"""The OpenAPI document describes ARM's paths and field names."""

from __future__ import annotations

import re
from typing import Any, get_args

from fastapi.testclient import TestClient
from pydantic import BaseModel

from corral.api import schemas
from tests.api.conftest import Api


def test_openapi_has_arm_paths_and_fields(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/accounts/login",
        "/accounts/api/v2/oauth2/token",
        "/hybrid/api/v1/servers",
        "/hybrid/api/v1/servers/registrationToken",
        "/hybrid/api/v1/serverGroups/{group_id}/servers/{server_id}",
        "/hybrid/api/v1/clusters/{cluster_id}/servers",
        "/hybrid/api/v1/applications",
        "/hybrid/api/v1/applications/{app_id}/artifact",
    ):
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    app_fields = schemas["ApplicationOut"]["properties"]
    for field in ("desiredStatus", "lastReportedStatus", "serverArtifacts", "artifact", "target"):
        assert field in app_fields
    assert "fileChecksum" in schemas["ArtifactOut"]["properties"]
    deploy = paths["/hybrid/api/v1/applications"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in deploy


def test_swagger_ui_works_offline(client: TestClient) -> None:
    """Swagger UI's page names no other host: its script, style and icon come from the control
    plane itself (many hybrid networks have no way out), and they are there."""
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    assert not re.findall(r"(?:https?:)?//[a-z0-9.-]+", r.text), "an external URL in /docs"
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', r.text)
    assert len(assets) == 3, r.text
    for asset in assets:
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 500, asset
    bundle = next(a for a in assets if a.endswith(".js"))
    assert "SwaggerUIBundle" in client.get(bundle).text
    assert client.get("/redoc").status_code == 404
    # every body model the document names is in it (handlers that read bodies themselves)
    document = client.get("/openapi.json")
    known = document.json()["components"]["schemas"]
    for ref in set(re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', document.text)):
        assert ref in known, ref


def test_unknown_route_is_json(client: TestClient) -> None:
    r = client.get("/hybrid/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["status"] == 404


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's type names: itself, in a list, in an optional or in a union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _model_for(candidates: list[type[BaseModel]], value: dict[str, Any]) -> type[BaseModel]:
    """One model, or the member of a union whose `type` names the value's (ARM's targets)."""
    for model in candidates:
        kind = model.model_fields.get("type")
        if kind is not None and value.get("type") in get_args(kind.annotation):
            return model
    return candidates[0]


def _undocumented(item: dict[str, Any], model: type[BaseModel], where: str) -> list[str]:
    """Fields of an answer that its model (and so the OpenAPI document) does not name, nested
    models included; the model must also accept the answer as it is."""
    model.model_validate(item)
    found = [f"{where}.{key}" for key in item if key not in model.model_fields]
    for name, info in model.model_fields.items():
        candidates, value = _models_in(info.annotation), item.get(name)
        if not candidates or value is None:
            continue
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, dict):
                found += _undocumented(one, _model_for(candidates, one), f"{where}.{name}")
    return found


def test_every_answer_is_what_openapi_documents(api: Api) -> None:
    """Answers skip validation on the way out (they are rendered once, as ARM's clients read
    them), so the `*Out` models exist for the OpenAPI document alone. Here every kind of
    object, as the API renders it, must validate against its model and carry no field the
    model does not name: the document cannot drift from the answers."""
    web_1, web_2, node = api.register("web-1"), api.register("web-2"), api.register("node")
    group = api.post("/serverGroups", json={"name": "web", "serverIds": [web_1, web_2]})
    cluster = api.post("/clusters", json={"name": "c", "multicastEnabled": False, "servers": [
        {"serverId": node, "serverIp": "10.0.0.3"}]})
    app = api.deploy("shop", group.json()["data"]["id"]).json()["data"]
    api.patch(f"/applications/{app['id']}", json={"desiredStatus": "STOPPED"})
    answers: list[tuple[str, type[BaseModel], Any]] = [
        ("servers", schemas.ServerOut, api.get("/servers").json()["data"]),
        ("server", schemas.ServerOut, [api.get(f"/servers/{web_1}").json()["data"]]),
        ("serverGroups", schemas.ServerGroupOut, api.get("/serverGroups").json()["data"]),
        ("serverGroup", schemas.ServerGroupOut, [group.json()["data"]]),
        ("clusters", schemas.ClusterOut, api.get("/clusters").json()["data"]),
        ("cluster", schemas.ClusterOut, [cluster.json()["data"]]),
        ("applications", schemas.ApplicationOut, api.get("/applications").json()["data"]),
        ("application", schemas.ApplicationOut,
         [api.get(f"/applications/{app['id']}").json()["data"]]),
        ("deployments", schemas.DeploymentOut,
         api.get(f"/applications/{app['id']}/deployments").json()["data"]),
    ]
    events = api.client.get(f"/accounts/api/organizations/{api.org_id}/auditEvents",
                            headers={"Authorization": f"Bearer {api.token}"})
    answers.append(("auditEvents", schemas.AuditEventOut, events.json()["data"]))
    users = api.client.get(f"/accounts/api/organizations/{api.org_id}/users",
                           headers={"Authorization": f"Bearer {api.token}"})
    answers.append(("users", schemas.UserOut, users.json()["data"]))
    undocumented: list[str] = []
    for where, model, items in answers:
        assert items, where
        for item in items:
            undocumented += _undocumented(item, model, where)
    assert sorted(set(undocumented)) == []
