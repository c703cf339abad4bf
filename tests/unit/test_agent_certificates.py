"""The agent's certificate files: a renewal replaces key, certificate and trust bundle whole,
whatever moment a crash picks; when to renew; which CAs to keep trusting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509

from corral.agent import certificates
from corral.agent.layout import AgentDir, AgentError
from corral.pki.authority import CertificateAuthority
from corral.pki.keys import fingerprint_of, new_key_request


def _issue(ca: CertificateAuthority, key_csr: str, seconds: int = 60) -> str:
    import datetime as dt

    return ca.sign_server_csr(key_csr, server_id=5, organization_id="o", environment_id="e",
                              validity_days=0, not_after=dt.datetime.now(dt.UTC)
                              + dt.timedelta(seconds=seconds)).pem


def _agent_dir(tmp_path: Path, ca: CertificateAuthority) -> tuple[AgentDir, bytes, str]:
    layout = AgentDir(tmp_path)
    request = new_key_request("5")
    pem = _issue(ca, request.csr_pem)
    layout.key.write_bytes(request.key_pem)
    layout.certificate.write_text(pem)
    layout.ca.write_text(ca.certificate_pem)
    return layout, request.key_pem, pem


def test_renewal_point_is_two_thirds_of_the_life(tmp_path: Path) -> None:
    layout, _key, _pem = _agent_dir(tmp_path, CertificateAuthority.create())
    cert = certificates.current(layout)
    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    assert certificates.renewal_time(cert) == pytest.approx(start + (end - start) * 2 / 3)
    assert certificates.renewal_time(cert) > time.time() + 30  # a short one is not born due
    assert not certificates.expired(cert) and certificates.expired(cert, end + 1)


@pytest.mark.parametrize("crash_after", ["key", "bundle", "certificate", "rename-key",
                                         "rename-bundle", "none"])
def test_install_is_whole_or_nothing(tmp_path: Path, crash_after: str) -> None:
    old_ca, new_ca = CertificateAuthority.create(), CertificateAuthority.create()
    layout, old_key, old_pem = _agent_dir(tmp_path, old_ca)
    request = new_key_request("5")
    new_pem = _issue(new_ca, request.csr_pem)
    bundle = new_ca.certificate_pem + old_ca.certificate_pem
    certificates.check_issued(5, request.key_pem, new_pem, bundle)
    nxt = {p: p.with_name(p.stem + "-next" + p.suffix)
           for p in (layout.key, layout.ca, layout.certificate)}
    steps = ["key", "bundle", "certificate", "rename-key", "rename-bundle"]
    done = steps[: steps.index(crash_after) + 1] if crash_after != "none" else steps
    writes = {"key": (nxt[layout.key], request.key_pem), "bundle": (nxt[layout.ca], bundle.encode()),
              "certificate": (nxt[layout.certificate], new_pem.encode())}
    for step in done:
        if step in writes:
            path, data = writes[step]
            path.write_bytes(data)
        elif step == "rename-key":
            nxt[layout.key].replace(layout.key)
        elif step == "rename-bundle":
            nxt[layout.ca].replace(layout.ca)
    certificates.recover(layout)
    whole = "certificate" in done
    assert layout.key.read_bytes() == (request.key_pem if whole else old_key)
    assert layout.certificate.read_text() == (new_pem if whole else old_pem)
    assert layout.ca.read_text() == (bundle if whole else old_ca.certificate_pem)
    assert not any(p.exists() for p in nxt.values())


def test_a_wrong_answer_is_refused(tmp_path: Path) -> None:
    ca, other = CertificateAuthority.create(), CertificateAuthority.create()
    request, stranger = new_key_request("5"), new_key_request("5")
    with pytest.raises(AgentError, match="not for the key"):
        certificates.check_issued(5, request.key_pem, _issue(ca, stranger.csr_pem),
                                  ca.certificate_pem)
    with pytest.raises(AgentError, match="not signed by a CA"):
        certificates.check_issued(5, request.key_pem, _issue(ca, request.csr_pem),
                                  other.certificate_pem)
    with pytest.raises(AgentError, match="does not name server 6"):
        certificates.check_issued(6, request.key_pem, _issue(ca, request.csr_pem),
                                  ca.certificate_pem)
    with pytest.raises(AgentError, match="cannot be read"):
        certificates.check_issued(5, request.key_pem, "garbage", ca.certificate_pem)


def test_trust_bundle_drops_what_the_control_plane_no_longer_names(tmp_path: Path) -> None:
    old_ca, new_ca = CertificateAuthority.create(), CertificateAuthority.create()
    layout, _key, _pem = _agent_dir(tmp_path, new_ca)  # renewed under the new CA...
    layout.ca.write_text(new_ca.certificate_pem + old_ca.certificate_pem)  # ...trusting both
    # a replica that has not followed the rotation yet names only the old: the CA that signed
    # this agent's own certificate stays
    assert not certificates.keep_trusting(layout, [fingerprint_of(old_ca.certificate)])
    assert not certificates.keep_trusting(layout, [])
    assert certificates.keep_trusting(layout, [fingerprint_of(new_ca.certificate)])
    assert [fingerprint_of(c) for c in x509.load_pem_x509_certificates(
        layout.ca.read_bytes())] == [fingerprint_of(new_ca.certificate)]
    assert not certificates.keep_trusting(layout, [fingerprint_of(new_ca.certificate)])
