"""The keys replicas share: the CA and the sealing key, sealed in the database with the master
key. The first replica to start creates them (or adopts those of its data folder, so a single
control plane that becomes several keeps its CA and every agent's certificate); the others read
them. Callers hold the start-up lock (`db.migrate.exclusive`), so two replicas never race."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.db.models import ControlPlaneSecret
from corral.pki import CertificateAuthority
from corral.sealing import MasterKey, Sealer

CA = "ca"
SEALING = "sealing"


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


def certificate_authority(session: Session, master: MasterKey,
                          adopt: Callable[[], CertificateAuthority]) -> CertificateAuthority:
    def make() -> bytes:
        ca = adopt()
        return json.dumps({"key": ca.key_pem.decode(), "certificate": ca.certificate_pem}).encode()

    stored = json.loads(_secret(session, master, CA, make))
    return CertificateAuthority.from_pem(stored["key"].encode(), stored["certificate"].encode())


def sealer(session: Session, master: MasterKey, adopt: Callable[[], bytes]) -> Sealer:
    return Sealer(_secret(session, master, SEALING, adopt))
