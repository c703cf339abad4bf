"""Where an agent keeps things under its directory, and its identity."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


class AgentError(Exception):
    """A failure the agent explains to its operator in one sentence."""


@dataclass(frozen=True)
class Identity:
    serverId: int
    name: str
    managerUrl: str
    gatewayUrl: str

    @property
    def gateway_base(self) -> str:
        """`wss://host:port` of the gateway (the connect URL without its path)."""
        scheme, rest = self.gatewayUrl.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}"


@dataclass(frozen=True)
class AgentDir:
    root: Path

    identity = property(lambda self: self.root / "identity.json")
    key = property(lambda self: self.root / "server.key")
    certificate = property(lambda self: self.root / "server.pem")
    ca = property(lambda self: self.root / "ca.pem")
    state = property(lambda self: self.root / "state.json")
    artifacts = property(lambda self: self.root / "artifacts")
    apps = property(lambda self: self.root / "apps")
    logs = property(lambda self: self.root / "logs")

    def app_dir(self, name: str, sha256: str) -> Path:
        return self.apps / name / sha256

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def load_identity(self) -> Identity:
        try:
            data = json.loads(self.identity.read_text())
            return Identity(**data)
        except FileNotFoundError as exc:
            raise AgentError(
                f"{self.root} holds no registered server; run `corral agent register` first"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise AgentError(f"{self.identity} is damaged: {exc}") from exc

    def make_dirs(self) -> None:
        for d in (self.artifacts / "tmp", self.apps, self.logs):
            d.mkdir(parents=True, exist_ok=True)


def write_identity(path: Path, identity: Identity) -> None:
    path.write_text(json.dumps(asdict(identity), indent=2) + "\n")


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
