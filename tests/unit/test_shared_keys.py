"""The keys replicas share: sealed in the database with the master key, adopted from a data
folder, refused with a clear message when the key is wrong or missing; the settings and the
change notices that come with replicas."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from corral.config import Settings
from corral.controlplane import CannotStart, ControlPlane, Notice
from corral.pki.authority import CertificateAuthority, InvalidInput
from corral.sealing import MasterKey

KEY = "a-master-key-of-at-least-thirty-two-characters"


def _open(data_dir: Path, database: Path, **settings: object) -> ControlPlane:
    return ControlPlane.open(Settings(data_dir=data_dir, database_url=f"sqlite:///{database}",
                                      **settings))  # type: ignore[arg-type]


def test_replicas_read_the_keys_the_first_one_sealed(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    first = _open(tmp_path / "one", db, master_key=KEY)
    token = first.sealer.seal("a registration token")
    first.close()
    second = _open(tmp_path / "two", db, master_key=KEY)
    try:
        assert second.ca.fingerprint == first.ca.fingerprint
        assert second.sealer.unseal(token) == "a registration token"
        assert not (tmp_path / "two" / "pki" / "ca.key").exists()  # in the database only
        assert (tmp_path / "two" / "pki" / "ca.pem").read_text() == second.ca.certificate_pem
    finally:
        second.close()


def test_a_wrong_or_missing_master_key_refuses_to_start(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    _open(tmp_path / "one", db, master_key=KEY).close()
    with pytest.raises(CannotStart, match="does not open the ca key"):
        _open(tmp_path / "two", db, master_key="another-key-of-thirty-two-characters-or-more")
    with pytest.raises(CannotStart, match="give this replica the same CORRAL_MASTER_KEY"):
        _open(tmp_path / "three", db)
    with pytest.raises(CannotStart, match="at least 32 characters"):
        _open(tmp_path / "four", db, master_key="short")
    key_file = tmp_path / "master.key"
    key_file.write_text(KEY + "\n")
    _open(tmp_path / "five", db, master_key_file=key_file).close()  # the same key, from a file


def test_a_single_control_plane_keeps_its_ca_when_it_gets_a_master_key(tmp_path: Path) -> None:
    db = tmp_path / "corral.db"
    alone = _open(tmp_path / "data", db)
    fingerprint, token = alone.ca.fingerprint, alone.sealer.seal("kept")
    alone.close()
    shared = _open(tmp_path / "data", db, master_key=KEY)
    try:
        assert shared.ca.fingerprint == fingerprint  # every agent's certificate stays valid
        assert shared.sealer.unseal(token) == "kept"
    finally:
        shared.close()


def test_the_database_artifact_store_needs_postgresql(tmp_path: Path) -> None:
    with pytest.raises(CannotStart, match="needs PostgreSQL"):
        _open(tmp_path / "data", tmp_path / "corral.db", artifact_store="database")


def test_settings_refuse_what_agents_or_stores_could_not_use() -> None:
    for bad in (["ws://plain:8443"], ["wss://no-port"], ["https://x:1"]):
        with pytest.raises(ValidationError, match="wss://host:port"):
            Settings(gateway_urls=bad)
    with pytest.raises(ValidationError, match="file, database or s3://"):
        Settings(artifact_store="ftp://somewhere")
    s = Settings(gateway_urls=["wss://cp1.example:8443", "wss://cp2.example:8443"],
                 replica_url="wss://cp2.internal:8443", public_hostnames=["lb.example"])
    assert s.mcm_websocket_url == "wss://cp1.example:8443/mule"
    assert s.agent_gateway_urls == ["wss://cp1.example:8443", "wss://cp2.example:8443"]
    assert set(s.gateway_hostnames) >= {"lb.example", "cp1.example", "cp2.example",
                                        "cp2.internal"}


def test_master_keys_seal_and_refuse() -> None:
    sealed = MasterKey(KEY).seal(b"secret")
    assert MasterKey(KEY).open(sealed, "x") == b"secret"
    with pytest.raises(Exception, match="does not open the x"):
        MasterKey(KEY + "!").open(sealed, "x")


def test_notices_round_trip_and_stay_small() -> None:
    notice = Notice("replica-1", {3, 1, 2}, {9}, True)
    assert Notice.decode(notice.encode()) == notice
    everything = Notice("replica-1", None, set(), False)
    assert Notice.decode(everything.encode()).changed is None
    assert len(Notice("r" * 36, set(range(10**9, 10**9 + 700)), set(), True).encode()) < 8000


def test_replica_certificates_are_told_apart_from_servers() -> None:
    from cryptography import x509

    ca = CertificateAuthority.create()
    issued, _key = ca.issue_replica_certificate("r-1")
    cert = x509.load_pem_x509_certificate(issued.pem.encode())
    assert ca.identify_replica(cert) == "r-1"
    with pytest.raises(InvalidInput, match="does not name a server"):
        ca.identify(cert)
    from corral.pki.keys import new_key_request
    server = ca.sign_server_csr(new_key_request("replica:r-9").csr_pem, server_id=7,
                                organization_id="corral-replica", environment_id="e",
                                validity_days=1)
    with pytest.raises(InvalidInput, match="does not name a control-plane replica"):
        ca.identify_replica(x509.load_pem_x509_certificate(server.pem.encode()))
    other, _ = CertificateAuthority.create().issue_replica_certificate("r-2")
    with pytest.raises(InvalidInput, match="not issued by this control plane"):
        ca.identify_replica(x509.load_pem_x509_certificate(other.pem.encode()))


def test_the_gateway_certificate_names_every_gateway(tmp_path: Path) -> None:
    from cryptography import x509

    from corral.gateway.tls import server_tls_context

    plane = _open(tmp_path / "data", tmp_path / "corral.db",
                  gateway_urls=["wss://cp1.example:8443", "wss://10.0.0.12:8443"],
                  replica_url="wss://cp1.internal:8443")
    try:
        server_tls_context(plane)
        cert = x509.load_pem_x509_certificate(
            (tmp_path / "data" / "pki" / "gateway.pem").read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        shown = {str(n.value) for n in names}
        assert {"cp1.example", "10.0.0.12", "cp1.internal"} <= shown
    finally:
        plane.close()


def test_every_replica_follows_a_rotation(tmp_path: Path) -> None:
    """One replica rotates and retires; the other takes the same CAs when it looks (its
    gateway does every few seconds), and so do replicas that start later."""
    db = tmp_path / "shared.db"
    one = _open(tmp_path / "one", db, master_key=KEY)
    two = _open(tmp_path / "two", db, master_key=KEY)
    seen: list[list[str]] = []
    two.authority_listeners.append(lambda a: seen.append([c.fingerprint for c in a.trusted]))
    try:
        old = one.ca.fingerprint
        assert not two.follow_authorities()
        rotated = one.rotate_ca()
        assert two.follow_authorities()
        assert two.trusted_fingerprints == [rotated.signer.fingerprint, old]
        assert two.ca.fingerprint == rotated.signer.fingerprint  # it signs with the new one
        later = _open(tmp_path / "three", db, master_key=KEY)
        assert later.trusted_fingerprints == two.trusted_fingerprints
        later.close()
        one.retire_ca(force=True)
        assert two.follow_authorities() and not two.follow_authorities()
        assert two.trusted_fingerprints == [rotated.signer.fingerprint]
        assert seen == [[rotated.signer.fingerprint, old], [rotated.signer.fingerprint]]
        assert (tmp_path / "two" / "pki" / "ca.pem").read_text() == two.ca.certificate_pem
    finally:
        one.close()
        two.close()
