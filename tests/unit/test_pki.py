"""The CA: created once with a private key, signs CSRs, identifies its own certificates."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from corral.errors import InvalidInput
from corral.pki.authority import CertificateAuthority, load_csr
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


def test_file_rotation_survives_a_crash_at_any_step(tmp_path: Path) -> None:
    from corral.pki.authority import FileAuthorities

    store = FileAuthorities(tmp_path)
    first = store.load().signer
    rotated = store.rotate()
    assert store.load().retiring is not None
    assert store.load().signer.fingerprint == rotated.signer.fingerprint
    assert (tmp_path / "ca.pem").read_text() == rotated.bundle_pem  # both, the signer first
    with pytest.raises(Exception, match="already under way"):
        store.rotate()
    assert store.retire().retiring is None
    assert not (tmp_path / "ca-retiring.key").exists()

    # a crash after the new CA was written whole, before both renames: the rotation completes
    signer = store.load().signer
    store.rotate()
    (tmp_path / "ca-next.key").write_bytes((tmp_path / "ca.key").read_bytes())
    (tmp_path / "ca-next.pem").write_bytes((tmp_path / "ca.pem").read_bytes())
    (tmp_path / "ca.key").write_bytes(signer.key_pem)  # as if only the files before moved
    (tmp_path / "ca.pem").write_text(signer.certificate_pem)
    done = store.load()
    assert done.retiring is not None and done.signer.fingerprint != signer.fingerprint
    assert not (tmp_path / "ca-next.pem").exists()
    store.retire()

    # a crash before the new CA's certificate was written: no rotation happened
    kept = store.load().signer
    (tmp_path / "ca-retiring.key").write_bytes(kept.key_pem)
    (tmp_path / "ca-retiring.pem").write_text(kept.certificate_pem)
    (tmp_path / "ca-next.key").write_bytes(CertificateAuthority.create().key_pem)
    after = store.load()
    assert after.signer.fingerprint == kept.fingerprint and after.retiring is None
    assert not (tmp_path / "ca-next.key").exists()
    assert first.fingerprint != kept.fingerprint


def test_trust_follows_the_signer_and_the_retiring_ca(tmp_path: Path) -> None:
    from corral.pki.authority import Authorities

    old, new, stranger = (CertificateAuthority.create() for _ in range(3))
    both = Authorities(new, old)
    for ca in (old, new):
        issued = ca.sign_server_csr(make_csr(), server_id=7, organization_id="o",
                                    environment_id="e", validity_days=1)
        who = both.identify(x509.load_pem_x509_certificate(issued.pem.encode()))
        assert who.server_id == 7 and who.issuer == ca.fingerprint
    issued = old.sign_server_csr(make_csr(), server_id=7, organization_id="o",
                                 environment_id="e", validity_days=1)
    with pytest.raises(InvalidInput, match="trusts"):
        Authorities(new).identify(x509.load_pem_x509_certificate(issued.pem.encode()))
    foreign = stranger.sign_server_csr(make_csr(), server_id=7, organization_id="o",
                                       environment_id="e", validity_days=1)
    with pytest.raises(InvalidInput):
        both.identify(x509.load_pem_x509_certificate(foreign.pem.encode()))
    assert both.presenting is old and Authorities(new).presenting is new
