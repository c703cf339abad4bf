"""The keys replicas share: the CAs, the sealing key and the secure properties' keys, sealed in
the database with the master key. The first replica to start creates them (or adopts those of its data folder, so a single
control plane that becomes several keeps its CA and every agent's certificate); the others read
them. Callers of `certificate_authority` and `sealer` hold the start-up lock
(`db.migrate.exclusive`), so two replicas never race.

During a CA rotation a second CA is kept, the one being retired (`ca.retiring`); a control
plane without a master key keeps both in its data folder instead (`pki.FileAuthorities`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from corral.db.models import ControlPlaneSecret
from corral.errors import Conflict
from corral.pki.authority import ALREADY_ROTATING, NOT_ROTATING, Authorities, CertificateAuthority
from corral.sealing import MasterKey, Sealer, SecretBox

CA = "ca"
CA_RETIRING = "ca.retiring"
SEALING = "sealing"
PROPERTIES = "properties"


def has_keys(session: Session) -> bool:
    return session.scalar(select(ControlPlaneSecret.name).limit(1)) is not None


def _secret(session: Session, master: MasterKey, name: str, make: Callable[[], bytes]) -> bytes:
    row = session.get(ControlPlaneSecret, name)
    if row is not None:
        return master.open(row.sealed, f"{name} key")
    value = make()
    session.add(ControlPlaneSecret(name=name, sealed=master.seal(value)))
    session.flush()
    return value


def _packed(ca: CertificateAuthority) -> bytes:
    return json.dumps({"key": ca.key_pem.decode(), "certificate": ca.certificate_pem}).encode()


def _unpacked(value: bytes) -> CertificateAuthority:
    stored = json.loads(value)
    return CertificateAuthority.from_pem(stored["key"].encode(), stored["certificate"].encode())


def certificate_authority(session: Session, master: MasterKey,
                          adopt: Callable[[], CertificateAuthority]) -> CertificateAuthority:
    return _unpacked(_secret(session, master, CA, lambda: _packed(adopt())))


def authorities(session: Session, master: MasterKey,
                adopt: Callable[[], CertificateAuthority]) -> Authorities:
    signer = certificate_authority(session, master, adopt)
    row = session.get(ControlPlaneSecret, CA_RETIRING)
    retiring = _unpacked(master.open(row.sealed, "retiring CA key")) if row else None
    return Authorities(signer, retiring)


def rotate(session: Session, master: MasterKey) -> Authorities:
    """A new signing CA; the current one is kept, trusted, as the one being retired."""
    current = authorities(session, master, CertificateAuthority.create)
    if current.retiring is not None:
        raise Conflict(ALREADY_ROTATING)
    new = CertificateAuthority.create()
    session.add(ControlPlaneSecret(name=CA_RETIRING,
                                   sealed=master.seal(_packed(current.signer))))
    signer = session.get_one(ControlPlaneSecret, CA)
    signer.sealed = master.seal(_packed(new))
    session.flush()
    return Authorities(new, current.signer)


def retire(session: Session, master: MasterKey) -> Authorities:
    current = authorities(session, master, CertificateAuthority.create)
    if current.retiring is None:
        raise Conflict(NOT_ROTATING)
    session.execute(delete(ControlPlaneSecret).where(ControlPlaneSecret.name == CA_RETIRING))
    return Authorities(current.signer)


def version(session: Session) -> str:
    """Changes whenever the CAs do: replicas compare it to follow a rotation."""
    digest = hashlib.sha256()
    for name, sealed in session.execute(
            select(ControlPlaneSecret.name, ControlPlaneSecret.sealed)
            .where(ControlPlaneSecret.name.in_([CA, CA_RETIRING]))
            .order_by(ControlPlaneSecret.name)):
        digest.update(f"{name}:{sealed}\n".encode())
    return digest.hexdigest()


def sealer(session: Session, master: MasterKey, adopt: Callable[[], bytes]) -> Sealer:
    return Sealer(_secret(session, master, SEALING, adopt))


def secret_box(session: Session, master: MasterKey, adopt: Callable[[], bytes]) -> SecretBox:
    return SecretBox(SecretBox.parse(_secret(session, master, PROPERTIES, adopt)))


def reseal(session: Session, old: MasterKey, new: MasterKey, properties: SecretBox) -> None:
    """Every shared key sealed with the `new` master key, the secure properties' keys replaced
    by `properties`' (a rotation, `corral keys rotate`)."""
    for row in session.scalars(select(ControlPlaneSecret)):
        value = properties.dump() if row.name == PROPERTIES else old.open(row.sealed, row.name)
        row.sealed = new.seal(value)
    if session.get(ControlPlaneSecret, PROPERTIES) is None:
        session.add(ControlPlaneSecret(name=PROPERTIES, sealed=new.seal(properties.dump())))
    session.flush()
