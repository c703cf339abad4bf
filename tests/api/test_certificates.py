"""Renewal, re-registration and CA rotation through the API and the domain: who may, with
what, and what a refused attempt leaves behind (nothing)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.models import RevokedCertificate, Server
from corral.db.session import transaction
from corral.domain import agents, certificates
from corral.errors import Forbidden, InvalidInput
from corral.pki.authority import CertificateAuthority
from tests.api.conftest import Api, desired
from tests.support import make_csr


class Registered:
    """A server registered with a key this test holds, as an agent would."""

    def __init__(self, api: Api, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        csr = _csr(self.key)
        r = api.client.post("/hybrid/api/v1/servers",
                            headers={"Authorization": f"Bearer {api.registration_token()}"},
                            json={"muleLabel": name, "signatureRequest": csr})
        assert r.status_code == 200, r.text
        self.id = int(r.json()["serverId"])
        self.certificate = r.json()["certificate"]

    @property
    def serial(self) -> str:
        return format(x509.load_pem_x509_certificate(self.certificate.encode()).serial_number, "x")

    def body(self, proving_key: ec.EllipticCurvePrivateKey | None = None,
             certificate: str | None = None) -> dict[str, Any]:
        new = ec.generate_private_key(ec.SECP256R1())
        csr = _csr(new)
        proof = (proving_key or self.key).sign(csr.encode(), ec.ECDSA(hashes.SHA256()))
        return {"signatureRequest": csr, "certificate": certificate or self.certificate,
                "proof": base64.b64encode(proof).decode()}


def _csr(key: ec.EllipticCurvePrivateKey) -> str:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "agent")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())


def _reregister(api: Api, server_id: int, body: dict[str, Any], token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return api.client.post(f"/hybrid/api/v1/servers/{server_id}/reregistration",
                           headers=headers, json=body)


def _serial(plane: ControlPlane, server_id: int) -> str:
    with transaction(plane.readers) as s:
        return s.get_one(Server, server_id).certificate_serial


class TestReregistration:
    def test_token_and_old_key_give_the_same_server_a_new_certificate(
            self, api: Api, plane: ControlPlane) -> None:
        server = Registered(api, "a")
        r = _reregister(api, server.id, server.body(), api.registration_token())
        assert r.status_code == 200, r.text
        issued = x509.load_pem_x509_certificate(r.json()["certificate"].encode())
        assert issued.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value \
            == str(server.id)
        assert _serial(plane, server.id) == format(issued.serial_number, "x")
        with transaction(plane.readers) as s:
            assert s.get(RevokedCertificate, server.serial) is not None
        # the replaced certificate re-registers nothing any more
        again = _reregister(api, server.id, server.body(), api.registration_token())
        assert again.status_code == 403

    @pytest.mark.parametrize("case", ["no token", "bad token", "other key", "other server",
                                      "other environment", "garbage certificate",
                                      "foreign CA", "weak CSR", "bad proof", "huge"])
    def test_refused_and_nothing_changes(self, api: Api, plane: ControlPlane,
                                         case: str) -> None:
        server, other = Registered(api, "a"), Registered(api, "b")
        token: str | None = api.registration_token()
        body = server.body()
        target = server.id
        expected = {"no token": 401, "bad token": 401, "other key": 401, "other server": 404,
                    "other environment": 404, "garbage certificate": 400, "foreign CA": 400,
                    "weak CSR": 400, "bad proof": 400, "huge": 400}[case]
        if case == "no token":
            token = None
        elif case == "bad token":
            token = "f" * 48
        elif case == "other key":
            body = server.body(proving_key=ec.generate_private_key(ec.SECP256R1()))
        elif case == "other server":
            body = other.body()  # b's certificate and key, asking for a's
        elif case == "other environment":
            token = api.in_env("Sandbox").registration_token()
        elif case == "garbage certificate":
            body["certificate"] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        elif case == "foreign CA":
            stranger = CertificateAuthority.create("Someone else")
            body["certificate"] = stranger.sign_server_csr(
                make_csr(), server_id=server.id, organization_id=api.org_id,
                environment_id=api.env_id, validity_days=1).pem
        elif case == "weak CSR":
            body["signatureRequest"] = make_csr("rsa1024")
            proof = server.key.sign(body["signatureRequest"].encode(), ec.ECDSA(hashes.SHA256()))
            body["proof"] = base64.b64encode(proof).decode()
        elif case == "bad proof":
            body["proof"] = "not base64!"
        elif case == "huge":
            body["signatureRequest"] = "x" * 20000
        before = _serial(plane, server.id)
        r = _reregister(api, target, body, token)
        assert r.status_code == expected, r.text
        assert r.json()["message"]
        assert _serial(plane, server.id) == before
        assert _serial(plane, other.id) == other.serial


    def test_malformed_bodies(self, api: Api, plane: ControlPlane) -> None:
        server = Registered(api, "a")
        auth = {"Authorization": f"Bearer {api.registration_token()}",
                "Content-Type": "application/json"}
        url = f"/hybrid/api/v1/servers/{server.id}/reregistration"
        for body in ("{", "[]", '{"signatureRequest": 5}', '{"extra": 1}'):
            r = api.client.post(url, headers=auth, content=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["message"]
        r = api.client.post("/hybrid/api/v1/servers/nope/reregistration", headers=auth,
                            content="{}")
        assert r.status_code == 400  # not an id
        assert _serial(plane, server.id) == server.serial


class TestRenewal:
    def test_operator_asks_and_the_desired_state_says_so(self, api: Api,
                                                         plane: ControlPlane) -> None:
        sid = api.register("a")
        assert desired(plane, sid).get("renewCertificateWithin") is None
        r = api.post(f"/servers/{sid}/certificate")
        assert r.status_code == 202, r.text
        assert r.json()["data"]["certificateRenewalDue"] > 0
        assert desired(plane, sid)["renewCertificateWithin"] == 0
        assert api.post("/servers/99999/certificate").status_code == 404
        assert api.in_env("Sandbox").post(f"/servers/{sid}/certificate").status_code == 404
        assert api.post("/servers/not-a-number/certificate").status_code == 400
        r = api.client.post(f"/hybrid/api/v1/servers/{sid}/certificate")
        assert r.status_code == 401 and r.json()["message"]

    def test_renewal_then_promotion_revokes_the_old(self, api: Api,
                                                    plane: ControlPlane) -> None:
        server = Registered(api, "a")
        who = plane.authorities.identify(x509.load_pem_x509_certificate(
            server.certificate.encode()))
        with transaction(plane.sessions) as s:
            with pytest.raises(InvalidInput):
                certificates.renew(s, plane.ca, who, "not a CSR", 60)
            issued = certificates.renew(s, plane.ca, who, make_csr(), 3600)
        nxt = plane.authorities.identify(x509.load_pem_x509_certificate(issued.pem.encode()))
        hello = wire.Hello(agentVersion="t", hostname="h")
        with transaction(plane.sessions) as s:  # the old one still connects meanwhile
            assert not isinstance(agents.connected(s, [(who, hello)], plane.told())[0],
                                  Exception)
        with transaction(plane.sessions) as s:  # both in one burst: the new one wins
            old_answer, new_answer = agents.connected(s, [(who, hello), (nxt, hello)],
                                                      plane.told())
            assert isinstance(old_answer, Forbidden) and "revoked" in old_answer.message
            assert not isinstance(new_answer, Exception)
        with transaction(plane.sessions) as s:
            [refused] = agents.connected(s, [(who, hello)], plane.told())
            assert isinstance(refused, Forbidden) and "revoked" in refused.message
            with pytest.raises(Forbidden):  # the replaced certificate renews nothing
                certificates.renew(s, plane.ca, who, make_csr(), 60)
            row = s.get_one(Server, server.id)
            assert row.certificate_serial == nxt.serial and row.next_certificate_serial is None


class TestRotation:
    def test_rotate_retire_and_who_may(self, api: Api, plane: ControlPlane) -> None:
        sid = api.register("a")
        state = api.get("/certificateAuthority").json()["data"]
        assert not state["rotating"] and state["servers"] == 1
        old = state["signer"]["fingerprint"]
        r = api.post("/certificateAuthority/rotate")
        assert r.status_code == 201, r.text
        state = r.json()["data"]
        assert state["retiring"]["fingerprint"] == old and state["serversOnOldCa"] == 1
        assert [s["id"] for s in state["waitingServers"]] == [sid]
        assert api.post("/certificateAuthority/rotate").status_code == 409
        message = desired(plane, sid)
        assert message["trustedCas"] == [state["signer"]["fingerprint"], old]
        # a random moment within the rotation's spread: no later than it
        assert 0 <= message["renewCertificateWithin"] <= plane.settings.ca_rotation_spread_seconds
        assert api.post("/certificateAuthority/retire").status_code == 409
        r = api.post("/certificateAuthority/retire", json={"force": True})
        assert r.status_code == 200, r.text
        assert not r.json()["data"]["rotating"]
        assert desired(plane, sid)["trustedCas"] == [state["signer"]["fingerprint"]]
        assert api.post("/certificateAuthority/retire", json={"force": True}).status_code == 409
        assert api.post("/certificateAuthority/retire", json={"force": "yes"}).status_code == 400
        assert (plane.settings.data_dir / "pki" / "ca.pem").read_text() \
            == plane.authorities.bundle_pem

    def test_only_admins(self, api: Api) -> None:
        base = f"/accounts/api/organizations/{api.org_id}/users"
        auth = {"Authorization": f"Bearer {api.token}"}
        assert api.client.post(base, headers=auth, json={
            "username": "ops", "password": "longenough1", "role": "operator"}).status_code == 201
        token = api.client.post("/accounts/login", json={
            "username": "ops", "password": "longenough1"}).json()["access_token"]
        ops = {"Authorization": f"Bearer {token}", "X-ANYPNT-ENV-ID": api.env_id}
        for method, path in (("GET", ""), ("POST", "/rotate"), ("POST", "/retire")):
            r = api.client.request(method, f"/hybrid/api/v1/certificateAuthority{path}",
                                   headers=ops)
            assert r.status_code == 403, (path, r.text)
        assert api.client.post("/hybrid/api/v1/certificateAuthority/rotate").status_code == 401
