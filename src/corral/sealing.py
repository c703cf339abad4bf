"""Sealing: symmetric encryption and keyed digests for secrets the control plane must show again
or derive (registration tokens, cluster keys, console CSRF tokens), and the box that holds
secure property values. Apart from the CA because it has another job: the CA signs
identities, the sealer keeps secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from corral.pki.keys import write_private


class Sealer:
    """Symmetric sealing for secrets that must be shown again (registration tokens).

    The key lives beside the CA key (`secret.key`, 0600), or, with a master key, sealed in the
    database for every replica (`domain/keyring.py`); the database holds only ciphertext."""

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

    @staticmethod
    def existing_or_new_key(directory: Path) -> bytes:
        """The key of a data folder that has one (a single control plane becoming several
        keeps its sealed tokens readable), else a new one."""
        path = directory / "secret.key"
        return path.read_bytes().strip() if path.exists() else Fernet.generate_key()

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


class SecretBox:
    """Seals secure property values (ADR 0011) with keys of their own, newest first: a value is
    sealed with the newest and opened with any, so that a rotation can re-seal every value
    while both keys are held. Their own keys, not the sealer's: a sealed CA key or token pasted
    into a property's place opens to nothing."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("a secret box needs at least one key")
        self.keys = list(keys)
        self._fernet = MultiFernet([Fernet(k) for k in self.keys])

    FILE = "properties.keys"
    """Its keys in a data folder (`pki/`, 0600), for a control plane without a master key."""

    @classmethod
    def load_or_create(cls, directory: Path) -> SecretBox:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / cls.FILE
        if not path.exists():
            write_private(path, Fernet.generate_key() + b"\n")
        return cls(cls.parse(path.read_bytes()))

    @classmethod
    def existing_or_new_keys(cls, directory: Path) -> bytes:
        """The keys of a data folder that has them (a single control plane becoming several
        keeps its values readable), else a new key; as stored."""
        path = directory / cls.FILE
        return path.read_bytes() if path.exists() else Fernet.generate_key() + b"\n"

    @staticmethod
    def new_key() -> bytes:
        return Fernet.generate_key()

    @staticmethod
    def parse(text: bytes) -> list[bytes]:
        """Keys as stored: one per line, newest first."""
        return [line.strip() for line in text.splitlines() if line.strip()]

    def dump(self) -> bytes:
        return b"\n".join(self.keys) + b"\n"

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        """The value; ValueError when no key of the box sealed it."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except (InvalidToken, UnicodeDecodeError) as exc:
            raise ValueError("a secure property value this control plane cannot open") from exc

    def reseal(self, sealed: str) -> str:
        """The same value sealed with the newest key."""
        try:
            return self._fernet.rotate(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("a secure property value this control plane cannot open") from exc


MIN_MASTER_KEY_CHARS = 32


class WrongMasterKey(Exception):
    """Sealed with another master key: this replica was given a different one than the rest."""


class MasterKey:
    """The key every replica is given (`CORRAL_MASTER_KEY` or `CORRAL_MASTER_KEY_FILE`); it seals
    the keys the replicas share in the database. Any text of 32 characters or more: the sealing
    key is derived from it (HKDF-SHA256), so a passphrase and a random string both work."""

    def __init__(self, text: str) -> None:
        text = text.strip()
        if len(text) < MIN_MASTER_KEY_CHARS:
            raise ValueError(f"the master key must be at least {MIN_MASTER_KEY_CHARS} "
                             "characters (e.g. `openssl rand -base64 32`)")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"corral master key").derive(text.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, value: bytes) -> str:
        return self._fernet.encrypt(value).decode()

    def open(self, sealed: str, what: str) -> bytes:
        try:
            return self._fernet.decrypt(sealed.encode())
        except InvalidToken as exc:
            raise WrongMasterKey(
                f"the master key does not open the {what} stored in the database: every "
                "replica must be given the same CORRAL_MASTER_KEY (or CORRAL_MASTER_KEY_FILE)"
            ) from exc
