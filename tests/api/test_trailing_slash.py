"""One trailing slash names the same resource, for every route and method, with no redirect
(ARM's behaviour; a curl without `-L` reads an empty 307 as "nothing there")."""

from __future__ import annotations

import re

from tests.api.conftest import Api

SKIPPED = ("/accounts/api/logout", "/accounts/logout")  # would end the test's own session


def test_every_route_answers_the_same_with_one_trailing_slash(api: Api) -> None:
    server = api.register("web-1")
    app_id = api.deploy("web", server).json()["data"]["id"]
    compared = 0
    for template, operations in api.client.get("/openapi.json").json()["paths"].items():
        if template.startswith(SKIPPED):
            continue
        path = re.sub(r"\{[^}]+\}", "999999", template)
        for method in sorted(m.upper() for m in operations):
            # a write may answer differently the second time (a create, then a 409): the
            # slashed form goes first, and must reach the same route as the plain one
            slashed = api.client.request(method, path + "/", headers=api.headers)
            plain = api.client.request(method, path, headers=api.headers)
            if method == "GET":
                assert slashed.status_code == plain.status_code, (path, slashed.text)
            for kind in (307, 308, 405, 500):
                assert (slashed.status_code == kind) == (plain.status_code == kind), \
                    (method, path, slashed.text, plain.text)
            if 404 in (slashed.status_code, plain.status_code):
                assert slashed.json() == plain.json(), (method, path)
            compared += 1
    assert compared >= 80  # every operation of the document but the sign-out
    # on real objects, reads and writes alike
    for method, path, status in [("GET", "/hybrid/api/v1/servers/", 200),
                                 ("GET", f"/hybrid/api/v1/servers/{server}/", 200),
                                 ("GET", f"/hybrid/api/v1/applications/{app_id}/", 200),
                                 ("PATCH", f"/hybrid/api/v1/applications/{app_id}/", 200),
                                 ("GET", "/accounts/api/me/", 200),
                                 ("DELETE", f"/hybrid/api/v1/applications/{app_id}/", 204)]:
        body = {"json": {"desiredStatus": "STOPPED"}} if method == "PATCH" else {}
        r = api.client.request(method, path, headers=api.headers, **body)
        assert r.status_code == status, (method, path, r.text)
    assert api.get(f"/applications/{app_id}").status_code == 404
    listed = api.client.get("/hybrid/api/v1/servers/", headers=api.headers).json()
    assert [s["id"] for s in listed["data"]] == [server]
