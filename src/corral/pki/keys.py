"""Keys, CSRs and certificates as both sides handle them: the agent makes its key and CSR and
checks what it is given; the control plane fingerprints and verifies. No signing here: that
is the certificate authority's (`pki.authority`), which the agent never imports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` signed `cert` (a CA of a trust bundle, say)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_bundle(pem: str | bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (a trust bundle during a CA rotation)."""
    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificates(data)


@dataclass(frozen=True)
class KeyRequest:
    """A new private key and the CSR that asks for its certificate."""

    key_pem: bytes
    csr_pem: str


def new_key_request(common_name: str) -> KeyRequest:
    """What an agent (or a simulated one) sends to register: an EC P-256 key and its CSR."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return KeyRequest(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
        csr.public_bytes(serialization.Encoding.PEM).decode())


def fingerprint_of(certificate: x509.Certificate) -> str:
    return "sha256:" + certificate.fingerprint(hashes.SHA256()).hex()
