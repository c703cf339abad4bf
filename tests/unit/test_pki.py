"""The CA: created once with a private key, signs CSRs, identifies its own certificates."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from corral.errors import InvalidInput
from corral.pki import CertificateAuthority, load_csr
from corral.sealing import Sealer
from tests.support import make_csr


def test_created_once_and_reloaded(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    again = CertificateAuthority.load_or_create(tmp_path)
    assert again.certificate_pem == ca.certificate_pem


def test_sign_and_identify(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    issued = ca.sign_server_csr(make_csr("rsa2048"), server_id=42, organization_id="org",
                                environment_id="env", validity_days=30)
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    who = ca.identify(cert)
    assert (who.server_id, who.organization_id, who.environment_id) == (42, "org", "env")
    assert who.serial == issued.serial
    other = CertificateAuthority.load_or_create(tmp_path / "other")
    with pytest.raises(InvalidInput):
        other.identify(cert)


def test_tls_certificate_has_sans(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    issued, key = ca.issue_tls_server_certificate(["corral.example"])
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "corral.example" in sans.get_values_for_type(x509.DNSName)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("kind", ["rsa1024", "ec384"])
def test_weak_keys_refused(kind: str) -> None:
    with pytest.raises(InvalidInput):
        load_csr(make_csr(kind))


def test_sealer_roundtrip(tmp_path: Path) -> None:
    sealer = Sealer.load_or_create(tmp_path)
    sealed = sealer.seal("token")
    assert "token" not in sealed
    assert Sealer.load_or_create(tmp_path).unseal(sealed) == "token"
