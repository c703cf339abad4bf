"""Secure properties (ADR 0011): written with a deploy or redeploy, delivered in the desired
state of the servers that run the application, never answered back, sealed in every row."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, text

from corral.app import create_app
from corral.config import Settings
from corral.controlplane import CannotStart, ControlPlane, rotate_keys
from corral.db.models import Environment, Replica, now_ms
from corral.domain import secure
from corral.domain.configuration import MAX_SECURE_PROPERTIES, MAX_VALUE_CHARS
from corral.errors import Conflict
from corral.sealing import SecretBox
from tests.api.conftest import ADMIN_PASSWORD, Api, desired, make_zip

SERVICE = "mule.agent.application.properties.service"
SECRET = "s3cr3t-\u00e9-$(reboot)-'quoted'"
OTHER = "another-secret-value-7f3a"


def _conf(properties: dict[str, Any] | None = None,
          secure: dict[str, Any] | None = None) -> str:
    service: dict[str, Any] = {"applicationName": "shop", "properties": properties or {}}
    if secure is not None:
        service["secureProperties"] = secure
    return json.dumps({SERVICE: service})


def _deployed(api: Api, secure: dict[str, Any], **props: str) -> tuple[int, int]:
    server = api.register("web-1")
    r = api.deploy("shop", server, configuration=_conf(props, secure))
    assert r.status_code == 202, r.text
    return server, int(r.json()["data"]["id"])


def _redeploy(api: Api, app_id: int, configuration: str | None = None, *,
              file: bytes | None = None) -> Any:
    data = {"configuration": configuration} if configuration is not None else {}
    files = {"file": ("shop.zip", file, "application/zip")} if file else {"x": (None, "")}
    return api.patch(f"/applications/{app_id}", data=data, files=files)


def _sent(plane: ControlPlane, server: int) -> dict[str, str]:
    [app] = desired(plane, server)["applications"]
    return dict(app["secureProperties"])


def _everything_readable(api: Api, app_id: int) -> str:
    """Every answer an admin can read about the application and its environment."""
    org = f"/accounts/api/organizations/{api.org_id}"
    answers = [api.get(p).text for p in (
        "/applications", f"/applications/{app_id}", f"/applications/{app_id}/deployments",
        "/servers", "/serverGroups", "/targets")]
    answers += [api.client.get(p, headers=api.headers).text for p in (
        "/armui/api/v1/applications", "/armui/api/v1/servers", f"{org}/auditEvents")]
    answers += [api.client.get(p, headers={"Cookie": f"corral_session={api.token}"}).text
                for p in ("/apps", f"/apps/{app_id}", "/audit")]
    return "\n".join(answers)


def test_a_value_reaches_the_servers_and_no_answer(api: Api, plane: ControlPlane) -> None:
    server, app_id = _deployed(api, {"db.password": SECRET}, greeting="hello")
    assert _sent(plane, server) == {"db.password": SECRET}
    shown = api.get(f"/applications/{app_id}").json()["data"]
    service = shown["configuration"][SERVICE]
    assert service["properties"] == {"greeting": "hello"}
    assert service["secureProperties"] == {"db.password": "********"}
    [first] = api.get(f"/applications/{app_id}/deployments").json()["data"]
    assert first["secureProperties"] == {"db.password": "********"}
    assert first["note"] == "secure properties changed: db.password"
    readable = _everything_readable(api, app_id)
    assert "db.password" in readable and SECRET not in readable
    page = api.client.get(f"/apps/{app_id}", headers={"Cookie": f"corral_session={api.token}"})
    assert page.status_code == 200 and "db.password" in page.text and "********" in page.text
    # sealed in every row that holds it: no row of the database holds the value
    with plane.engine.connect() as db:
        for table in ("applications", "deployments", "audit_events"):
            rows = db.execute(text(f"SELECT * FROM {table}")).all()
            assert SECRET not in repr(rows) and SECRET.encode() not in repr(rows).encode()


def test_a_redeploy_keeps_replaces_and_removes_them(api: Api, plane: ControlPlane) -> None:
    server, app_id = _deployed(api, {"db.password": SECRET, "api.key": OTHER})
    r = _redeploy(api, app_id, file=make_zip({"Procfile": "web: sleep 1\n", "v": "2"}))
    assert r.status_code == 200, r.text  # no configuration: every secret kept
    assert _sent(plane, server) == {"db.password": SECRET, "api.key": OTHER}
    # a configuration names one: that one replaced, the other kept; plain ones as given
    r = _redeploy(api, app_id, _conf({"greeting": "hi"}, {"db.password": "rotated"}))
    assert r.status_code == 200, r.text
    assert _sent(plane, server) == {"db.password": "rotated", "api.key": OTHER}
    # null removes one; the answer sent back whole (masked values) keeps the rest
    shown = r.json()["data"]["configuration"]
    shown[SERVICE]["secureProperties"]["api.key"] = None
    assert _redeploy(api, app_id, json.dumps(shown)).status_code == 200
    assert _sent(plane, server) == {"db.password": "rotated"}
    history = api.get(f"/applications/{app_id}/deployments").json()["data"]
    assert [d["note"] for d in history] == [
        "secure properties changed: api.key", "secure properties changed: db.password", "",
        "secure properties changed: api.key, db.password"]
    # the same value again is no change
    assert _redeploy(api, app_id, _conf({}, {"db.password": "rotated"})).status_code == 200
    assert api.get(f"/applications/{app_id}/deployments").json()["data"][0]["note"] == ""


def test_a_rollback_brings_back_the_values_of_its_deployment(api: Api,
                                                             plane: ControlPlane) -> None:
    server, app_id = _deployed(api, {"db.password": SECRET})
    first = api.get(f"/applications/{app_id}/deployments").json()["data"][0]["id"]
    assert _redeploy(api, app_id, _conf({}, {"db.password": OTHER})).status_code == 200
    assert _sent(plane, server) == {"db.password": OTHER}
    r = api.post(f"/applications/{app_id}/rollback", json={"deploymentId": first})
    assert r.status_code == 200, r.text
    assert _sent(plane, server) == {"db.password": SECRET}
    newest = api.get(f"/applications/{app_id}/deployments").json()["data"][0]
    assert newest["kind"] == "rollback" and newest["note"] == \
        "secure properties changed: db.password"


def test_only_the_servers_that_run_it_are_sent_them(api: Api, plane: ControlPlane) -> None:
    server, _ = _deployed(api, {"db.password": SECRET})
    elsewhere = api.register("web-2")
    assert _sent(plane, server) == {"db.password": SECRET}
    assert SECRET not in json.dumps(desired(plane, elsewhere))


@pytest.mark.parametrize(("secure", "why"), [
    ({"db.password": 42}, "must be a string"),
    ({"db.password": {"nested": "x"}}, "must be a string"),
    ({"db password": "x"}, "secure property key"),
    ({"db.password": "x" * (MAX_VALUE_CHARS + 1)}, "longer than"),
    ({f"k{i}": "x" for i in range(MAX_SECURE_PROPERTIES + 1)}, "at most"),
    ({"greeting": "x"}, "both a property and a secure property"),
    ({"db.password": "a\x00b"}, "NUL"),
    ({"db.password": "********"}, "not the mask"),
    ("not an object", "must be an object"),
])
def test_bad_secure_properties_are_refused_and_nothing_is_stored(
        api: Api, secure: Any, why: str) -> None:
    server = api.register("web-1")
    before = api.get("/applications").json()["total"]
    r = api.deploy("shop", server, configuration=_conf({"greeting": "hi"}, secure))
    assert r.status_code == 400, r.text
    assert why in r.json()["message"]
    assert "x" * 100 not in r.text and "a\x00b" not in r.text
    assert api.get("/applications").json()["total"] == before


def test_a_plain_property_cannot_take_a_kept_secure_ones_name(api: Api) -> None:
    _, app_id = _deployed(api, {"db.password": SECRET})
    r = _redeploy(api, app_id, _conf({"db.password": "plain"}))
    assert r.status_code == 400 and "both a property and a secure property" in r.text
    r = _redeploy(api, app_id, _conf({"db.password": "plain"}, {"db.password": None}))
    assert r.status_code == 200, r.text  # removed as a secret, given as a plain one


def test_viewers_cannot_set_them_and_promotion_does_not_copy_them(
        api: Api, plane: ControlPlane) -> None:
    users = f"/accounts/api/organizations/{api.org_id}/users"
    admin = {"Authorization": f"Bearer {api.token}"}
    r = api.client.post(users, headers=admin, json={
        "username": "vera", "password": "vera-password-1", "role": "viewer"})
    assert r.status_code == 201, r.text
    token = api.client.post("/accounts/login", json={
        "username": "vera", "password": "vera-password-1"}).json()["access_token"]
    server, app_id = _deployed(api, {"db.password": SECRET})
    viewer = {**api.headers, "Authorization": f"Bearer {token}"}
    r = api.client.patch(f"/hybrid/api/v1/applications/{app_id}", headers=viewer,
                         data={"configuration": _conf({}, {"db.password": "mine"})},
                         files={"x": (None, "")})
    assert r.status_code == 403
    assert _sent(plane, server) == {"db.password": SECRET}
    # deployed by reference into another environment: the artifact, never the secrets
    sandbox = api.in_env("Sandbox")
    r = sandbox.post("/applications", json={
        "applicationSource": {"source": "HYBRID", "id": app_id},
        "targetId": sandbox.register("sb-1"), "artifactName": "shop-copy"})
    assert r.status_code == 202, r.text
    assert "secureProperties" not in json.dumps(r.json()["data"]["configuration"])


def _sealed_texts(plane: ControlPlane) -> list[str]:
    from corral.db.models import Application, Deployment
    from corral.domain.configuration import secure_properties_of

    with plane.sessions() as s:
        rows = [*s.scalars(select(Application)), *s.scalars(select(Deployment))]
        return [v for r in rows for v in secure_properties_of(r.configuration).values()]


def test_rotating_the_key_seals_every_value_again(api: Api, plane: ControlPlane,
                                                  settings: Settings) -> None:
    server, _ = _deployed(api, {"db.password": SECRET})
    before = _sealed_texts(plane)
    assert len(before) == 2  # the application and its first deployment
    assert rotate_keys(settings).rows == 2
    after = _sealed_texts(plane)
    assert len(after) == 2 and not set(after) & set(before)
    for sealed in after:  # the old key opens none of them
        with pytest.raises(ValueError):
            plane.secrets.open(sealed)
    assert len(SecretBox.parse((settings.data_dir / "pki" / SecretBox.FILE).read_bytes())) == 1
    restarted = ControlPlane.open(settings)
    try:
        assert _sent(restarted, server) == {"db.password": SECRET}
    finally:
        restarted.close()


def test_a_new_master_key_seals_the_replicas_keys_again(settings: Settings) -> None:
    first = settings.model_copy(update={"master_key": SecretStr("first-master-key-" + "x" * 32)})
    plane = ControlPlane.open(first)
    plane.bootstrap()
    try:
        with TestClient(create_app(plane), raise_server_exceptions=False) as client:
            token = client.post("/accounts/login", json={
                "username": "admin", "password": ADMIN_PASSWORD}).json()["access_token"]
            with plane.sessions() as s:
                envs = {e.name: e.id for e in s.scalars(select(Environment))}
                org = next(iter(s.scalars(select(Environment)))).organization_id
            api = Api(client, plane, token, org, envs["Production"], envs)
            server, _ = _deployed(api, {"db.password": SECRET})
    finally:
        plane.close()
    second = "second-master-key-" + "y" * 32
    with pytest.raises(Conflict):  # not while a control plane may run, unless forced
        with plane.sessions.begin() as s:
            s.add(Replica(id="r1", gateway_url="wss://x", started_at=now_ms(), seen_at=now_ms()))
        rotate_keys(first, second)
    assert rotate_keys(first, second, force=True).master_key_changed
    with pytest.raises(CannotStart, match="master key does not open"):
        ControlPlane.open(first)
    after = ControlPlane.open(first.model_copy(update={"master_key": SecretStr(second)}))
    try:
        assert _sent(after, server) == {"db.password": SECRET}
    finally:
        after.close()


def test_values_an_older_version_kept_in_clear_are_sealed_at_start(
        api: Api, plane: ControlPlane, settings: Settings) -> None:
    """Before secure properties were sealed, a `secureProperties` object was kept as sent."""
    from corral.db.models import Application

    server, app_id = _deployed(api, {})
    with plane.sessions.begin() as s:
        row = s.get_one(Application, app_id)
        row.configuration = json.loads(_conf({"greeting": "hi"}, {"db.password": SECRET}))
    restarted = ControlPlane.open(settings)
    try:
        with plane.engine.connect() as db:
            assert SECRET not in repr(db.execute(text("SELECT configuration FROM applications"))
                                      .all())
        assert _sent(restarted, server) == {"db.password": SECRET}
        with restarted.sessions.begin() as s:  # what the next start finds: nothing
            assert secure.seal_stored(s, restarted.secrets) == 0
    finally:
        restarted.close()


def test_digests_tell_a_changed_value_from_the_stored_one_and_only_to_operators(
        api: Api) -> None:
    """What `corral plan` compares secrets with: a salted HMAC-SHA256, a new salt each call."""
    import hashlib
    import hmac

    _, app_id = _deployed(api, {"db.password": SECRET})
    first = api.get(f"/applications/{app_id}/secureProperties").json()["data"]
    again = api.get(f"/applications/{app_id}/secureProperties").json()["data"]
    d = first["db.password"]
    assert d["salt"] != again["db.password"]["salt"] and SECRET not in json.dumps(first)
    assert d["hmacSha256"] == hmac.new(d["salt"].encode(), SECRET.encode(),
                                       hashlib.sha256).hexdigest()
    users = f"/accounts/api/organizations/{api.org_id}/users"
    api.client.post(users, headers={"Authorization": f"Bearer {api.token}"}, json={
        "username": "vic", "password": "vic-password-1", "role": "viewer"})
    token = api.client.post("/accounts/login", json={
        "username": "vic", "password": "vic-password-1"}).json()["access_token"]
    r = api.client.get(f"/hybrid/api/v1/applications/{app_id}/secureProperties",
                       headers={**api.headers, "Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    anonymous = api.client.get(f"/hybrid/api/v1/applications/{app_id}/secureProperties")
    assert anonymous.status_code == 401 and SECRET not in anonymous.text
    assert api.get("/applications/not-a-number/secureProperties").status_code == 400
    assert api.in_env("Sandbox").get(f"/applications/{app_id}/secureProperties").status_code \
        == 404
