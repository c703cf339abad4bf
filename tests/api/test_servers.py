"""Registration tokens, registration by CSR, and the servers resource."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update

from corral.controlplane import ControlPlane
from corral.db.models import RegistrationToken, RevokedCertificate, Server
from corral.db.session import transaction
from corral.domain import registration
from corral.domain.accounts import token_digest
from corral.errors import Conflict
from tests.api.conftest import Api
from tests.support import make_csr


def _register(api: Api, token: str, name: str = "srv", csr: str | None = None, **extra: object):
    body = {"muleVersion": "4.4.0", "gatewayVersion": "1.0", "muleLabel": name,
            "signatureRequest": csr if csr is not None else make_csr(), **extra}
    return api.client.post(
        "/hybrid/api/v1/servers", headers={"Authorization": f"Bearer {token}"}, json=body
    )


class TestRegistrationToken:
    def test_stable_until_rotated(self, api: Api, plane: ControlPlane) -> None:
        first = api.registration_token()
        assert len(first) >= 32  # ≥ 128 random bits
        assert api.registration_token() == first
        rotated = api.post("/servers/registrationToken").json()["data"]
        assert rotated != first
        assert api.registration_token() == rotated
        assert _register(api, first).status_code == 401
        assert _register(api, rotated).status_code == 200
        with plane.sessions() as s:
            sealed = [t.sealed_token for t in s.scalars(select(RegistrationToken))]
        assert all(rotated not in v and first not in v for v in sealed)

    def test_per_environment(self, api: Api) -> None:
        prod = api.registration_token()
        sandbox = api.in_env("Sandbox").registration_token()
        assert prod != sandbox
        server_id = _register(api, sandbox, "sb-1").json()["serverId"]
        assert api.in_env("Sandbox").get(f"/servers/{server_id}").status_code == 200
        assert api.get(f"/servers/{server_id}").status_code == 404

    def test_expired_token_refused_and_replaced(self, api: Api, plane: ControlPlane) -> None:
        token = api.registration_token()
        with plane.sessions.begin() as s:
            s.execute(update(RegistrationToken).values(expires_at=1))
        r = _register(api, token)
        assert r.status_code == 401
        assert "expired" in r.json()["message"]
        assert api.registration_token() != token

    def test_user_token_is_not_a_registration_token(self, api: Api) -> None:
        assert _register(api, api.token).status_code == 401
        r = api.client.post("/hybrid/api/v1/servers", json={"muleLabel": "x",
                                                            "signatureRequest": make_csr()})
        assert r.status_code == 401


class TestRegistration:
    def test_signed_certificate_names_server(self, api: Api, plane: ControlPlane) -> None:
        r = _register(api, api.registration_token(), "alpha", agentVersion="0.1.0")
        assert r.status_code == 200, r.text
        body = r.json()
        cert = x509.load_pem_x509_certificate(body["certificate"].encode())
        ca = x509.load_pem_x509_certificate(body["caCertificate"].encode())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == str(body["serverId"])
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == api.org_id
        assert (cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
                == api.env_id)
        assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        # ARM's form; the agents registered by the end-to-end tests connect there
        assert body["environmentUrls"]["mcmWebsocketUrl"] == "wss://127.0.0.1:8443/mule"
        server = api.get(f"/servers/{body['serverId']}").json()["data"]
        assert server["name"] == "alpha"
        assert server["status"] == "CREATED"  # registered, never connected
        assert server["type"] == "SERVER"
        assert server["muleVersion"] == "4.4.0"
        assert server["certificateExpirationDate"] > server["timeCreated"]
        assert "serverGroupId" not in server and "clusterId" not in server

    def test_rsa_2048_accepted(self, api: Api) -> None:
        assert _register(api, api.registration_token(), csr=make_csr("rsa2048")).status_code == 200

    def test_single_line_csr_as_in_arm_docs(self, api: Api) -> None:
        pem = make_csr()
        flat = pem.replace("\n", "")
        assert _register(api, api.registration_token(), csr=flat).status_code == 200

    def test_weak_or_unknown_keys_refused(self, api: Api) -> None:
        token = api.registration_token()
        for kind, words in (("rsa1024", "2048"), ("ec384", "P-256")):
            r = _register(api, token, f"weak-{kind}", csr=make_csr(kind))
            assert r.status_code == 400, kind
            assert words in r.json()["message"]

    def test_garbage_csr_400(self, api: Api) -> None:
        token = api.registration_token()
        for bad in ("hello", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"):
            r = _register(api, token, csr=bad)
            assert r.status_code == 400
            assert "signatureRequest" in r.json()["message"]
        assert api.get("/servers").json()["total"] == 0

    def test_tampered_csr_signature_400(self, api: Api) -> None:
        der = x509.load_pem_x509_csr(make_csr().encode()).public_bytes(Encoding.DER)
        tampered = bytearray(der)
        tampered[-5] ^= 0xFF  # inside the signature
        body = base64.b64encode(bytes(tampered)).decode()
        bad = "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(
            body[i:i + 64] for i in range(0, len(body), 64)) + "\n-----END CERTIFICATE REQUEST-----\n"
        r = _register(api, api.registration_token(), csr=bad)
        assert r.status_code == 400

    def test_name_taken_409_and_nothing_written(self, api: Api) -> None:
        token = api.registration_token()
        assert _register(api, token, "same").status_code == 200
        r = _register(api, token, "same")
        assert r.status_code == 409
        assert "same" in r.json()["message"]
        assert api.get("/servers").json()["total"] == 1

    def test_same_name_in_a_race_409_and_one_use_counted(self, api: Api,
                                                         plane: ControlPlane) -> None:
        """Two registrations of one name admitted together (both read the name free): the
        second write is refused by the unique name, as a Conflict, and its token use with it."""
        token = api.registration_token()
        with transaction(plane.readers) as s:
            first, second = (registration.admit(s, token=token, name="twin",
                                                csr_pem=make_csr()) for _ in range(2))

        def write(admission: registration.Admission) -> None:
            with transaction(plane.sessions) as s:
                registration.register_server(s, plane.ca, admission, mule_version="",
                                             gateway_version="", agent_version="x",
                                             certificate_seconds=86400)
        write(first)
        with pytest.raises(Conflict, match="twin"):
            write(second)
        with plane.sessions() as s:
            assert s.scalars(select(Server.name).where(Server.name == "twin")).all() == ["twin"]
            uses = s.scalar(select(RegistrationToken.uses).where(
                RegistrationToken.token_hash == token_digest(token)))
        assert uses == 1

    def test_missing_label_400(self, api: Api) -> None:
        r = api.client.post("/hybrid/api/v1/servers",
                            headers={"Authorization": f"Bearer {api.registration_token()}"},
                            json={"signatureRequest": make_csr()})
        assert r.status_code == 400
        assert "muleLabel" in r.json()["message"]


class TestServers:
    def test_list_get_rename(self, api: Api) -> None:
        a, b = api.register("a"), api.register("b")
        body = api.get("/servers").json()
        assert body["total"] == 2
        assert [s["id"] for s in body["data"]] == [a, b]
        assert api.get("/servers", params={"limit": 1, "offset": 1}).json()["data"][0]["id"] == b
        r = api.patch(f"/servers/{a}", json={"name": "renamed"})
        assert r.status_code == 200
        assert r.json()["data"]["name"] == "renamed"
        assert api.patch(f"/servers/{a}", json={"name": "b"}).status_code == 409
        assert api.patch(f"/servers/{a}", json={"name": ""}).status_code == 400
        assert api.patch(f"/servers/{a}", json={"name": 5}).status_code == 400
        # fields sent along (ARM's clients send the id) are ignored
        r = api.patch(f"/servers/{a}", json={"id": a, "name": "x", "serverType": "MULE"})
        assert (r.status_code, r.json()["data"]["name"]) == (200, "x")

    def test_unknown_and_non_numeric_ids(self, api: Api) -> None:
        assert api.get("/servers/999").status_code == 404
        r = api.get("/servers/abc")
        assert r.status_code == 400
        assert r.json()["status"] == 400

    def test_other_environment_is_404_and_untouched(self, api: Api) -> None:
        sid = api.register("prod-only")
        sandbox = api.in_env("Sandbox")
        assert sandbox.get(f"/servers/{sid}").status_code == 404
        assert sandbox.patch(f"/servers/{sid}", json={"name": "stolen"}).status_code == 404
        assert sandbox.delete(f"/servers/{sid}").status_code == 404
        assert api.get(f"/servers/{sid}").json()["data"]["name"] == "prod-only"

    def test_delete_revokes_certificate(self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("doomed")
        with plane.sessions() as s:
            serial = s.get_one(Server, sid).certificate_serial
        assert api.delete(f"/servers/{sid}").status_code == 204
        assert api.get(f"/servers/{sid}").status_code == 404
        with plane.sessions() as s:
            revoked = s.get(RevokedCertificate, serial)
        assert revoked is not None and revoked.server_id == sid
        assert api.delete(f"/servers/{sid}").status_code == 404

    def test_delete_removes_its_applications(self, api: Api) -> None:
        sid = api.register("with-app")
        app_id = api.deploy("app1", sid).json()["data"]["id"]
        assert api.delete(f"/servers/{sid}").status_code == 204
        assert api.get(f"/applications/{app_id}").status_code == 404
