"""`corral agent register`: key, CSR, registration, signed certificate — all or nothing."""

from __future__ import annotations

import base64
import shutil
import ssl
import tempfile
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from corral.agent import AGENT_VERSION, certificates
from corral.agent.layout import AgentDir, AgentError, Identity, write_identity, write_private
from corral.pki.keys import fingerprint_of, new_key_request


def register(manager_url: str, directory: Path, token: str, name: str,
             ca_cert: Path | None = None, *, ca_fingerprint: str | None = None,
             insecure: bool = False) -> Identity:
    """Register this machine as server NAME. DIR is created whole or not at all.

    Over plain `http://` anyone on the path could hand back their own CA and gateway, so that
    needs `ca_fingerprint` (the control plane's CA, pinned: `GET .../registrationToken` shows it)
    or an explicit `insecure`."""
    pin = _normalise_pin(ca_fingerprint) if ca_fingerprint else None
    if manager_url.lower().startswith("http://") and pin is None and not insecure:
        raise AgentError(
            "refusing to register over plain http:// without --ca-fingerprint (the control "
            "plane's CA, shown with its registration token) or an explicit --insecure")
    target = AgentDir(directory)
    if target.identity.exists():
        raise AgentError(f"{directory} already holds a registered server; use another --dir")
    if directory.exists() and any(directory.iterdir()):
        raise AgentError(f"{directory} exists and is not empty; give a new or empty folder")
    request = new_key_request(name)
    body = {
        "muleVersion": "corral",
        "gatewayVersion": AGENT_VERSION,
        "agentVersion": AGENT_VERSION,
        "muleLabel": name,
        "signatureRequest": request.csr_pem,
    }
    r = _post(manager_url, "/hybrid/api/v1/servers", body, token,
              ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else True)
    try:
        answer = r.json()
        cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
        ca = x509.load_pem_x509_certificate(answer["caCertificate"].encode())
        gateway_url = str(answer["environmentUrls"]["mcmWebsocketUrl"])
        gateway_urls = [str(u) for u in answer["environmentUrls"].get("gatewayUrls") or []]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AgentError(f"the control plane's answer is not a registration: {exc}") from exc
    if pin is not None and fingerprint_of(ca) != pin:
        # the control plane took the token and registered the name before this check could
        # run: say what was left there, and how to remove it, in case the pin was a typo
        left = _server_named(cert, name)
        raise AgentError(
            f"the CA returned by {manager_url} is not the pinned one ({fingerprint_of(ca)}); "
            "someone may be in the middle, or the pin is mistyped. Nothing was kept here. The "
            f"control plane registered {left} all the same: if the pin was wrong, check it "
            "with `corral server ca-fingerprint`, remove the server with `corral server delete "
            f"{name} --yes` and register again.")
    for url in [gateway_url, *gateway_urls]:
        if not url.startswith("wss://"):
            raise AgentError(f"the gateway URL {url[:100]!r} is not wss://; refusing it")
    server_id = int(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    identity = Identity(
        serverId=server_id,
        name=name,
        managerUrl=manager_url.rstrip("/"),
        gatewayUrl=gateway_url,
        gatewayUrls=gateway_urls,
    )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        staged = AgentDir(staging)
        write_private(staged.key, request.key_pem)
        staged.certificate.write_text(answer["certificate"])
        staged.ca.write_text(answer["caCertificate"])
        write_identity(staged.identity, identity)
        staged.make_dirs()
        staging.chmod(0o700)
        if directory.exists():
            directory.rmdir()  # empty, checked above
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return identity


def reregister(directory: Path, token: str, ca_cert: Path | None = None) -> Identity:
    """A new certificate for the server registered in DIR, whose certificate can no longer be
    used (it expired while the agent was off). The request proves possession of the old key
    (the CSR signed with it) besides the token, so a token alone cannot take a server over.
    Same server, same applications; key, certificate and trust bundle are replaced whole."""
    layout = AgentDir(directory)
    identity = layout.load_identity()
    certificates.recover(layout)
    try:
        old_key = serialization.load_pem_private_key(layout.key.read_bytes(), password=None)
        old_certificate = layout.certificate.read_text()
    except (OSError, ValueError) as exc:
        raise AgentError(f"{directory} has no usable key and certificate ({exc}); register "
                         "this machine anew with `corral agent register`") from exc
    if not isinstance(old_key, ec.EllipticCurvePrivateKey):
        raise AgentError("the old key is not an EC key this agent made; register anew")
    request = new_key_request(identity.name)
    proof = base64.b64encode(old_key.sign(request.csr_pem.encode(),
                                          ec.ECDSA(hashes.SHA256()))).decode()
    verify: ssl.SSLContext | bool = True
    if ca_cert is not None:
        verify = ssl.create_default_context(cafile=str(ca_cert))
    elif identity.managerUrl.startswith("https://"):
        verify = ssl.create_default_context(cafile=str(layout.ca))  # the CA it trusts already
    r = _post(identity.managerUrl,
              f"/hybrid/api/v1/servers/{identity.serverId}/reregistration",
              {"signatureRequest": request.csr_pem, "certificate": old_certificate,
               "proof": proof}, token, verify)
    try:
        answer = r.json()
        certificate, bundle = str(answer["certificate"]), str(answer["caCertificate"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentError(f"the control plane's answer is not a certificate: {exc}") from exc
    certificates.check_issued(identity.serverId, request.key_pem, certificate, bundle)
    certificates.install(layout, request.key_pem, certificate, bundle)
    return identity


def _post(manager_url: str, path: str, body: dict[str, str], token: str,
          verify: ssl.SSLContext | bool) -> httpx.Response:
    """A registration call with the token; AgentError for anything but a 200."""
    try:
        r = httpx.post(manager_url.rstrip("/") + path, json=body,
                       headers={"Authorization": f"Bearer {token}"}, timeout=30, verify=verify)
    except httpx.HTTPError as exc:
        raise AgentError(f"cannot reach the control plane at {manager_url}: {exc}") from exc
    if r.status_code != 200:
        raise AgentError(_refusal(r))
    return r


def _server_named(cert: x509.Certificate, name: str) -> str:
    try:
        server_id = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    except (IndexError, ValueError):
        return f"server {name}"
    return f"server {name} (id {server_id!s})"


def _normalise_pin(value: str) -> str:
    hexed = value.strip().lower().removeprefix("sha256:").replace(":", "")
    if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
        raise AgentError("--ca-fingerprint must be sha256:<64 hex digits>")
    return "sha256:" + hexed


def _refusal(r: httpx.Response) -> str:
    try:
        message = r.json().get("message", r.text)
    except ValueError:
        message = r.text[:200]
    if r.status_code == 401:
        return f"registration token refused: {message}"
    if r.status_code == 409:
        return f"name already taken: {message}"
    return f"registration failed ({r.status_code}): {message}"
