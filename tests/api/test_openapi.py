"""The OpenAPI document describes ARM's paths and field names."""

from __future__ import annotations

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


def test_swagger_ui(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert "swagger" in r.text.lower()


def test_unknown_route_is_json(client: TestClient) -> None:
    r = client.get("/hybrid/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["status"] == 404
