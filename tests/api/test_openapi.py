"""The OpenAPI document describes ARM's paths and field names."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


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
