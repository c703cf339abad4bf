"""Where `corral login` keeps its sessions: one JSON file (0600) in the user's config folder.

`CORRAL_URL`, `CORRAL_TOKEN`, `CORRAL_ORG`, `CORRAL_ENV`, `CORRAL_CA_CERT` and
`CORRAL_PROFILE` override what is stored (scripts need no file at all)."""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path

from platformdirs import user_config_dir

DEFAULT_URL = "http://127.0.0.1:8080"


def trust(ca_cert: str | None) -> ssl.SSLContext | bool:
    """What HTTPS connections trust: the given CA certificate, else the system's."""
    return ssl.create_default_context(cafile=ca_cert) if ca_cert else True


def config_path() -> Path:
    override = os.environ.get("CORRAL_CONFIG")
    return Path(override) if override else Path(user_config_dir("corral")) / "config.json"


@dataclass
class Profile:
    url: str = DEFAULT_URL
    token: str | None = None
    org_id: str | None = None
    env_id: str | None = None
    env_name: str | None = None
    username: str | None = None
    ca_cert: str | None = None
    client_id: str | None = None


@dataclass
class Config:
    current: str = "default"
    profiles: dict[str, Profile] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Config:
        try:
            raw = json.loads(config_path().read_text())
        except (FileNotFoundError, ValueError):
            return cls()
        return cls(
            current=raw.get("current", "default"),
            profiles={k: Profile(**v) for k, v in raw.get("profiles", {}).items()},
        )

    def save(self) -> None:
        path = config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"current": self.current,
                "profiles": {k: asdict(v) for k, v in self.profiles.items()}}
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)

    @property
    def name(self) -> str:
        return os.environ.get("CORRAL_PROFILE") or self.current

    def active(self) -> Profile:
        """The stored profile with environment overrides applied."""
        stored = self.profiles.get(self.name, Profile())
        return Profile(
            url=os.environ.get("CORRAL_URL") or stored.url,
            token=os.environ.get("CORRAL_TOKEN") or stored.token,
            org_id=os.environ.get("CORRAL_ORG") or stored.org_id,
            env_id=None if os.environ.get("CORRAL_ENV") else stored.env_id,
            env_name=os.environ.get("CORRAL_ENV") or stored.env_name,
            username=stored.username,
            ca_cert=os.environ.get("CORRAL_CA_CERT") or stored.ca_cert,
            client_id=stored.client_id,
        )
