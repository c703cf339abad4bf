"""Sealing: symmetric encryption and keyed digests for secrets the control plane must show again
or derive (registration tokens, cluster keys, console CSRF tokens). Apart from the CA because
it has another job: the CA signs identities, the sealer keeps secrets."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cryptography.fernet import Fernet

from corral.pki import write_private


class Sealer:
    """Symmetric sealing for secrets that must be shown again (registration tokens).

    The key lives beside the CA key (`secret.key`, 0600); the database holds only ciphertext."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._mac_key = hashlib.sha256(b"corral-mac:" + key).digest()

    @classmethod
    def load_or_create(cls, directory: Path) -> Sealer:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "secret.key"
        if not path.exists():
            write_private(path, Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def unseal(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()

    def derive(self, purpose: str) -> str:
        """A secret derived from the sealing key (e.g. a cluster's, from its nonce): never
        stored, the same on every call and on every replica that holds the key."""
        return hmac.new(self._mac_key, b"derive:" + purpose.encode(), hashlib.sha256).hexdigest()

    def mac(self, value: str) -> str:
        """A keyed digest (e.g. the console's CSRF token for a session)."""
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()
