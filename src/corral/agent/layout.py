"""Where an agent keeps things under its directory, and its identity."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from corral import wire

LEVELS_FILE = "log-levels"


class AgentError(Exception):
    """A failure the agent explains to its operator in one sentence."""


@dataclass(frozen=True)
class Identity:
    serverId: int
    name: str
    managerUrl: str
    gatewayUrl: str
    gatewayUrls: list[str] = field(default_factory=list)
    """Every gateway of the control plane's replicas (`CORRAL_GATEWAY_URLS`), as registration
    and the latest desired state gave them; empty: `gatewayUrl` alone."""

    @property
    def connect_url(self) -> str:
        """The URL registration gave (ARM's `wss://host:port/mule`); Corral's own path when it
        gave none."""
        return connect_url_of(self.gatewayUrl)

    def connect_urls(self) -> list[str]:
        """Where to connect, in turn: the registered gateway first, then every other known."""
        urls = [connect_url_of(u) for u in [self.gatewayUrl, *self.gatewayUrls]]
        seen: dict[str, str] = {}
        for url in urls:
            seen.setdefault(base_of(url), url)
        return list(seen.values())

    def with_gateways(self, urls: list[str]) -> Identity:
        return replace(self, gatewayUrls=list(urls))


def base_of(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def connect_url_of(url: str) -> str:
    has_path = "/" in url.split("://", 1)[-1].rstrip("/")
    return url if has_path else base_of(url) + wire.CONNECT_PATH


@dataclass(frozen=True)
class AgentDir:
    root: Path

    identity = property(lambda self: self.root / "identity.json")
    key = property(lambda self: self.root / "server.key")
    certificate = property(lambda self: self.root / "server.pem")
    ca = property(lambda self: self.root / "ca.pem")
    state = property(lambda self: self.root / "state.json")
    artifacts = property(lambda self: self.root / "artifacts")
    @property
    def apps(self) -> Path:
        return self.root / "apps"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


    def seal(self, value: str) -> str:
        """Encrypt a secret kept in the agent's files (the cluster key in `state.json`) with a
        key derived from the server's private key: a copy of the state alone does not reveal it."""
        fernet = self._fernet()
        return value if fernet is None or not value else "sealed:" + fernet.encrypt(
            value.encode()).decode()

    def unseal(self, value: str) -> str:
        fernet = self._fernet()
        if not value.startswith("sealed:") or fernet is None:
            return value
        try:
            return fernet.decrypt(value.removeprefix("sealed:").encode()).decode()
        except InvalidToken:
            return ""  # a new key (re-registered): the control plane sends the secret again

    def _fernet(self) -> Fernet | None:
        try:
            material = self.key.read_bytes()
        except FileNotFoundError:
            return None
        digest = hashlib.sha256(b"corral-agent-state:" + material).digest()
        return Fernet(base64.urlsafe_b64encode(digest))

    def app_dir(self, name: str, sha256: str) -> Path:
        return self.apps / name / sha256

    def levels_file(self, name: str) -> Path:
        """The application's log levels, beside (not inside) its unpacked copies."""
        return self.apps / name / LEVELS_FILE

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def load_identity(self) -> Identity:
        try:
            data = json.loads(self.identity.read_text())
            identity = Identity(**data)
            if not all(isinstance(u, str) and u.startswith("wss://")
                       for u in identity.gatewayUrls):
                raise ValueError("gatewayUrls must be wss:// URLs")
            return identity
        except FileNotFoundError as exc:
            raise AgentError(
                f"{self.root} holds no registered server; run `corral agent register` first"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise AgentError(f"{self.identity} is damaged: {exc}") from exc

    def make_dirs(self) -> None:
        """The agent's folder is its own: key, state, artifact cache, logs and cluster journal
        are readable by the agent alone. Applications (another user when the agent is root) may
        only traverse the folder down to their own copy under `apps/`."""
        for d in (self.artifacts / "tmp", self.apps, self.logs, self.root / "cluster"):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        self.apps.chmod(0o711)
        for d in (self.artifacts, self.artifacts / "tmp", self.logs, self.root / "cluster"):
            d.chmod(0o700)
        for f in (self.key, self.identity, self.state, self.root / "agent.json"):
            if f.exists():
                f.chmod(0o600)
        for app in self.apps.iterdir():
            if app.is_dir():
                app.chmod(0o711)


def write_identity(path: Path, identity: Identity) -> None:
    write_private(path, (json.dumps(asdict(identity), indent=2) + "\n").encode())


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
