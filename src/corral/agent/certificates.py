"""The agent's own certificate: when to renew it, and replacing key, certificate and trust
bundle so that a crash at any moment leaves a set that works.

A renewal writes `server-next.key`, `ca-next.pem`, then `server-next.pem` (its presence says
the set is whole) and renames them over the files in use; `recover` finishes a replacement a
crash interrupted, or drops one that was never whole (the old set is then untouched)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from corral.agent.layout import AgentDir, AgentError
from corral.pki.keys import fingerprint_of, load_bundle, signed_by

RENEW_AT = 2 / 3
"""of the certificate's life"""


def _next(path: Path) -> Path:
    return path.with_name(path.stem + "-next" + path.suffix)


def current(layout: AgentDir) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(layout.certificate.read_bytes())
    except (OSError, ValueError) as exc:
        raise AgentError(f"{layout.certificate} cannot be read: {exc}") from exc


def renewal_time(cert: x509.Certificate) -> float:
    """When (epoch seconds) two thirds of the certificate's life have passed."""
    start = cert.not_valid_before_utc.timestamp()
    end = cert.not_valid_after_utc.timestamp()
    return start + (end - start) * RENEW_AT


def expired(cert: x509.Certificate, now: float | None = None) -> bool:
    return (time.time() if now is None else now) >= cert.not_valid_after_utc.timestamp()


def expiry_text(cert: x509.Certificate) -> str:
    return cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def expired_advice(layout: AgentDir, cert: x509.Certificate) -> str:
    return (f"this server's certificate expired at {expiry_text(cert)} (the agent was off when "
            "it was due for renewal), so the control plane refuses it. Renew it with a fresh "
            f"registration token: corral agent reregister --dir {layout.root} --token <token> "
            "(same server, same applications; they keep running meanwhile)")


def check_issued(server_id: int, key_pem: bytes, certificate_pem: str,
                 bundle_pem: str) -> list[x509.Certificate]:
    """The control plane's answer is a certificate for this server and key, signed by a CA of
    the bundle it sent; the bundle's certificates."""
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        cas = load_bundle(bundle_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise AgentError(f"the renewed certificate cannot be read: {exc}") from exc
    if not cas:
        raise AgentError("the renewal's trust bundle is empty")
    ours = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != theirs:
        raise AgentError("the renewed certificate is not for the key this agent made")
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != str(server_id):
        raise AgentError(f"the renewed certificate does not name server {server_id}")
    if any(signed_by(cert, ca) for ca in cas):
        return cas
    raise AgentError("the renewed certificate is not signed by a CA of its trust bundle")


def install(layout: AgentDir, key_pem: bytes, certificate_pem: str, bundle_pem: str) -> None:
    """Replace key, certificate and trust bundle; whole or (after `recover`) not at all."""
    _next(layout.key).unlink(missing_ok=True)  # created anew: 0600 whatever was there
    _write_synced(_next(layout.key), key_pem, 0o600)
    _write_synced(_next(layout.ca), bundle_pem.encode(), 0o644)
    _write_synced(_next(layout.certificate), certificate_pem.encode(), 0o644)
    _commit(layout)


def recover(layout: AgentDir) -> None:
    if _next(layout.certificate).exists():
        _commit(layout)
    else:
        _next(layout.key).unlink(missing_ok=True)
        _next(layout.ca).unlink(missing_ok=True)


def keep_trusting(layout: AgentDir, fingerprints: list[str]) -> bool:
    """Drop from the trust bundle every CA the control plane no longer names (the old one,
    once a rotation ends); never the one that signed this agent's own certificate (a replica
    that has not followed a rotation yet names only the old). Returns whether it changed."""
    if not fingerprints:
        return False
    try:
        cas = load_bundle(layout.ca.read_bytes())
        own = current(layout)
    except (OSError, ValueError, AgentError):
        return False
    kept = [ca for ca in cas if fingerprint_of(ca) in fingerprints or signed_by(own, ca)]
    if not kept or len(kept) == len(cas):
        return False
    pem = b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in kept)
    _write_synced(_next(layout.ca), pem, 0o644)
    os.replace(_next(layout.ca), layout.ca)
    return True


def _commit(layout: AgentDir) -> None:
    for path in (layout.key, layout.ca, layout.certificate):  # the certificate last
        if _next(path).exists():
            os.replace(_next(path), path)
    _sync_dir(layout.root)


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
